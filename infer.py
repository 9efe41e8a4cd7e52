"""Run a trained method on your own images, by task.

    python infer.py identity_swap    --checkpoint C --identity IDS --attributes ATTRS --out OUT [--pairs]
    python infer.py content_transfer --checkpoint C --targets TGTS --sources SRCS --out OUT [--pairs]
    python infer.py remove           --checkpoint C --images DIR --out OUT
    python infer.py interpolate      --checkpoint C --input DIR --out OUT [--steps 8]
    python infer.py encode           --checkpoint C --images DIR --out OUT

- ``identity_swap`` (methods 3, 4, 5): every identity image with every attribute image ->
  ``OUT/<id>__<attr>.png`` and ``OUT/grid.png`` (attribute sources across the top, identity sources down the
  left); ``--pairs``: images with the same file stem in both folders -> ``OUT/<stem>.png``.
- ``content_transfer`` (methods 1, 2): every source's content (e.g. glasses) onto every target, the same layout
  (``<source>__<target>.png``; sources down the left, targets across the top); ``--pairs`` as above.
- ``remove`` (methods 1, 2): ``OUT/<name>.png`` = [input | without its content (| the content mask, method 2)].
- ``interpolate`` (methods with identity and attribute codes, method 3): each sub-folder of DIR holds images named
  *id* and *attr* (e.g. id0.png, id1.png, attr.png); two identities and one attribute interpolate the identity
  code, one and two the attribute code, two of each give a grid -> ``OUT/<sub-folder>.png``.
- ``encode`` (factor encoding, method 5): ``OUT/codes.npz`` with one array per named part, rows in file order
  (``OUT/files.txt``).
Images are read as the run's data config reads its test images (centre crop ``data.crop``, resize to the
network size with ``data.resize_filter``). ``--align PRESET`` first aligns ordinary photos with dlib
(``preprocess.py --align``; the optional face extras) into ``OUT/aligned/<folder>/`` and reads those; a second
run into the same OUT needs ``--force`` to replace them.
``key=value`` overrides apply to the run's config.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import clear_errors

TASK_OF = {"identity_swap": "identity_swap", "content_transfer": "content_transfer", "remove": "content_transfer",
           "encode": "factor_encoding", "interpolate": None}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=list(TASK_OF))
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by train.py")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--identity", type=Path, help="identity_swap: identity source images")
    p.add_argument("--attributes", type=Path, help="identity_swap: attribute source images")
    p.add_argument("--targets", type=Path, help="content_transfer: images that receive the content")
    p.add_argument("--sources", type=Path, help="content_transfer: images that give their content")
    p.add_argument("--images", type=Path, help="remove / encode: a folder of images (searched recursively)")
    p.add_argument("--input", type=Path, help="interpolate: a folder of sub-folders")
    p.add_argument("--pairs", action="store_true", help="pair images by file stem instead of all combinations")
    p.add_argument("--steps", type=int, default=8, help="interpolate: images per interpolation (>= 2)")
    p.add_argument("--align", default=None, metavar="PRESET", help="align photos first: ffhq | celeba | arcface")
    p.add_argument("--force", action="store_true", help="--align: overwrite the aligned photos of an earlier run "
                   "in OUT/aligned/")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    need = {"identity_swap": ("identity", "attributes"), "content_transfer": ("targets", "sources"),
            "remove": ("images",), "encode": ("images",), "interpolate": ("input",)}[args.mode]
    missing = [f"--{n}" for n in need if getattr(args, n) is None]
    if missing:
        p.error(f"{args.mode} needs {' and '.join(missing)}")
    if args.steps < 2:
        p.error("--steps must be >= 2")
    return args


def images_in(folder: Path, recursive: bool = False) -> list[Path]:
    from data.folders import DatasetLayoutError, IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise DatasetLayoutError(f"not a folder: {folder}")
    found = folder.rglob("*") if recursive else folder.iterdir()
    paths = sorted(q for q in found if q.suffix.lower() in IMAGE_EXTENSIONS and not q.name.startswith("."))
    if not paths:
        raise DatasetLayoutError(f"no images in {folder}")
    return paths


class Runner:
    """A loaded method plus the run's image reading."""

    def __init__(self, method, cfg):
        self.method, self.cfg = method, cfg

    def load(self, paths):
        import torch

        from data.folders import load_image, to_tensor

        d, size = self.cfg.data, self.method.image_size
        return torch.stack([to_tensor(load_image(q, size, d.crop, d.resize_filter)) for q in paths]).to(self.method.device)


def _save(img, path: Path) -> None:
    from core.figures import save_png, to_uint8

    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(to_uint8(img.float().clamp(-1, 1)), path)


def combine(run: Runner, fn, rows_dir: Path, cols_dir: Path, out: Path, pairs: bool) -> int:
    """``fn(row_images, col_images)`` for every (row, column) image pair (or same-stem pairs): files + a grid.
    Rows: identity sources / content sources; columns: attribute sources / targets."""
    from core.figures import image_grid, save_png

    rows, cols = images_in(rows_dir), images_in(cols_dir)
    if pairs:
        by_stem = {q.stem: q for q in cols}
        common = [q for q in rows if q.stem in by_stem]
        if not common:
            raise FileNotFoundError(f"no file names in common between {rows_dir} and {cols_dir}")
        for q in common:
            _save(fn(run.load([q]), run.load([by_stem[q.stem]]))[0], out / f"{q.stem}.png")
        return len(common)
    xc = run.load(cols)
    grid = [[None] + list(xc)]
    for q in rows:
        xr = run.load([q])
        row = fn(xr.expand(len(cols), -1, -1, -1), xc).float().clamp(-1, 1)
        for c, img in zip(cols, row):
            _save(img, out / f"{q.stem}__{c.stem}.png")
        grid.append([xr[0]] + list(row))
    save_png(image_grid(grid), out / "grid.png")
    return len(rows) * len(cols)


def remove(run: Runner, folder: Path, out: Path) -> int:
    from core.figures import image_grid, save_png

    paths = images_in(folder, recursive=True)
    bs, m = run.cfg.eval.batch_size, run.method
    for i in range(0, len(paths), bs):
        chunk = paths[i:i + bs]
        x = run.load(chunk)
        cells = [x, m.remove(x).float()]
        if hasattr(m, "masks"):
            cells.append(m.masks(x, x).float() * 2 - 1)
        for k, q in enumerate(chunk):
            save_png(image_grid([[c[k] for c in cells]]), (out / q.relative_to(folder)).with_suffix(".png"))
    return len(paths)


def encode(run: Runner, folder: Path, out: Path) -> int:
    import numpy as np

    paths = images_in(folder, recursive=True)
    bs, parts = run.cfg.eval.batch_size, {}
    for i in range(0, len(paths), bs):
        for k, v in run.method.encode(run.load(paths[i:i + bs])).items():
            parts.setdefault(k, []).append(v.float().cpu().numpy())
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "codes.npz", **{k: np.concatenate(v) for k, v in parts.items()})
    (out / "files.txt").write_text("".join(f"{q.relative_to(folder)}\n" for q in paths))
    return len(paths)


def interpolate(run: Runner, root: Path, out: Path, steps: int) -> int:
    """Identity / attribute code interpolation (a method with ``identity_code``, ``attribute_code``, ``generate``)."""
    import torch

    from core.figures import image_grid, save_png

    m = run.method
    if not all(hasattr(m, k) for k in ("identity_code", "attribute_code", "generate")):
        raise ValueError(f"{run.cfg.method} has no identity and attribute codes to interpolate (method 3 has)")
    subs = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    if not subs:
        raise FileNotFoundError(f"{root} has no sub-folders with id*/attr* images")

    def lerp(a, b):
        t = torch.linspace(0, 1, steps, device=a.device).view(-1, 1)
        return a + (b - a) * t

    for sub in subs:
        paths = images_in(sub)
        ids = [p for p in paths if "id" in p.stem.lower()]
        attrs = [p for p in paths if "attr" in p.stem.lower()]
        if not (1 <= len(ids) <= 2 and 1 <= len(attrs) <= 2) or len(ids) + len(attrs) < 3:
            raise ValueError(f"{sub}: need 1-2 images named *id* and 1-2 named *attr*, 3 or 4 in all; "
                             f"found {[p.name for p in ids]} and {[p.name for p in attrs]}")
        z_id, z_attr = m.identity_code(run.load(ids)), m.attribute_code(run.load(attrs))
        z_ids = lerp(z_id[0], z_id[-1]) if len(ids) == 2 else z_id
        z_attrs = lerp(z_attr[0], z_attr[-1]) if len(attrs) == 2 else z_attr
        rows = []
        for zi in z_ids:
            img, _ = m.generate(zi[None].expand(len(z_attrs), -1), z_attrs)
            rows.append(list(img.float().clamp(-1, 1)))
        if len(ids) == 2 and len(attrs) == 1:  # one strip, left to right
            rows = [[r[0] for r in rows]]
        save_png(image_grid(rows), out / f"{sub.name}.png")
    return len(subs)


def aligned(args, folders: list[str]) -> None:
    """``--align``: each input folder aligned into ``OUT/aligned/<name>/``, which the mode then reads."""
    from data.align_folder import align_folder

    for name in folders:
        src = getattr(args, name)
        dst = args.out / "aligned" / name
        n, failed, _ = align_folder(src, dst, args.align, force=args.force)
        print(f"aligned {n - failed} of {n} photos of {src} into {dst} (report: {dst / 'align_report.txt'})")
        setattr(args, name, dst)


@clear_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    from models import load_method

    method, cfg, _ = load_method(args.checkpoint, args.overrides)
    task = TASK_OF[args.mode]
    if task is not None and task not in method.tasks:
        raise ValueError(f"{args.checkpoint} is a {cfg.method} checkpoint, which does not implement {task} "
                         f"(its tasks: {', '.join(method.tasks) or 'none'})")
    if args.align:
        aligned(args, [n for n in ("identity", "attributes", "targets", "sources", "images") if getattr(args, n)])
    args.out.mkdir(parents=True, exist_ok=True)
    run = Runner(method, cfg)
    with method.inference(use_ema=not args.no_ema and cfg.eval.use_ema):
        if args.mode == "identity_swap":
            n = combine(run, method.swap, args.identity, args.attributes, args.out, args.pairs)
        elif args.mode == "content_transfer":
            n = combine(run, lambda src, tgt: method.transfer(tgt, src), args.sources, args.targets, args.out,
                        args.pairs)
        elif args.mode == "remove":
            n = remove(run, args.images, args.out)
        elif args.mode == "encode":
            n = encode(run, args.images, args.out)
        else:
            n = interpolate(run, args.input, args.out, args.steps)
    print(f"wrote {n} results to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

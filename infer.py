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
network size with ``data.resize_filter``); sub-folders are read by ``remove`` and ``encode`` only, hidden files
never. ``--align PRESET`` first aligns ordinary photos with dlib (``preprocess.py --align``; the optional face
extras) into ``OUT/aligned/<option>/`` (e.g. ``OUT/aligned/identity/``) and reads those.

Nothing is overwritten without ``--force``. The names of the results are fixed from the file names before the
checkpoint is loaded: inputs whose results would share a name keep their extension in it (``a.jpg`` and
``a.png`` -> ``a_jpg``, ``a_png``), and results that would still meet (``--pairs`` with ``a.jpg`` and ``a.png``)
are an error. No result replaces an input or another result of the run, even with ``--force``. A run whose
results (with ``--align`` also its aligned photos) are already in OUT refuses to start, naming them; ``--force``
replaces them. ``--out`` must not be an input folder (a sub-folder of one is fine, and is not read as input).
Every file is written to a temporary name and renamed into place.
``key=value`` overrides apply to the run's config.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from core.cli import RunError, clear_errors

TASK_OF = {"identity_swap": "identity_swap", "content_transfer": "content_transfer", "remove": "content_transfer",
           "encode": "factor_encoding", "interpolate": None}
INPUTS = {"identity_swap": ("identity", "attributes"), "content_transfer": ("targets", "sources"),
          "remove": ("images",), "encode": ("images",), "interpolate": ("input",)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=list(TASK_OF))
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by train.py")
    p.add_argument("--out", type=Path, required=True, help="output folder (not an input folder)")
    p.add_argument("--identity", type=Path, help="identity_swap: identity source images")
    p.add_argument("--attributes", type=Path, help="identity_swap: attribute source images")
    p.add_argument("--targets", type=Path, help="content_transfer: images that receive the content")
    p.add_argument("--sources", type=Path, help="content_transfer: images that give their content")
    p.add_argument("--images", type=Path, help="remove / encode: a folder of images (searched recursively)")
    p.add_argument("--input", type=Path, help="interpolate: a folder of sub-folders")
    p.add_argument("--pairs", action="store_true", help="pair images by file stem instead of all combinations")
    p.add_argument("--steps", type=int, default=8, help="interpolate: images per interpolation (>= 2)")
    p.add_argument("--align", default=None, metavar="PRESET", help="align photos first: ffhq | celeba | arcface")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier run in OUT (results, "
                   "and the aligned photos of --align in OUT/aligned/); never an input")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    missing = [f"--{n}" for n in INPUTS[args.mode] if getattr(args, n) is None]
    if missing:
        p.error(f"{args.mode} needs {' and '.join(missing)}")
    if args.steps < 2:
        p.error("--steps must be >= 2")
    return args


# -- the plan: what the run reads and writes, from the file names alone -------------------------------------

def inputs(args) -> tuple[dict[str, Path], dict[str, list[Path]], list[Path]]:
    """Each input option's folder and images (paths relative to it) as the mode will read them (with --align:
    ``OUT/aligned/<option>/`` and the names the photos will be aligned to), and every file the run reads."""
    from data.align_folder import check_out_folder, files_under, plan_alignment
    from data.folders import IMAGE_EXTENSIONS

    roots, images, reads = {}, {}, []
    for opt in INPUTS[args.mode]:
        src = getattr(args, opt)
        check_out_folder(src, args.out, f"--{opt}", "the results", "the input images", "results")
        if args.align:
            roots[opt] = args.out / "aligned" / opt
            files, names, _, _ = plan_alignment(src, roots[opt], force=args.force, skip=args.out)
            reads += files
            images[opt] = sorted(Path(f"{b}.png") for b in names.values())
        else:
            roots[opt], found = src, files_under(src, args.out)
            images[opt] = [q.relative_to(src) for q in found if q.suffix.lower() in IMAGE_EXTENSIONS]
        reads += [roots[opt] / q for q in images[opt]]
    return roots, images, reads


def _result_names(rels: list[Path], root: Path) -> dict[Path, str]:
    """Input image -> the name its results take: its path without the extension, or with the extension kept
    where two would meet (data/align_folder.py's ``output_names``)."""
    from data.align_folder import output_names

    names, renamed, _ = output_names(rels, all_faces=False)  # image files all have an extension: none left out
    for rel, other in renamed.items():
        print(f"{root / rel}: results named {names[rel].as_posix()} (name shared with {other})")
    return {rel: names[rel].as_posix() for rel in rels}


def _ids_attrs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    return [p for p in paths if "id" in p.stem.lower()], [p for p in paths if "attr" in p.stem.lower()]


def jobs(args, roots: dict[str, Path], images: dict[str, list[Path]]) -> list[tuple[str, tuple[Path, ...]]]:
    """The mode's results in the order they are made: (name in OUT, the input images it is made from)."""
    from data.folders import DatasetLayoutError

    top = {o: [q for q in images[o] if len(q.parts) == 1] for o in roots}  # the modes that do not recurse
    if args.mode in ("identity_swap", "content_transfer"):
        r, c = ("identity", "attributes") if args.mode == "identity_swap" else ("sources", "targets")
        for o in (r, c):
            if not top[o]:
                raise DatasetLayoutError(f"no images in {roots[o]}")
        rows, cols = [roots[r] / q for q in top[r]], [roots[c] / q for q in top[c]]
        if args.pairs:
            out = [(f"{q.stem}.png", (q, k)) for q in rows for k in cols if k.stem == q.stem]
            if not out:
                raise FileNotFoundError(f"no file names in common between {roots[r]} and {roots[c]}")
            return out
        rn, cn = _result_names(top[r], roots[r]), _result_names(top[c], roots[c])
        return ([(f"{rn[q.relative_to(roots[r])]}__{cn[k.relative_to(roots[c])]}.png", (q, k))
                 for q in rows for k in cols] + [("grid.png", ())])  # the grid: of every pair
    if args.mode in ("remove", "encode"):
        root, rels = roots["images"], images["images"]
        if not rels:
            raise DatasetLayoutError(f"no images in {root}")
        if args.mode == "encode":
            return [(name, tuple(root / q for q in rels)) for name in ("codes.npz", "files.txt")]
        names = _result_names(rels, root)
        return [(f"{names[q]}.png", (root / q,)) for q in rels]
    root, subs = roots["input"], defaultdict(list)
    for q in images["input"]:
        if len(q.parts) == 2:
            subs[q.parts[0]].append(root / q)
    if not subs:
        raise FileNotFoundError(f"{root} has no sub-folders with id*/attr* images")
    for sub, paths in sorted(subs.items()):
        ids, attrs = _ids_attrs(paths)
        if not (1 <= len(ids) <= 2 and 1 <= len(attrs) <= 2) or len(ids) + len(attrs) < 3:
            raise ValueError(f"{root / sub}: need 1-2 images named *id* and 1-2 named *attr*, 3 or 4 in all; "
                             f"found {[p.name for p in ids]} and {[p.name for p in attrs]}")
    return [(f"{sub}.png", tuple(paths)) for sub, paths in sorted(subs.items())]


def check_results(out: Path, results, reads: list[Path], force: bool) -> None:
    """No two results with one name, none over an input; without ``force`` none over a file already there."""
    from data.align_folder import refuse_taken
    from data.folders import DatasetLayoutError

    made_from, read = {}, {q.resolve(): q for q in reads}
    for name, sources in results:
        if name in made_from:
            raise DatasetLayoutError(f"the results of {' + '.join(map(str, made_from[name]))} and of "
                                     f"{' + '.join(map(str, sources))} would both be {out / name}: rename one")
        made_from[name] = sources
        if (out / name).resolve() in read:
            raise DatasetLayoutError(f"--out {out}: the result {name} would replace the input "
                                     f"{read[(out / name).resolve()]}; give another --out")
    refuse_taken(out, [] if force else sorted(name for name, _ in results if (out / name).exists()))


# -- the run --------------------------------------------------------------------------------------------------

class Runner:
    """A loaded method, the run's image reading and its writing into OUT (data/align_folder.py's ``Writer``:
    through a temporary file, never over another result of the run)."""

    def __init__(self, method, cfg, out: Path, force: bool):
        from data.align_folder import Writer

        self.method, self.cfg, self.out = method, cfg, out
        self.writer = Writer(out, force)

    def load(self, paths):
        import torch

        from data.folders import load_image, to_tensor

        d, size = self.cfg.data, self.method.image_size
        return torch.stack([to_tensor(load_image(q, size, d.crop, d.resize_filter)) for q in paths]).to(self.method.device)

    def write(self, name: str, save) -> None:
        """``save(path)`` writes the result ``name``; a file of that name that appeared during the run stays."""
        problem = self.writer.write(name, save)
        if problem:
            raise RunError(f"stopped before replacing a file: {problem} (in --out {self.out}; the check before "
                           "the run did not see it)")

    def png(self, name: str, image) -> None:
        """A (C, H, W) image in [-1, 1] or a uint8 array (``image_grid``) as the PNG ``name``."""
        import numpy as np
        from PIL import Image

        from core.figures import to_uint8

        a = image if isinstance(image, np.ndarray) else to_uint8(image.float().clamp(-1, 1))
        self.write(name, lambda p: Image.fromarray(a).save(p, format="PNG"))


def combine(run: Runner, fn, results, pairs: bool) -> int:
    """``fn(row_images, col_images)`` for every (row, column) image pair (or same-stem pairs): files + a grid.
    Rows: identity sources / content sources; columns: attribute sources / targets."""
    from core.figures import image_grid

    if pairs:
        for name, (q, k) in results:
            run.png(name, fn(run.load([q]), run.load([k]))[0])
        return len(results)
    name_of = {sources: name for name, sources in results[:-1]}
    rows, cols = list(dict.fromkeys(q for q, _ in name_of)), list(dict.fromkeys(k for _, k in name_of))
    xc = run.load(cols)
    grid = [[None] + list(xc)]
    for q in rows:
        xr = run.load([q])
        row = fn(xr.expand(len(cols), -1, -1, -1), xc).float().clamp(-1, 1)
        for k, img in zip(cols, row):
            run.png(name_of[q, k], img)
        grid.append([xr[0]] + list(row))
    run.png("grid.png", image_grid(grid))
    return len(rows) * len(cols)


def remove(run: Runner, results) -> int:
    from core.figures import image_grid

    bs, m = run.cfg.eval.batch_size, run.method
    for i in range(0, len(results), bs):
        chunk = results[i:i + bs]
        x = run.load([q for _, (q,) in chunk])
        cells = [x, m.remove(x).float()]
        if hasattr(m, "masks"):
            cells.append(m.masks(x, x).float() * 2 - 1)
        for k, (name, _) in enumerate(chunk):
            run.png(name, image_grid([[c[k] for c in cells]]))
    return len(results)


def encode(run: Runner, results, root: Path) -> int:
    import numpy as np

    paths = results[0][1]
    bs, parts = run.cfg.eval.batch_size, {}
    for i in range(0, len(paths), bs):
        for k, v in run.method.encode(run.load(paths[i:i + bs])).items():
            parts.setdefault(k, []).append(v.float().cpu().numpy())
    codes = {k: np.concatenate(v) for k, v in parts.items()}

    def save_codes(path):
        with open(path, "wb") as f:
            np.savez(f, **codes)
    run.write("codes.npz", save_codes)
    run.write("files.txt", lambda p: p.write_text("".join(f"{q.relative_to(root)}\n" for q in paths)))
    return len(paths)


def interpolate(run: Runner, results, steps: int) -> int:
    """Identity / attribute code interpolation (a method with ``identity_code``, ``attribute_code``, ``generate``)."""
    import torch

    from core.figures import image_grid

    m = run.method

    def lerp(a, b):
        t = torch.linspace(0, 1, steps, device=a.device).view(-1, 1)
        return a + (b - a) * t

    for name, paths in results:
        ids, attrs = _ids_attrs(list(paths))
        z_id, z_attr = m.identity_code(run.load(ids)), m.attribute_code(run.load(attrs))
        z_ids = lerp(z_id[0], z_id[-1]) if len(ids) == 2 else z_id
        z_attrs = lerp(z_attr[0], z_attr[-1]) if len(attrs) == 2 else z_attr
        rows = []
        for zi in z_ids:
            img, _ = m.generate(zi[None].expand(len(z_attrs), -1), z_attrs)
            rows.append(list(img.float().clamp(-1, 1)))
        if len(ids) == 2 and len(attrs) == 1:  # one strip, left to right
            rows = [[r[0] for r in rows]]
        run.png(name, image_grid(rows))
    return len(results)


def aligned(args, roots: dict[str, Path]) -> None:
    """``--align``: each input folder aligned into ``OUT/aligned/<option>/``, which the mode then reads."""
    from data.align_folder import align_folder

    for opt, dst in roots.items():
        src = getattr(args, opt)
        n, failed, _ = align_folder(src, dst, args.align, force=args.force, skip=args.out)
        print(f"aligned {n - failed} of {n} photos of {src} into {dst} (report: {dst / 'align_report.txt'})")


@clear_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    roots, images, reads = inputs(args)  # every refusal before the checkpoint is loaded
    results = jobs(args, roots, images)
    check_results(args.out, results, reads, args.force)
    if args.align:
        from data.dlib_faces import require

        require("face alignment")
    from models import load_method

    method, cfg, _ = load_method(args.checkpoint, args.overrides)
    task = TASK_OF[args.mode]
    if task is not None and task not in method.tasks:
        raise ValueError(f"{args.checkpoint} is a {cfg.method} checkpoint, which does not implement {task} "
                         f"(its tasks: {', '.join(method.tasks) or 'none'})")
    if args.mode == "interpolate" and not all(hasattr(method, k) for k in ("identity_code", "attribute_code",
                                                                           "generate")):
        raise ValueError(f"{cfg.method} has no identity and attribute codes to interpolate (method 3 has)")
    if args.align:
        aligned(args, roots)  # the results of the photos that aligned: the names checked above
        results = jobs(args, roots, {o: [q for q in images[o] if (roots[o] / q).is_file()] for o in roots})
    run = Runner(method, cfg, args.out, args.force)
    with method.inference(use_ema=not args.no_ema and cfg.eval.use_ema):
        if args.mode == "identity_swap":
            n = combine(run, method.swap, results, args.pairs)
        elif args.mode == "content_transfer":
            n = combine(run, lambda src, tgt: method.transfer(tgt, src), results, args.pairs)
        elif args.mode == "remove":
            n = remove(run, results)
        elif args.mode == "encode":
            n = encode(run, results, roots["images"])
        else:
            n = interpolate(run, results, args.steps)
    print(f"wrote {n} results to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

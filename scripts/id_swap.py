"""Inference for method 3 (id_mapper): put one face's identity on another face's attributes.

    python scripts/id_swap.py dirs  --checkpoint CKPT --id-dir IDS --attr-dir ATTRS --out OUT
    python scripts/id_swap.py pairs --checkpoint CKPT --id-dir IDS --attr-dir ATTRS --out OUT
    python scripts/id_swap.py interpolate --checkpoint CKPT --input DIR --out OUT [--steps 8]

dirs: every identity image with every attribute image -> ``OUT/<id>__<attr>.png`` and ``OUT/grid.png``
(attribute sources across the top, identity sources down the left).
pairs: images with the same file stem in both folders -> ``OUT/<stem>.png``.
interpolate: every sub-folder of DIR holds images whose names contain ``id`` and ``attr`` (e.g. id0.png,
id1.png, attr.png). Two identity images and one attribute image interpolate the identity code; one
identity and two attribute images interpolate the attribute code; two of each give a grid (identity
down, attributes across) -> ``OUT/<sub-folder>.png``.
Images are resized to the generator's resolution; ``key=value`` overrides apply to the run's config.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.cli import clear_errors, report, user_errors  # noqa: E402


def _images(folder: Path) -> list[Path]:
    from data.folders import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    paths = sorted(q for q in folder.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    return paths


def _load(paths, size, device):
    import torch

    from data.folders import load_image, to_tensor

    return torch.stack([to_tensor(load_image(q, size, None)) for q in paths]).to(device)


def _save(img, path):
    from core.figures import save_png, to_uint8

    save_png(to_uint8(img), path)


def run_dirs(method, nets, id_dir, attr_dir, out):
    ids, attrs = _images(id_dir), _images(attr_dir)
    xi, xa = _load(ids, method.size, method.device), _load(attrs, method.size, method.device)
    z_attr = method.attribute_code(xa, nets)
    z_id = method.identity_code(xi)
    grid = [[None] + list(xa)]
    for i, p in enumerate(ids):
        row, _ = method.generate(z_id[i:i + 1].expand(len(attrs), -1), z_attr, nets)
        row = row.float().clamp(-1, 1)
        for q, img in zip(attrs, row):
            _save(img, out / f"{p.stem}__{q.stem}.png")
        grid.append([xi[i]] + list(row))
    from core.figures import image_grid, save_png

    save_png(image_grid(grid), out / "grid.png")
    return len(ids) * len(attrs)


def run_pairs(method, nets, id_dir, attr_dir, out):
    ids = {p.stem: p for p in _images(id_dir)}
    attrs = {p.stem: p for p in _images(attr_dir)}
    common = sorted(ids.keys() & attrs.keys())
    if not common:
        raise FileNotFoundError(f"no file names in common between {id_dir} and {attr_dir}")
    for stem in common:
        xi = _load([ids[stem]], method.size, method.device)
        xa = _load([attrs[stem]], method.size, method.device)
        _save(method.swap(xi, xa, nets)[0].float().clamp(-1, 1), out / f"{stem}.png")
    return len(common)


def _lerp(a, b, steps):
    import torch

    t = torch.linspace(0, 1, steps, device=a.device).view(-1, 1)
    return a + (b - a) * t


def run_interpolate(method, nets, root, out, steps):
    from core.figures import image_grid, save_png

    subs = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    if not subs:
        raise FileNotFoundError(f"{root} has no sub-folders with id*/attr* images")
    for sub in subs:
        paths = _images(sub)
        ids = [p for p in paths if "id" in p.stem.lower()]
        attrs = [p for p in paths if "attr" in p.stem.lower()]
        if not (1 <= len(ids) <= 2 and 1 <= len(attrs) <= 2) or len(ids) + len(attrs) < 3:
            raise ValueError(f"{sub}: need 1-2 images named *id* and 1-2 named *attr*, 3 or 4 in all; "
                             f"found {[p.name for p in ids]} and {[p.name for p in attrs]}")
        z_id = method.identity_code(_load(ids, method.size, method.device))
        z_attr = method.attribute_code(_load(attrs, method.size, method.device), nets)
        z_ids = _lerp(z_id[0], z_id[-1], steps) if len(ids) == 2 else z_id
        z_attrs = _lerp(z_attr[0], z_attr[-1], steps) if len(attrs) == 2 else z_attr
        rows = []
        for zi in z_ids:
            img, _ = method.generate(zi[None].expand(len(z_attrs), -1), z_attrs, nets)
            rows.append(list(img.float().clamp(-1, 1)))
        if len(ids) == 2 and len(attrs) == 1:  # one strip, left to right
            rows = [[r[0] for r in rows]]
        save_png(image_grid(rows), out / f"{sub.name}.png")
    return len(subs)


@clear_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["dirs", "pairs", "interpolate"])
    p.add_argument("--checkpoint", required=True, help="an id_mapper checkpoint")
    p.add_argument("--id-dir", type=Path, help="dirs/pairs: identity source images")
    p.add_argument("--attr-dir", type=Path, help="dirs/pairs: attribute source images")
    p.add_argument("--input", type=Path, help="interpolate: folder of sub-folders")
    p.add_argument("--steps", type=int, default=8, help="interpolate: images per interpolation")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)
    if args.mode in ("dirs", "pairs") and not (args.id_dir and args.attr_dir):
        p.error(f"{args.mode} needs --id-dir and --attr-dir")
    if args.mode == "interpolate" and not args.input:
        p.error("interpolate needs --input")
    if args.steps < 2:
        p.error("--steps must be >= 2")

    import torch

    from core import checkpoint as ckpt
    from core.config import load_config
    from core.runtime import pick_device
    from models import build_method

    try:
        state = ckpt.load(args.checkpoint)
        cfg = load_config(None, args.overrides, base=state["config"])
        if cfg.method != "id_mapper":
            raise ValueError(f"{args.checkpoint} is a {cfg.method} checkpoint; id_swap needs id_mapper")
        method = build_method(cfg, pick_device(cfg.device))
        method.load_training_state(state, weights_only=True)
        nets = method.eval_nets(cfg.eval.use_ema)
        args.out.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            if args.mode == "dirs":
                n = run_dirs(method, nets, args.id_dir, args.attr_dir, args.out)
            elif args.mode == "pairs":
                n = run_pairs(method, nets, args.id_dir, args.attr_dir, args.out)
            else:
                n = run_interpolate(method, nets, args.input, args.out, args.steps)
    except user_errors() as e:
        return report(e, 2)
    print(f"wrote {n} results to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Remove a mask_ct model's content (e.g. facial hair) from every image in a folder.

    python scripts/remove_content.py --checkpoint runs/mask_celeba_glasses/checkpoint-latest.pt \\
        --images some/folder --out removed/ [model.removal_threshold=0.1 device=cpu ...]

Writes ``<out>/<relative path>.png``: input | removal | self-mask. Images get the run's geometry (data.size,
data.crop). Unlike the original removal.py this handles every image (not --amount), any image mode,
short last batches and any device, and feeds D_A [E1(x), 0] as in training (not [E1(x), E2(x)]).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.cli import clear_errors  # noqa: E402


@clear_errors
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_intermixed_args(argv)

    import torch

    from core import checkpoint as ckpt
    from core.config import load_config
    from core.loop import pick_device
    from data.folders import IMAGE_EXTENSIONS, load_image, to_tensor
    from metrics.grid import image_grid, save_png
    from models import build_method

    state = ckpt.load(args.checkpoint)
    cfg = load_config(None, args.overrides, base=state["config"])
    if cfg.method != "mask_ct":
        p.error(f"{args.checkpoint} is a {cfg.method} checkpoint; removal needs mask_ct")
    method = build_method(cfg, pick_device(cfg.device))
    method.load_training_state(state, weights_only=True)
    nets = method.eval_nets(cfg.eval.use_ema)
    root = Path(args.images)
    paths = sorted(q for q in root.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        p.error(f"no images in {args.images}")
    out = Path(args.out)
    bs = cfg.eval.batch_size
    with torch.no_grad():
        for i in range(0, len(paths), bs):
            chunk = paths[i:i + bs]
            x = torch.stack([to_tensor(load_image(q, cfg.data.size, cfg.data.crop, cfg.data.resize_filter)) for q in chunk]).to(method.device)
            removed, mask = method.remove(x, nets).float(), method.masks(x, x, nets).float() * 2 - 1
            for q, xi, ri, mi in zip(chunk, x, removed, mask):
                save_png(image_grid([[xi, ri, mi]]), (out / q.relative_to(root)).with_suffix(".png"))
    print(f"wrote {len(paths)} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

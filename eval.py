"""Evaluate a trained checkpoint: ``python eval.py --checkpoint runs/synth_glasses/checkpoint-latest.pt``.

Writes image grids and a metrics table (Markdown + JSON) into ``--out`` (default: ``<run>/eval-<step>/``)
and prints the table. The config is the one saved in the checkpoint; ``--config`` and ``key=value``
overrides are applied on top (e.g. ``eval.max_images=512 device=cpu``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint file written by train.py")
    p.add_argument("--config", default=None, help="experiment YAML applied over the checkpoint's config")
    p.add_argument("--out", default=None, help="output folder (default: <run>/eval-<step>)")
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw weights even if EMA weights exist")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p.parse_intermixed_args(argv)


def evaluators():
    from metrics.content_transfer import evaluate_content_transfer
    from metrics.face_nets import evaluate_face_nets_run
    from metrics.g2g import evaluate_g2g
    from metrics.gan import evaluate_gan
    from metrics.id_disentangle import evaluate_id_disentanglement
    from metrics.mad import evaluate_mad
    from metrics.mask_transfer import evaluate_mask_transfer

    return {"content_ae": evaluate_content_transfer, "mask_ct": evaluate_mask_transfer,
            "id_mapper": evaluate_id_disentanglement, "face_nets": evaluate_face_nets_run, "g2g": evaluate_g2g,
            "stylegan2": evaluate_gan, "mad": evaluate_mad}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from core import checkpoint as ckpt
    from core.config import ConfigError, load_config
    from core.loop import pick_device, seed_everything
    from metrics.tables import markdown_table, write_metrics
    from models import build_method

    try:
        state = ckpt.load(args.checkpoint)
        cfg = load_config(args.config, args.overrides, base=state["config"])
    except (ckpt.CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = evaluators().get(cfg.method)
    if table is None:
        print(f"error: no evaluation for method {cfg.method!r}", file=sys.stderr)
        return 2
    seed_everything(cfg.seed)
    try:
        device = pick_device(cfg.device)
        method = build_method(cfg, device)
        method.load_training_state(state, weights_only=True)
        out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval-{state['step']:07d}"
        with torch.no_grad():
            rows = table(method, cfg, out, use_ema=cfg.eval.use_ema and not args.no_ema)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    md, js = write_metrics(out, "metrics", rows)
    print(markdown_table(rows))
    print(f"\nstep {state['step']}, {state['images'] / 1000:.1f} kimg; wrote {md}, {js} and grids to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How visible the synthetic world's expression is, and what the identity-swap methods' expression error measures.

Three tables (markdown on stdout; docs/reference.md, "Expression"):
1. pixel cost: the PSNR of the board's true swaps against the same swaps with one factor group wholly wrong
   (``data.synthetic.counterfactual.wrong_group_psnr``), at each ``--scales`` value of data.expression_scale, and
   the share of test faces whose expression pushes features past each other (``painter.expression_overlaps``);
2. blur (with ``--judge``): the judges' readings of the true swaps blurred by a Gaussian of each ``--sigmas`` (px
   at the board's 32 px): how sharp an image must be for the analysis judge to read its expression;
3. reconstruction (with ``--judge`` and ``--checkpoints``): each identity-swap run's swap against its
   reconstruction of the attribute source (the swap of a face with itself), scored by the same judges against the
   attribute source's own factors. An expression error as large on reconstructions as on swaps is no failure to
   separate expression from identity: the decoder does not draw it. With ``--blur-swaps`` each run's swaps are
   also scored blurred at each ``--sigmas`` > 0: a judge fooled by pixel noise (not faces) loses the identity under
   a blur that costs the true swap little (table 2's rows).

    python scripts/expression_cue.py --scales 1 2 3
    python scripts/expression_cue.py --judge runs/face_judge_synth/checkpoint-latest.pt \\
        --checkpoints runs/reference/{g2g_synth,mad_synth_joint,id_synth}/checkpoint-latest.pt [--blur-swaps]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from core.cli import clear_errors  # noqa: E402

SIZE = 32  # the identity-swap board's scoring size


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/reference/g2g_synth.yaml", help="its data section is the world")
    p.add_argument("--pairs", type=int, default=256, help="the first N pairs of the identity-swap board (256)")
    p.add_argument("--scales", type=float, nargs="*", default=[], help="expression_scale values of table 1")
    p.add_argument("--faces", type=int, default=5000, help="test faces of table 1's overlap columns (5000)")
    p.add_argument("--judge", default=None, help="a face_nets checkpoint: identity and analysis judge of tables 2, 3")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 0.8, 1.0, 1.3], help="blurs of table 2")
    p.add_argument("--checkpoints", nargs="*", default=[], help="identity-swap runs of table 3")
    p.add_argument("--blur-swaps", action="store_true", help="table 3: each run's swaps also blurred at each sigma > 0")
    p.add_argument("--run-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the runs' saved configs (e.g. model.class_weights=... where it moved)")
    p.add_argument("overrides", nargs="*", help="config overrides (data.expression_scale=3 ...), before the options")
    return p.parse_args(argv)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``sigma`` px (torchvision's; kernel 2 ceil(3 sigma) + 1); ``sigma`` 0: ``x``."""
    from torchvision.transforms.functional import gaussian_blur

    if sigma <= 0:
        return x
    k = 2 * int(-(-3 * sigma // 1)) + 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


def _row(label: str, s: dict, pixel: str = "gt_psnr") -> str:
    return (f"| {label} | {s[pixel]:.2f} | {s['id_sim']:.3f} | {s['pose_err']:.4f} | {s['expr_err']:.3f} | "
            f"{s['lnd_err_px']:.3f} |")


HEAD = ("| {} | PSNR | identity similarity | pose error | expression error | landmark error px |\n"
        "|---|---|---|---|---|---|")


@clear_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    from core.config import load_config
    from data.synthetic.counterfactual import faces, identity_swap_pairs, wrong_group_psnr
    from data.synthetic import WORLD_KEYS
    from data.synthetic.painter import expression_overlaps
    from evaluation.identity_judge import build_identity_judge
    from evaluation.identity_swap import outputs, score
    from models import load_method
    from models.nets.face_small import build_landmark_net, check_world

    cfg = load_config(args.config, args.overrides)
    if args.scales:
        print("| data.expression_scale | expression wrong | pose wrong | identity wrong (copy attribute source) | "
              "lips past the chin | brows on the eyes |\n|---|---|---|---|---|---|")
        for s in args.scales:
            d = load_config(args.config, [*args.overrides, f"data.expression_scale={s}"]).data
            v = [f"{wrong_group_psnr(d, g, args.pairs, SIZE):.2f}" for g in ("expression", "pose", "identity")]
            ds = faces(d, "test", args.faces, SIZE)
            over = [expression_overlaps(ds.factors(i)) for i in range(len(ds))]
            v += [f"{sum(o[k] for o in over) / len(over):.1%}" for k in ("lip_past_chin", "brow_on_eye")]
            print(f"| {s:g} | " + " | ".join(v) + " |")
        print()
    if not args.judge:
        return 0
    ident, analysis = build_identity_judge("small", args.judge), build_landmark_net(args.judge)
    for role, net in (("identity judge", ident), ("analysis judge", analysis)):
        check_world(net, cfg.data, role, args.judge)
    pairs = identity_swap_pairs(cfg.data, args.pairs, SIZE)
    with torch.no_grad():
        print(HEAD.format("true swap blurred, sigma px"))
        for s in args.sigmas:
            r = score(blur(pairs["gt"], s), pairs, ident, analysis)
            r["gt_psnr"] = min(r["gt_psnr"], 99.99)
            print(_row(f"{s:g}", r))
        for label, key in (("copy attribute source", "attr_ref"), ("copy identity source", "id_ref")):
            print(_row(label, score(pairs[key], pairs, ident, analysis)))
        print()
        if args.checkpoints:
            print(HEAD.format("run: swap (PSNR vs true swap) / reconstruction (PSNR vs attribute source)"))
        for ck in args.checkpoints:
            method, run_cfg, _ = load_method(ck, overrides=args.run_set, device="cpu")
            for k in ("seed", *WORLD_KEYS):
                if run_cfg.data[k] != cfg.data[k]:
                    raise ValueError(f"{ck} was trained with data.{k}={run_cfg.data[k]!r}, the world here has "
                                     f"{cfg.data[k]!r} (add the override data.{k}=... before the options)")
            p = identity_swap_pairs(cfg.data, args.pairs, method.image_size, SIZE)
            out = outputs(method, p, run_cfg.eval.batch_size, SIZE)
            swap = score(out, p, ident, analysis)
            rec = score(outputs(method, {**p, "id": p["attr"]}, run_cfg.eval.batch_size, SIZE),
                        {**p, "gt": p["attr_ref"], "id_ref": p["attr_ref"]}, ident, analysis)
            print(_row(f"{ck} swap", swap))
            print(_row(f"{ck} reconstruction", rec))
            for s in args.sigmas if args.blur_swaps else ():
                if s > 0:
                    print(_row(f"{ck} swap blurred {s:g}", score(blur(out, s), p, ident, analysis)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

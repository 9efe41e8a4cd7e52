"""The ceiling a StyleGAN2 generator sets for method 3: how well can it draw the identity-swap board's true swaps?

Method 3's output is G(w) for one w broadcast to every layer, whatever its mapper learns. For the true swaps of
the identity-swap leaderboard (same synthetic world and pairs, at the generator's resolution) this script finds
by gradient descent the single w whose image is closest to each true swap (mean squared error, the PSNR's own
loss; Adam from the best of a few truncated samples), then scores those projections as the leaderboard scores a
method: PSNR against the true swap, judged identity similarity, pose / expression / landmark errors. No mapper
can beat them by much (w is free here, not held to the generator's W distribution), so a projection score below
a reference goal rules that goal out for method 3 with this generator. A second table asks the same of the
generator's own samples: the spread (standard deviation over the samples, mean over dimensions) of the analysis
judge's pose and expression readings on --samples samples at truncation 0.7 (the W set's), as a fraction of
their spread on as many renders. A generator that drops a factor's variation shows a fraction far below 1.

    python scripts/generator_ceiling.py --generator runs/reference/stylegan2_synth/checkpoint-latest.pt
    python scripts/generator_ceiling.py --run runs/reference/stylegan2_synth     # every numbered snapshot

Judges default to runs/face_judge_synth (the leaderboard's). Writes ``generator_ceiling.md`` / ``.json`` into
the run folder (--run) or --out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from core.cli import clear_errors  # noqa: E402

JUDGE = "runs/face_judge_synth/checkpoint-latest.pt"
COLUMNS = ("gt_psnr", "id_sim", "pose_err", "expr_err", "lnd_err_px")
SPREAD = ("pose_spread", "expression_spread")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--generator", help="a StyleGAN2 checkpoint (public format or a stylegan2 run's)")
    src.add_argument("--run", help="a stylegan2 run folder: every numbered snapshot, then the latest")
    p.add_argument("--pairs", type=int, default=64, help="the first N true swaps of the leaderboard (64)")
    p.add_argument("--steps", type=int, default=300, help="Adam steps of the projection")
    p.add_argument("--starts", type=int, default=16, help="truncated samples tried as the starting w")
    p.add_argument("--samples", type=int, default=512, help="generator samples / renders of the spread table")
    p.add_argument("--identity-judge", default=JUDGE)
    p.add_argument("--analysis-judge", default=JUDGE)
    p.add_argument("--factor-net", default=None,
                   help="a landmark net (face_nets run) whose pose / expression readings of G(w) the projection also "
                        "matches to the true swap's (use another net than the analysis judge, e.g. runs/face_nets_synth)")
    p.add_argument("--factor-weight", type=float, default=1.0, help="weight of --factor-net's term")
    p.add_argument("--config", default="configs/stylegan2_synth.yaml", help="its data section is the world")
    p.add_argument("--out", default=None, help="output folder (default: the run folder, or the generator's)")
    return p.parse_args(argv)


def project(g, w_avg, target: torch.Tensor, steps: int, starts: int, seed: int = 0, lr: float = 0.1,
            factor_net=None, factors: dict | None = None, factor_weight: float = 0.0) -> torch.Tensor:
    """Per image, the w (B, style_dim) whose G(w) has the least squared error to ``target`` (B, 3, S, S); with
    ``factor_net`` (a landmark net: pose / expression heads) plus ``factor_weight`` x the squared error of its
    pose and expression readings of G(w) to ``factors`` (the true ones, (B, k) each)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(starts, g.style_dim, generator=gen).to(w_avg)
        cands = g.truncate(g.mapping(z), 0.7, w_avg)
        err = torch.stack([((g.synthesis(c[None].expand(target.shape[0], -1)) - target) ** 2).flatten(1).mean(1)
                           for c in cands], 1)
        w = cands[err.argmin(1)].clone()
    w.requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for step in range(steps):
        for group in opt.param_groups:  # cosine decay: a settled w at the end
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        img = g.synthesis(w)
        loss = ((img - target) ** 2).flatten(1).mean(1).sum()
        if factor_net is not None and factor_weight > 0:
            read = factor_net(img)
            loss = loss + factor_weight * sum(((read[k] - factors[k]) ** 2).mean(1).sum() for k in ("pose", "expression"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return w.detach()


def ceiling(g, w_avg, name: str, pairs: dict, ident, analysis, steps: int, starts: int, bs: int = 64,
            factor_net=None, factor_weight: float = 0.0) -> dict:
    """Leaderboard scores of generator ``g``'s projections of ``pairs["gt"]`` (+ the time it took)."""
    from evaluation import identity_swap as idswap

    t = time.perf_counter()
    size = pairs["gt"].shape[-1]
    if g.size != size:
        raise ValueError(f"{name}: a {g.size} px generator; the pairs are {size} px")
    outs = []
    for i in range(0, pairs["gt"].shape[0], bs):
        factors = {k: pairs[k][i:i + bs] for k in ("pose", "expression")}
        w = project(g, w_avg, pairs["gt"][i:i + bs], steps, starts, seed=i, factor_net=factor_net, factors=factors,
                    factor_weight=factor_weight)
        with torch.no_grad():
            outs.append(g.synthesis(w).clamp(-1, 1))
    s = idswap.score(torch.cat(outs), pairs, ident, analysis)
    return {"generator": name, **{k: s[k] for k in COLUMNS if k in s},
            "seconds": time.perf_counter() - t}


def spread(images: torch.Tensor, analysis) -> dict:
    """Std over images of the analysis judge's pose / expression readings, mean over dimensions."""
    from metrics.batch import batched

    return {k: batched(lambda t: analysis(t)[k], images).float().std(0).mean().item() for k in ("pose", "expression")}


def sample_spread(g, w_avg, analysis, renders: dict, n: int, bs: int = 128) -> dict:
    """``spread`` of n truncated samples of ``g`` as a fraction of the renders' (``renders``: their spread)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        imgs = torch.cat([g.synthesis(g.truncate(g.mapping(torch.randn(min(bs, n - i), g.style_dim, generator=gen)),
                                                 0.7, w_avg)).clamp(-1, 1) for i in range(0, n, bs)])
    return {k: v / renders[k] for k, v in spread(imgs, analysis).items()}


@clear_errors
def main(argv=None) -> int:
    from core.checkpoint import snapshots
    from core.config import load_config
    from core.runtime import seed_everything
    from data.synthetic.counterfactual import faces, identity_swap_pairs, stack
    from evaluation import identity_swap as idswap
    from evaluation.identity_judge import build_identity_judge
    from evaluation.leaderboard import _world
    from models.nets.face_small import build_landmark_net
    from models.nets.stylegan2 import load_generator

    args = parse_args(argv)
    torch.set_grad_enabled(True)
    seed_everything(0)
    paths = snapshots(args.run) if args.run else [Path(args.generator)]
    if not paths:
        print(f"error: no checkpoints in {args.run}", file=sys.stderr)
        return 2
    loaded = {paths[-1]: load_generator(paths[-1])}  # its size sets the pairs' (each snapshot is loaded once)
    size = loaded[paths[-1]][0].size
    cfg = load_config(args.config, [])
    pairs = identity_swap_pairs(_world(cfg, size, args.pairs), args.pairs, size, size)
    ident = build_identity_judge("small", args.identity_judge, "cpu") if args.identity_judge else None
    analysis = build_landmark_net(args.analysis_judge, "cpu") if args.analysis_judge else None
    factor_net = build_landmark_net(args.factor_net, "cpu").requires_grad_(False) if args.factor_net else None
    rows = [{"generator": "ground truth (true swap)", **idswap.truth_score(pairs, ident, analysis)},
            {"generator": "baseline: copy attribute source", **idswap.score(pairs["attr_ref"], pairs, ident, analysis)}]
    renders = spread(stack(faces(_world(cfg, size, args.samples), "test", args.samples, size)), analysis) \
        if analysis is not None and args.samples > 1 else None
    for p in paths:
        g, w_avg = loaded.pop(p) if p in loaded else load_generator(p)
        r = ceiling(g, w_avg, str(p), pairs, ident, analysis, args.steps, args.starts, factor_net=factor_net,
                    factor_weight=args.factor_weight if factor_net is not None else 0.0)
        if renders:
            r.update({f"{k}_spread": v for k, v in sample_spread(g, w_avg, analysis, renders, args.samples).items()})
        print(f"{p}: " + ", ".join(f"{k} {r[k]:.4g}" for k in (*COLUMNS, *SPREAD) if k in r) + f" ({r['seconds']:.0f} s)")
        rows.append(r)
    out = Path(args.out) if args.out else (Path(args.run) if args.run else Path(args.generator).parent)
    out.mkdir(parents=True, exist_ok=True)
    head = f"## Generator ceiling: projections of {pairs['gt'].shape[0]} true swaps at {size} px ({args.steps} Adam steps)"
    if factor_net is not None:
        head += f", + {args.factor_weight} x the pose / expression error read by {args.factor_net}"
    lines = [head, "", "| generator | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['generator']} | " + " | ".join(f"{r[k]:.4g}" if k in r else "—" for k in COLUMNS) + " |")
    if renders:
        lines += ["", f"Spread of the analysis judge's readings over {args.samples} samples (truncation 0.7) as a fraction "
                  f"of their spread over {args.samples} renders (renders: pose {renders['pose']:.4g}, expression "
                  f"{renders['expression']:.4g}):", "", "| generator | pose | expression |", "|---|---|---|"]
        lines += [f"| {r['generator']} | {r['pose_spread']:.3f} | {r['expression_spread']:.3f} |" for r in rows
                  if "pose_spread" in r]
    (out / "generator_ceiling.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "generator_ceiling.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Protocol of image generation (the ``stylegan2`` method): sample grids and FID / KID against real (synthetic)
faces.

Features come from ``eval.features`` (see metrics/fid.py). Rows: generator samples at truncation 1 and 0.7, and a
floor: a second, disjoint set of real renders against the same reference set (the distance that sampling noise
alone gives at this number of images).
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.figures import image_grid, save_png
from data.synthetic.counterfactual import generator_reference
from metrics.fid import build_extractor, extract, fid_from_features, kid_from_features

BEST = ("fid", "min")


@torch.no_grad()
def generator_samples(g, n: int, truncation: float, seed: int, batch: int = 64) -> torch.Tensor:
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed))
    w_avg = g.mean_w() if truncation != 1 else None
    dev = next(g.parameters()).device
    out = []
    for i in range(0, n, batch):
        w = g.truncate(g.mapping(z[i:i + batch].to(dev)), truncation, w_avg)
        out.append(g.synthesis(w, noise_mode="const").float().clamp(-1, 1).cpu())
    return torch.cat(out)


def _fid_rows(method, cfg, n: int, sets: dict) -> list[dict]:
    e = cfg.eval
    extractor = build_extractor(e.features, e.feature_weights, method.device)
    ref = extract(extractor, generator_reference(cfg.data, "gan-eval-reference", n), e.batch_size)
    rows = []
    for name, imgs in sets.items():
        f = extract(extractor, imgs, e.batch_size)
        kid, kid_std = kid_from_features(f, ref, subset_size=min(e.kid_subset_size, n), seed=cfg.seed)
        rows.append({"images": name, "features": e.features, "n": n, "fid": fid_from_features(f, ref),
                     "kid": kid, "kid_std": kid_std})
    return rows


def evaluate(method, cfg, out_dir: Path) -> list[dict]:
    n = cfg.eval.max_images
    with method.inference():
        g = method.nets["g"]
        sets = {"generator, truncation 1.0": generator_samples(g, n, 1.0, cfg.seed),
                "generator, truncation 0.7": generator_samples(g, n, 0.7, cfg.seed)}
    sets["other real renders (floor)"] = generator_reference(cfg.data, "gan-eval-other", n)
    rows = _fid_rows(method, cfg, n, sets)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = min(8, n)
    for name, key in (("samples.png", "generator, truncation 1.0"), ("samples_truncated.png", "generator, truncation 0.7")):
        imgs = sets[key]
        save_png(image_grid([list(imgs[r * k:(r + 1) * k]) for r in range(min(k, n // k))]), out_dir / name)
    return rows


def scores(method, cfg, n: int) -> dict[str, float]:
    """FID / KID of ``n`` samples at truncation 1 (needs ``eval.feature_weights`` unless features need none)."""
    with method.inference():
        imgs = generator_samples(method.nets["g"], n, 1.0, cfg.seed)
    r = _fid_rows(method, cfg, n, {"samples": imgs})[0]
    return {"fid": r["fid"], "kid": r["kid"]}

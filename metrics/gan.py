"""Evaluation of a ``stylegan2`` run: sample grids and FID / KID against real (synthetic) faces.

Features come from ``eval.features`` (see metrics/fid.py). Rows: generator samples at truncation 1 and 0.7,
and a floor: a second, disjoint set of real renders against the same reference set (the distance that
sampling noise alone gives at this number of images).
"""
from __future__ import annotations

from pathlib import Path

import torch

from metrics.fid import build_extractor, extract, fid_from_features, kid_from_features
from metrics.grid import image_grid, save_png


def _renders(cfg, split: str, n: int) -> torch.Tensor:
    from data.synthetic import SyntheticFaces

    d = cfg.data
    ds = SyntheticFaces(size=d.size, length=n, seed=d.seed, split=split, n_identities=d.n_identities,
                        cache_dir=d.cache_dir)
    return torch.stack([ds[i]["image"] for i in range(n)])


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


def evaluate_gan(method, cfg, out_dir: Path, use_ema: bool = True) -> list[dict]:
    e = cfg.eval
    g = method.eval_nets(use_ema)["g"]
    n = e.max_images
    extractor = build_extractor(e.features, e.feature_weights, method.device)
    ref = extract(extractor, _renders(cfg, "gan-eval-reference", n), e.batch_size)
    sets = {"generator, truncation 1.0": generator_samples(g, n, 1.0, cfg.seed),
            "generator, truncation 0.7": generator_samples(g, n, 0.7, cfg.seed),
            "other real renders (floor)": _renders(cfg, "gan-eval-other", n)}
    rows = []
    for name, imgs in sets.items():
        f = extract(extractor, imgs, e.batch_size)
        kid, kid_std = kid_from_features(f, ref, subset_size=e.kid_subset_size, seed=cfg.seed)
        rows.append({"images": name, "features": e.features, "n": n, "fid": fid_from_features(f, ref),
                     "kid": kid, "kid_std": kid_std})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = min(8, n)
    for name, key in (("samples.png", "generator, truncation 1.0"), ("samples_truncated.png", "generator, truncation 0.7")):
        imgs = sets[key]
        save_png(image_grid([list(imgs[r * k:(r + 1) * k]) for r in range(min(k, n // k))]), out_dir / name)
    return rows

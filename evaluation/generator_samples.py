"""Method 3's own protocol beside ``identity_swap``: swaps of the frozen generator's samples (the W test split,
the paper's protocol). There is no ground truth: pose / expression / landmark errors are against the analysis
judge's reading of the attribute source (copying the attribute source scores 0 by construction). The method row
adds same-image reconstruction PSNR and identity similarity. Grids: ``swap_grid_generator.png``,
``reconstruction.png``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.figures import image_grid, save_png
from evaluation.identity_swap import _embed, analyse, judges, outputs, recon_psnr, rows_for, swap_grid

DATA = "generator samples (judge reference)"


def samples(method, cfg) -> torch.Tensor:
    from data.w_codes import WCodeDataset

    test = WCodeDataset(cfg.data.root, split="test", val_count=cfg.data.val_count)
    x = torch.stack([test[i]["image"] for i in range(min(len(test), cfg.eval.max_images))])
    return method.fit(x.to(method.device))


def evaluate(method, cfg, out_dir: Path) -> list[dict]:
    bs, size = cfg.eval.batch_size, method.image_size
    ident, analysis, _ = judges(method, cfg, method.device)
    x = samples(method, cfg)
    attr = x.roll(1, 0)
    pairs = {"id": x, "attr": attr, "id_ref": x, "attr_ref": attr}
    if analysis is not None:
        pairs.update(analyse(analysis, attr, size))
    rows = rows_for("method", outputs(method, pairs, bs, size), pairs, ident, analysis, DATA)
    rec, rows[0]["recon_psnr"] = recon_psnr(method, x, bs)
    if ident is not None:
        rows[0]["recon_id_sim"] = (_embed(ident, rec) * _embed(ident, x)).sum(1).mean().item()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = min(cfg.eval.num_display, x.shape[0])
    save_png(image_grid(swap_grid(method, x[:k], x[k:2 * k] if x.shape[0] >= 2 * k else x[:k])),
             out_dir / "swap_grid_generator.png")
    save_png(image_grid([list(x[:k]), list(rec[:k])]), out_dir / "reconstruction.png")
    return rows


def scores(method, cfg, n: int) -> dict[str, float]:
    return {}

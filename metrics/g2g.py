"""Evaluation of G2G (method 4) against the synthetic ground truth.

Test pairs are fresh renders of different identities: a content source (target: keeps pose, expression,
style, attributes) and a class source (gives the identity). The true swap is
``render(swap(target_factors, source_factors, "identity"), size)``. Rows: the method, copy-source, copy-target.
Columns: ``gt_l1`` / ``gt_psnr`` vs the true swap; ``target_l1`` / ``source_l1``: distance to each input
(copy-target has target_l1 = 0 by definition, copy-source source_l1 = 0); with an identity judge
(``eval.identity_judge_kind``: a face_nets checkpoint, ArcFace, or dlib's descriptor for real faces), ``id_sim``
= cosine of the judge's embeddings vs the class source and ``id_sim_gt`` vs the true swap. The method row
adds ``recon_psnr`` (x^ = G(E_c(x), E_id(x)) vs x).
Grids: ``swap_grid.png`` (rows: content sources; top row: class sources), ``swap_vs_ground_truth.png``.
Real data (``data.name: celeba``) has no true swap: the first test pairs of different identities, no gt
columns and no ground-truth grid.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from metrics.batch import batched
from metrics.grid import image_grid, save_png
from metrics.image import l1, psnr


def synthetic_swap_pairs(cfg, n: int) -> dict:
    """``target`` (content source), ``source`` (class source) of different identities and the true ``gt``."""
    from metrics.id_disentangle import synthetic_pairs

    p = synthetic_pairs(cfg, cfg.data.size, n, splits=("g2g-eval-class", "g2g-eval-content"))
    return {"target": p["attr"], "source": p["id"], "gt": p["gt"]}


def dataset_swap_pairs(method, cfg, n: int) -> dict:
    """Real data (no ground truth): the first ``n`` test pairs of different identities."""
    ds = method.datasets(cfg, "test")["pairs"]
    items = [ds[k] for k in range(min(n, len(ds)))]
    return {"target": torch.stack([it["image"] for it in items]), "source": torch.stack([it["image2"] for it in items])}


def _scores(img, pairs, judge) -> dict:
    """Distances to each input, to the true swap where there is one, and the judge's identity similarities."""
    s = {}
    if "gt" in pairs:
        s.update(gt_l1=l1(img, pairs["gt"]).mean().item(), gt_psnr=psnr(img, pairs["gt"]).mean().item())
    s.update(target_l1=l1(img, pairs["target"]).mean().item(), source_l1=l1(img, pairs["source"]).mean().item())
    if judge is not None:
        images = {"img": img, **{k: pairs[k] for k in ("source", "gt") if k in pairs}}
        e = {k: F.normalize(batched(judge, t).float(), dim=1) for k, t in images.items()}
        s["id_sim"] = (e["img"] * e["source"]).sum(1).mean().item()
        if "gt" in e:
            s["id_sim_gt"] = (e["img"] * e["gt"]).sum(1).mean().item()
    return s


def swap_grid(method, nets, targets, sources) -> list[list]:
    grid = [[None] + list(sources)]
    code = method.class_code(sources, nets)
    for k in range(targets.shape[0]):
        c = method.content_code(targets[k:k + 1], nets)
        grid.append([targets[k]] + list(method.generate(c.expand(len(sources), *c.shape[1:]), code, nets)
                                        .float().clamp(-1, 1)))
    return grid


def evaluate_g2g(method, cfg, out_dir: Path, use_ema: bool = True) -> list[dict]:
    nets, device, bs = method.eval_nets(use_ema), method.device, cfg.eval.batch_size
    from metrics.identity_judge import configured_judge, judge_name

    judge = configured_judge(cfg.eval, device)
    pairs = (synthetic_swap_pairs(cfg, cfg.eval.max_images) if cfg.data.name == "synthetic"
             else dataset_swap_pairs(method, cfg, cfg.eval.max_images))
    pairs = {k: v.to(device) for k, v in pairs.items()}
    out = batched(lambda a, b: method.swap(a, b, nets).float().clamp(-1, 1), pairs["target"], pairs["source"], bs=bs)
    rows = [{"result": name, **_scores(img, pairs, judge)}
            for name, img in (("method", out), ("copy source", pairs["source"]), ("copy target", pairs["target"]))]
    rec = batched(lambda a: method.swap(a, a, nets).float().clamp(-1, 1), pairs["target"], bs=bs)
    rows[0]["recon_psnr"] = psnr(rec, pairs["target"]).mean().item()
    rows[0]["judge"] = judge_name(cfg.eval)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = min(cfg.eval.num_display, out.shape[0])
    save_png(image_grid(swap_grid(method, nets, pairs["target"][:k], pairs["source"][:k])), out_dir / "swap_grid.png")
    if "gt" in pairs:
        save_png(image_grid([list(pairs["target"][:k]), list(pairs["source"][:k]), list(out[:k]),
                             list(pairs["gt"][:k])]), out_dir / "swap_vs_ground_truth.png")
    for net in method.nets.values():
        net.train()
    return rows

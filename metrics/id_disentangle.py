"""Evaluation of identity / attribute disentanglement (method 3) against the synthetic ground truth.

Test pairs are fresh synthetic renders (the "real" images of this world; the paper uses FFHQ): an identity
source and an attribute source of different identities. The ground-truth result is the attribute source
re-rendered with the identity source's identity factors. Scores, each beside two baselines (copy the
attribute source; copy the identity source):

- ``id_sim``: cosine similarity of the identity judge's embeddings, output vs identity source;
  ``id_closer``: fraction of outputs closer (cosine) to the identity source than to the attribute source;
- ``pose_err`` / ``expr_err``: mean absolute error of the analysis judge's pose / expression on the output vs
  the attribute source's true factors; ``lnd_err_px``: mean landmark distance (px) to its true landmarks;
- ``gt_l1`` / ``gt_psnr``: pixel error against the ground-truth result image;
- the same scores on generator samples (the W test split, the paper's protocol): there is no ground truth, so
  pose / expression / landmark errors are against the analysis judge's reading of the attribute source
  (copying the attribute source scores 0 by construction); plus same-image reconstruction PSNR and identity.
Grids: ``swap_grid.png`` (renders), ``swap_grid_generator.png``, ``swap_vs_ground_truth.png``, ``reconstruction.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metrics.batch import batched
from metrics.grid import image_grid, save_png
from metrics.image import l1, psnr


def synthetic_pairs(cfg, size: int, n: int, splits=("id-eval-identity", "id-eval-attribute")) -> dict:
    """Up to ``n`` (identity source, attribute source) pairs of different identities, drawn from the two
    synthetic streams ``splits``, with ground truth: the attribute source re-rendered with the identity
    source's identity, and the attribute source's pose, expression and landmarks."""
    from data.folders import to_tensor
    from data.synthetic import SyntheticFaces, factor_vectors, render, swap

    d = cfg.data
    common = dict(size=size, length=n, seed=d.seed, n_identities=d.n_identities, cache_dir=d.cache_dir)
    ids, attrs = (SyntheticFaces(split=split, **common) for split in splits)
    keep = [i for i in range(n) if ids.identities[i] != attrs.identities[i]]
    out = {k: [] for k in ("id", "attr", "gt", "pose", "expression", "landmarks")}
    for i in keep:
        f_id, f_attr = ids.factors(i), attrs.factors(i)
        out["id"].append(ids[i]["image"])
        out["attr"].append(attrs[i]["image"])
        out["gt"].append(to_tensor(render(swap(f_attr, f_id, "identity"), size)["image"]))
        vec = factor_vectors(f_attr)
        out["pose"].append(torch.from_numpy(vec["pose"]))
        out["expression"].append(torch.from_numpy(vec["expression"]))
        out["landmarks"].append(attrs[i]["landmarks"])
    return {k: torch.stack(v) for k, v in out.items()}


def judges(method, cfg, device) -> tuple:
    """(identity judge, analysis judge, note): independent networks if configured, else the training ones."""
    from metrics.identity_judge import configured_judge
    from models.nets.face_small import build_landmark_net

    e = cfg.eval
    ident = configured_judge(e, device)
    analysis = build_landmark_net(e.analysis_judge, device) if e.analysis_judge else method.frozen["landmarks"]
    note = []
    if ident is None:
        ident = method.frozen["id"]
        note.append("identity judged by E_id itself (the loss's own network; biased)")
    if not e.analysis_judge:
        note.append("attributes judged by the training landmark net (biased)")
    return ident, analysis, "; ".join(note) or "independent judges"


def _scores(out, pairs, ident, analysis, size) -> dict:
    """Scores of ``out`` for ``pairs`` (id, attr; attribute references pose / expression / landmarks px)."""
    emb = lambda x: F.normalize(batched(ident, x).float(), dim=1)  # noqa: E731
    e_out, e_id, e_attr = emb(out), emb(pairs["id"]), emb(pairs["attr"])
    sim_id, sim_attr = (e_out * e_id).sum(1), (e_out * e_attr).sum(1)
    pred = _analyse(analysis, out, size)
    res = {
        "id_sim": sim_id.mean().item(),
        "id_closer": (sim_id > sim_attr).float().mean().item(),
        "pose_err": (pred["pose"] - pairs["pose"]).abs().mean().item(),
        "expr_err": (pred["expression"] - pairs["expression"]).abs().mean().item(),
        "lnd_err_px": (pred["landmarks"] - pairs["landmarks"]).norm(dim=-1).mean().item(),
    }
    if "gt" in pairs:
        res.update(gt_l1=l1(out, pairs["gt"]).mean().item(), gt_psnr=psnr(out, pairs["gt"]).mean().item())
    return res


def _analyse(analysis, x, size) -> dict:
    """The analysis judge's pose, expression and landmarks (in pixels of ``size``)."""
    pred = {k: batched(lambda t: analysis(t)[k], x).float() for k in ("pose", "expression", "landmarks")}
    pred["landmarks"] = (pred["landmarks"] + 1) * size / 2 - 0.5  # normalised coords -> pixels
    return pred


def _table(method, nets, pairs, ident, analysis, size, bs, data: str) -> tuple[list[dict], torch.Tensor]:
    out = batched(lambda a, b: method.swap(a, b, nets).float().clamp(-1, 1), pairs["id"], pairs["attr"], bs=bs)
    rows = [{"data": data, "result": name, **_scores(img, pairs, ident, analysis, size)}
            for name, img in (("method", out), ("copy attribute source", pairs["attr"]),
                              ("copy identity source", pairs["id"]))]
    return rows, out


def swap_grid(method, nets, ids, attrs) -> list[list]:
    """Rows: identity sources; columns: attribute sources (top row); cells: the method's results."""
    grid = [[None] + list(attrs)]
    z_attr, z_id = method.attribute_code(attrs, nets), method.identity_code(ids)
    for i in range(ids.shape[0]):
        row, _ = method.generate(z_id[i:i + 1].expand(attrs.shape[0], -1), z_attr, nets)
        grid.append([ids[i]] + list(row.float().clamp(-1, 1)))
    return grid


def evaluate_id_disentanglement(method, cfg, out_dir: Path, use_ema: bool = True) -> list[dict]:
    nets = method.eval_nets(use_ema)
    device, size, bs = method.device, method.size, cfg.eval.batch_size
    ident, analysis, note = judges(method, cfg, device)
    pairs = {k: v.to(device) for k, v in synthetic_pairs(cfg, size, cfg.eval.max_images).items()}
    rows, out = _table(method, nets, pairs, ident, analysis, size, bs, "synthetic renders (ground truth)")

    # generator samples (the W test split): cross pairs scored against the judge's view of the attribute
    # source (the paper's protocol), and same-image reconstruction
    from data.w_codes import WCodeDataset

    test = WCodeDataset(cfg.data.root, split="test", val_count=cfg.data.val_count)
    x = method.fit(torch.stack([test[i]["image"] for i in range(min(len(test), cfg.eval.max_images))]).to(device))
    g_pairs = {"id": x, "attr": x.roll(1, 0), **_analyse(analysis, x.roll(1, 0), size)}
    g_rows, _ = _table(method, nets, g_pairs, ident, analysis, size, bs, "generator samples (judge reference)")
    rec = batched(lambda a: method.swap(a, a, nets).float().clamp(-1, 1), x, bs=bs)
    e_rec, e_x = (F.normalize(batched(ident, t).float(), dim=1) for t in (rec, x))
    g_rows[0]["recon_psnr"] = psnr(rec, x).mean().item()
    g_rows[0]["recon_id_sim"] = (e_rec * e_x).sum(1).mean().item()
    rows += g_rows
    rows[0]["judges"] = note

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = min(cfg.eval.num_display, out.shape[0], x.shape[0])
    save_png(image_grid(swap_grid(method, nets, pairs["id"][:k], pairs["attr"][:k])), out_dir / "swap_grid.png")
    save_png(image_grid(swap_grid(method, nets, x[:k], x[k:2 * k] if x.shape[0] >= 2 * k else x[:k])),
             out_dir / "swap_grid_generator.png")
    save_png(image_grid([list(pairs["id"][:k]), list(pairs["attr"][:k]), list(out[:k]), list(pairs["gt"][:k])]),
             out_dir / "swap_vs_ground_truth.png")
    save_png(image_grid([list(x[:k]), list(rec[:k])]), out_dir / "reconstruction.png")
    return rows

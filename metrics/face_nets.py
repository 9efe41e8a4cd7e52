"""Held-out quality of the small face nets (``face_nets`` method) on a synthetic face dataset.

Identity: cosine similarity of all image pairs, same vs different identity: mean cosines, ROC AUC,
balanced verification accuracy at the best threshold (chance 0.5) and rank-1 retrieval (nearest other
image has the same identity; chance ~ 1 / identities). Analysis: landmark error in pixels of the dataset
(mean Euclidean distance) next to the trivial baseline that predicts the dataset's mean landmarks,
interocular-normalised error, and R^2 per pose / expression component.
"""
from __future__ import annotations

import numpy as np
import torch

from data.synthetic_factors import pose_expression_arrays
from models.nets.face_small import unit_to_pixels

POSE_NAMES = ("tx", "ty", "roll", "scale")
EXPRESSION_NAMES = ("smile", "mouth_open", "brow_raise")


@torch.no_grad()
def _predict(nets: dict, images: np.ndarray, batch_size: int, device) -> tuple[torch.Tensor, dict]:
    embs, outs = [], {"landmarks": [], "pose": [], "expression": []}
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        embs.append(nets["identity"](x).float().cpu())
        o = nets["analysis"](x)
        for k in outs:
            outs[k].append(o[k].float().cpu())
    return torch.cat(embs), {k: torch.cat(v) for k, v in outs.items()}


def verification(emb: torch.Tensor, ids: torch.Tensor) -> dict:
    """Pairwise same/different-identity statistics of L2-normalised embeddings."""
    sim = emb @ emb.T
    n = len(ids)
    iu = torch.triu_indices(n, n, 1)
    s = sim[iu[0], iu[1]].double()
    same = (ids[iu[0]] == ids[iu[1]])
    if same.sum() == 0 or (~same).sum() == 0:
        raise ValueError("verification needs at least one same-identity and one different-identity pair")
    pos, neg = s[same], s[~same]
    # best threshold for balanced accuracy: sweep all scores in descending order
    order = torch.argsort(s, descending=True)
    tp = torch.cumsum(same[order].double(), 0)
    fp = torch.cumsum((~same[order]).double(), 0)
    bal = 0.5 * (tp / len(pos) + 1.0 - fp / len(neg))
    best = int(torch.argmax(bal))
    # AUC = P(pos score > neg score) via ranks (Mann-Whitney U; ties count half)
    ranks = torch.from_numpy(_rankdata(s.numpy()))
    auc = (ranks[same].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    # rank-1 retrieval among images whose identity occurs at least twice
    sim_nn = sim.clone().fill_diagonal_(-2.0)
    nn_id = ids[sim_nn.argmax(1)]
    counts = torch.bincount(ids)
    has_mate = counts[ids] > 1
    return {"cos_same": pos.mean().item(), "cos_diff": neg.mean().item(),
            "verif_auc": float(auc), "verif_balanced_acc": bal[best].item(), "verif_threshold": s[order[best]].item(),
            "rank1": (nn_id == ids)[has_mate].float().mean().item(),
            "pairs_same": int(len(pos)), "pairs_diff": int(len(neg))}


def _rankdata(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a)


def r2_scores(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination per column."""
    pred, true = pred.double(), true.double()
    ss_res = ((pred - true) ** 2).sum(0)
    ss_tot = ((true - true.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return (1.0 - ss_res / ss_tot).float()


def landmark_errors(pred_px: torch.Tensor, true_px: torch.Tensor) -> dict:
    """Mean Euclidean landmark error (px), the mean-landmark baseline's, and interocular-normalised NME."""
    err = (pred_px - true_px).norm(dim=-1)  # (N, L)
    base = (true_px.mean(0, keepdim=True) - true_px).norm(dim=-1)
    iod = (true_px[:, 0] - true_px[:, 1]).norm(dim=-1).clamp_min(1e-6)  # eye_l - eye_r
    return {"landmark_err_px": err.mean().item(), "landmark_baseline_px": base.mean().item(),
            "landmark_nme_iod": (err.mean(1) / iod).mean().item()}


def evaluate_face_nets(nets: dict, dataset, batch_size: int = 256, device="cpu", max_images: int = 4000) -> dict:
    """Scores of ``nets`` = {"identity", "analysis"} on the first ``max_images`` items of a synthetic
    dataset (``SyntheticFaces`` or ``FaceFactors``: needs ``images``, ``landmarks``, ``identities``,
    ``size`` and ``factors(i)``). Verification compares all pairs, so memory grows as ``max_images**2``."""
    for n in nets.values():
        n.eval()
    n = min(len(dataset), max_images)
    emb, out = _predict(nets, dataset.images[:n], batch_size, device)
    ids = torch.from_numpy(np.asarray(dataset.identities[:n]))
    res = {"images": len(ids), "identities": int(len(torch.unique(ids)))}
    res.update(verification(emb, ids))
    true_lm = torch.from_numpy(np.asarray(dataset.landmarks[:n]))
    res.update(landmark_errors(unit_to_pixels(out["landmarks"], dataset.size), true_lm))
    pose = getattr(dataset, "pose", None)
    expr = getattr(dataset, "expression", None)
    if pose is None or expr is None:
        pose, expr = pose_expression_arrays(dataset, n)
    for names, key, true in ((POSE_NAMES, "pose", pose), (EXPRESSION_NAMES, "expression", expr)):
        r2 = r2_scores(out[key], torch.from_numpy(np.asarray(true[:n])))
        res.update({f"r2_{n}": v for n, v in zip(names, r2.tolist())})
        res[f"r2_{key}"] = r2.mean().item()
    return res


def evaluate_face_nets_run(method, cfg, out_dir, use_ema: bool = True) -> list[dict]:
    """``eval.py`` entry for a ``face_nets`` checkpoint: the scores above on its synthetic test split."""
    nets = method.eval_nets(use_ema)
    ds = method.datasets(cfg, "test")["faces"]
    res = evaluate_face_nets({"identity": nets["identity"], "analysis": nets["analysis"]}, ds,
                             cfg.eval.batch_size, method.device, cfg.eval.max_images)
    return [{"split": "test", **res}]

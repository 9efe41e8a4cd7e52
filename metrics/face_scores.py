"""Scores of face networks: verification statistics of identity embeddings, R^2 per column, landmark errors.

Identity: cosine similarity of all image pairs, same vs different identity: mean cosines, ROC AUC, balanced
verification accuracy at the best threshold (chance 0.5) and rank-1 retrieval (nearest other image has the same
identity; chance ~ 1 / identities). Landmarks: mean Euclidean error in pixels next to the trivial baseline that
predicts the mean landmarks, and the interocular-normalised error.
"""
from __future__ import annotations

import numpy as np
import torch

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

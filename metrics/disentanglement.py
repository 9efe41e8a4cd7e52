"""Disentanglement measures on codes and factor values (pure functions).

DCI disentanglement (Eastwood & Williams, ICLR 2018): from a non-negative importance matrix R (code dims
x factors), P_ij = R_ij / sum_k R_ik, D_i = 1 - H_K(P_i.) with the entropy in base K (number of factors),
and D = sum_i rho_i D_i with rho_i = sum_j R_ij / sum_ij R_ij. Importances here are absolute ridge
coefficients (standardised code -> standardised factor values), summed over a factor group's values.
MIG (Chen et al., NeurIPS 2018), the R^2 matrix of ridge probes (part x factor group), and k-fold verification
accuracy in the LFW protocol.
"""
from __future__ import annotations

import numpy as np

from metrics.probe import ridge_probe


# --- DCI -----------------------------------------------------------------------------------------
def dci_disentanglement(importance) -> float:
    """DCI disentanglement of an importance matrix (D codes, K factors); 1 = each code informs one factor."""
    r = np.abs(np.asarray(importance, np.float64))
    k = r.shape[1]
    if k < 2 or r.sum() == 0:
        return 0.0
    row = r.sum(1)
    keep = row > 0
    p = r[keep] / row[keep, None]
    logp = np.log(np.where(p > 0, p, 1.0)) / np.log(k)
    d = 1.0 + (p * logp).sum(1)
    return float((d * row[keep] / row[keep].sum()).sum())


def _standardise(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    sd = a.std(0)
    return (a - a.mean(0)) / np.where(sd > 1e-12, sd, 1.0)


def importance_matrix(codes, groups: dict, alpha: float = 1.0) -> np.ndarray:
    """(D, len(groups)) absolute ridge coefficients of each code dim for each factor group (summed over values)."""
    x = _standardise(codes)
    gram = x.T @ x + alpha * np.eye(x.shape[1])
    cols = [np.abs(np.linalg.solve(gram, x.T @ _standardise(y))).sum(1) for y in groups.values()]
    return np.stack(cols, 1)


# --- MIG ------------------------------------------------------------------------------------------
def _discretise(a: np.ndarray, bins: int) -> np.ndarray:
    """(N, D) -> integer bins per column: a column with at most ``bins`` distinct values keeps them, else
    equal-width histogram bins over its range."""
    out = np.zeros(a.shape, np.int64)
    for j in range(a.shape[1]):
        col = a[:, j]
        values = np.unique(col)
        if len(values) <= bins:
            out[:, j] = np.searchsorted(values, col)
        else:
            out[:, j] = np.digitize(col, np.histogram_bin_edges(col, bins)[1:-1])
    return out


def _entropy(x: np.ndarray) -> float:
    p = np.bincount(x) / len(x)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_info(x: np.ndarray, y: np.ndarray) -> float:
    joint = x * (y.max() + 1) + y
    return _entropy(x) + _entropy(y) - _entropy(joint)


def mig(codes, factors, bins: int = 20) -> dict:
    """Mutual information gap (Chen et al., NeurIPS 2018): per scalar factor v_k, (I(z_a; v_k) - I(z_b; v_k)) /
    H(v_k) for the two code dims a, b most informative about it, from discretised codes and factors.
    Returns ``{"mig": mean over factors, "per_factor": array}``; constant factors are skipped."""
    z, v = _discretise(np.asarray(codes), bins), _discretise(np.asarray(factors), bins)
    gaps = []
    for k in range(v.shape[1]):
        h = _entropy(v[:, k])
        if h <= 0:
            continue
        mi = np.sort([_mutual_info(z[:, j], v[:, k]) for j in range(z.shape[1])])[::-1]
        gaps.append((mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / h)
    gaps = np.asarray(gaps)
    return {"mig": float(gaps.mean()) if len(gaps) else 0.0, "per_factor": gaps}


# --- disentanglement matrix ------------------------------------------------------------------------
def r2_matrix(parts: dict, truth: dict, n_train: int, alpha: float = 1.0) -> np.ndarray:
    """R^2 (test rows after ``n_train``) of a ridge probe from each part (rows) to each ground-truth group (cols)."""
    out = np.zeros((len(parts), len(truth)))
    for i, p in enumerate(parts.values()):
        for j, t in enumerate(truth.values()):
            out[i, j] = ridge_probe(p[:n_train], t[:n_train], p[n_train:], t[n_train:], alpha)["mean_r2"]
    return out


def variance_share_matrix(parts: dict, truth: dict, n_train: int, alpha: float = 1.0) -> np.ndarray:
    """The reverse probe: share of each part's variance (rows) that a ridge probe from each ground-truth group
    (cols) explains on the test rows, i.e. the variance-weighted R^2 over the part's dims. Where ``r2_matrix``
    asks whether a factor can be read from a part (scale-free: a faint but clean trace reads well), this asks
    how much of the part that factor is."""
    out = np.zeros((len(parts), len(truth)))
    for i, p in enumerate(parts.values()):
        var = np.asarray(p[n_train:], np.float64).var(0)
        for j, t in enumerate(truth.values()):
            r2 = ridge_probe(t[:n_train], p[:n_train], t[n_train:], p[n_train:], alpha)["r2"]
            out[i, j] = float((r2 * var).sum() / max(var.sum(), 1e-12))
    return out


def mean_r2(pred, y) -> float:
    """Mean over columns of 1 - SS_res / SS_tot (about each column's mean)."""
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    return float(np.mean(1.0 - ((y - pred) ** 2).sum(0) / np.maximum(((y - y.mean(0)) ** 2).sum(0), 1e-12)))


# --- LFW / AffectNet -------------------------------------------------------------------------------
def verification_accuracy(dist, same, fold, thresholds=None) -> dict:
    """k-fold verification: per fold, the threshold best on the other folds (same if dist <= t) scores it."""
    dist, same, fold = (np.asarray(a) for a in (dist, same, fold))
    thresholds = np.unique(dist) if thresholds is None else np.asarray(thresholds)
    pred = dist[None, :] <= thresholds[:, None]  # (T, N)
    correct = pred == (same[None, :] == 1)
    accs = []
    for f in np.unique(fold):
        test = fold == f
        best = correct[:, ~test].mean(1).argmax() if (~test).any() else correct[:, test].mean(1).argmax()
        accs.append(correct[best, test].mean())
    return {"accuracy": float(np.mean(accs)), "std": float(np.std(accs)), "folds": len(accs)}


def verification_pairs(ids, seed: int = 0, folds: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Balanced pairs for the LFW protocol from identity labels: per image with a same-identity partner, one
    such pair and one pair with a random other identity. Returns (i, j, same, fold)."""
    ids = np.asarray(ids)
    rng = np.random.default_rng(seed)
    first, second, same = [], [], []
    for i in rng.permutation(len(ids)):
        mates = np.flatnonzero((ids == ids[i]) & (np.arange(len(ids)) != i))
        others = np.flatnonzero(ids != ids[i])
        if len(mates) == 0 or len(others) == 0:
            continue
        first += [i, i]
        second += [rng.choice(mates), rng.choice(others)]
        same += [1, 0]
    n = len(first)
    return np.array(first), np.array(second), np.array(same), np.arange(n) * folds // max(n, 1)


def synthetic_verification(parts: dict, ids, keys) -> dict:
    """10-fold verification accuracy from the squared L2 distance of the concatenated ``keys`` parts."""
    i, j, same, fold = verification_pairs(ids)
    if len(i) == 0:
        return {"accuracy": float("nan"), "std": float("nan"), "folds": 0}
    code = np.concatenate([np.asarray(parts[k]) for k in keys], 1)
    return verification_accuracy(((code[i] - code[j]) ** 2).sum(1), same, fold)

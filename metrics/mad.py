"""MAD evaluation: swap grid, disentanglement matrix + DCI and MIG scores (synthetic ground truth), identity
verification on synthetic pairs (the LFW protocol, also on the other parts as a leakage check), LFW
verification on the identity part and AffectNet expression accuracy on the expression part.

DCI disentanglement (Eastwood & Williams, ICLR 2018): from a non-negative importance matrix R (code dims
x factors), P_ij = R_ij / sum_k R_ik, D_i = 1 - H_K(P_i.) with the entropy in base K (number of factors),
and D = sum_i rho_i D_i with rho_i = sum_j R_ij / sum_ij R_ij. Importances here are absolute ridge
coefficients (standardised code -> standardised factor values), summed over a factor group's values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from data.identity_batches import FACTOR_KEYS, FactorFaces
from data.synthetic import SyntheticFaces
from core.figures import image_grid, save_png
from metrics.probe import linear_probe, ridge_probe
from metrics.tables import markdown_table

PART_KEYS = ("pose", "identity", "style", "expression")
POSE_VALUES = ("tx", "ty", "roll", "scale")  # data.synthetic.factor_vectors' pose group


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


def heatmap_png(mat, rows, cols, path, cell: int = 56) -> Path:
    """A labelled heatmap (values clipped to [0, 1], white -> blue) as PNG."""
    mat = np.asarray(mat, np.float64)
    left, top = 90, 24
    img = Image.new("RGB", (left + cell * mat.shape[1], top + cell * mat.shape[0]), "white")
    draw = ImageDraw.Draw(img)
    for j, c in enumerate(cols):
        draw.text((left + j * cell + 3, 6), c[:9], fill="black")
    for i, r in enumerate(rows):
        draw.text((4, top + i * cell + cell // 2 - 5), r[:14], fill="black")
        for j in range(mat.shape[1]):
            v = float(np.clip(mat[i, j], 0, 1))
            colour = tuple(int(255 - v * (255 - c)) for c in (30, 80, 200))
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 2, top + (i + 1) * cell - 2)
            draw.rectangle(box, fill=colour)
            draw.text((box[0] + 8, box[1] + cell // 2 - 6), f"{mat[i, j]:.2f}", fill="black" if v < 0.6 else "white")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


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


def _encode_items(method, nets, ds, indices, bs, keys=("image",)) -> dict:
    """``{key: {part: (N, d) tensor}}`` of ``ds[i][key]`` for ``i`` in ``indices``: items are loaded and encoded
    ``bs`` at a time, so only one batch of images is ever in memory (LFW's 6,000 pairs at 256 px would take
    ~16 GB stacked)."""
    chunks = {k: [] for k in keys}
    for s in range(0, len(indices), bs):
        items = [ds[int(i)] for i in indices[s:s + bs]]
        for k in keys:
            chunks[k].append(method.encode(torch.stack([it[k] for it in items]).to(method.device), nets))
    return {k: {p: torch.cat([c[p] for c in cs]).float().cpu() for p in PART_KEYS} for k, cs in chunks.items()}


def lfw_verification(method, nets, root, size, bs, max_pairs=None) -> dict:
    """LFW pairs (official folds kept): squared L2 distance of the identity parts, k-fold accuracy. Each distinct
    image of the pairs is encoded once, streamed in batches."""
    from data.lfw import LFWPairs

    pairs = LFWPairs(root, size=size)
    n = len(pairs) if max_pairs is None else min(max_pairs, len(pairs))
    used, where = np.unique(np.concatenate([pairs.a[:n], pairs.b[:n]]), return_inverse=True)
    ident = _encode_items(method, nets, pairs.records, used, bs)["image"]["identity"]
    a, b = ident[where[:n]], ident[where[n:]]
    dist = ((a - b) ** 2).sum(1).numpy()
    return verification_accuracy(dist, pairs.same[:n], pairs.fold[:n], np.arange(0, 4.0001, 0.01))


def expression_accuracy(method, nets, root, size, bs, max_images=4000) -> dict:
    """AffectNet: linear probe on the expression part, trained on the training split, scored on validation
    (images streamed in batches)."""
    from data.affectnet import AffectNet

    feats, labels = [], []
    for split in ("train", "validation"):
        ds = AffectNet(root, split, size=size)
        n = min(max_images, len(ds))
        feats.append(_encode_items(method, nets, ds, np.arange(n), bs)["image"]["expression"])
        labels.append(ds.labels["expression"][:n])
    return linear_probe(feats[0], labels[0], feats[1], labels[1])


# --- synthetic -------------------------------------------------------------------------------------
def swap_grid(method, nets, a, b) -> list[list[torch.Tensor]]:
    """Rows per pair: a, b, recon(a), then a with b's pose / identity / style / expression."""
    pa, pb = method.encode(a, nets), method.encode(b, nets)
    cols = [a, b, method.decode(pa, nets)]
    for k in PART_KEYS:
        cols.append(method.decode({**pa, k: pb[k]}, nets))
    return [[c[i].float().clamp(-1, 1) for c in cols] for i in range(a.shape[0])]


def _r2(pred, y) -> float:
    """Mean over columns of 1 - SS_res / SS_tot (about each column's mean)."""
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    return float(np.mean(1.0 - ((y - pred) ** 2).sum(0) / np.maximum(((y - y.mean(0)) ** 2).sum(0), 1e-12)))


def pose_swap(method, nets, parts: dict, pose, bs: int, seed: int = 0) -> dict:
    """Does decoding follow the pose part? Each image's pose part is replaced by another image's (a seeded
    permutation), decoded and re-encoded. R^2 of the re-encoded pose head against the donor's true pose values
    (``pose``: the regressed targets; 1 = the image took the donor's pose) and against its own; as the ceiling,
    the same for the unswapped reconstruction."""
    t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in parts.items()}
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(pose)))
    out = {}
    for name, code in (("swap", {**t, "pose": t["pose"][perm]}), ("recon", t)):
        heads = [method.encode(method.decode({k: v[i:i + bs].to(method.device) for k, v in code.items()}, nets),
                               nets)["pose"].float().cpu() for i in range(0, len(pose), bs)]
        out[name] = torch.cat(heads).numpy()
    return {"pose_swap_r2_donor": _r2(out["swap"], pose[perm.numpy()]), "pose_swap_r2_own": _r2(out["swap"], pose),
            "pose_recon_r2": _r2(out["recon"], pose)}


def synthetic_test(cfg, n):
    d = cfg.data
    faces = SyntheticFaces(d.size, min(n, d.test_length), d.seed, "test", d.n_identities, cache_dir=d.cache_dir)
    return FactorFaces(faces)


def evaluate_mad(method, cfg, out_dir, use_ema: bool = True) -> list[dict]:
    nets = method.eval_nets(use_ema)
    ds = synthetic_test(cfg, cfg.eval.max_images)
    n = len(ds)
    parts = {k: v.double().numpy() for k, v in
             _encode_items(method, nets, ds, np.arange(n), cfg.eval.batch_size)["image"].items()}
    truth = {k: ds.tables[False][k][:n] for k in FACTOR_KEYS}  # unflipped ground truth, as ds[i] carries it
    r2 = r2_matrix(parts, truth, n // 2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = [{"part": p, **{f"R2 {g}": r2[i, j] for j, g in enumerate(truth)}} for i, p in enumerate(parts)]
    h = n // 2  # where pose sits: R^2 of each part for each pose value (tx, ty, roll, scale)
    per_pose = [{"part": p, **{f"R2 {v}": r for v, r in zip(POSE_VALUES, ridge_probe(
        parts[p][:h], truth["pose"][:h], parts[p][h:], truth["pose"][h:])["r2"])}} for p in parts]
    share = variance_share_matrix(parts, truth, h)
    shares = [{"part": p, **{f"share {g}": share[i, j] for j, g in enumerate(truth)}} for i, p in enumerate(parts)]
    (out_dir / "disentanglement.md").write_text(
        markdown_table(table) + "\n\nPose values:\n\n" + markdown_table(per_pose)
        + "\n\nShare of each part's variance explained by each factor group (reverse probe):\n\n"
        + markdown_table(shares) + "\n")
    heatmap_png(r2, [f"{p} ({method.dims[p]})" for p in parts], list(truth), out_dir / "disentanglement.png")
    code = np.concatenate([parts[k] for k in PART_KEYS], 1)
    row = {"data": f"synthetic test ({n})", "dci_disentanglement": dci_disentanglement(importance_matrix(code, truth)),
           "mig": mig(code, np.concatenate(list(truth.values()), 1))["mig"]}
    ids = np.asarray(ds.identities[:n])
    row["verif_identity"] = synthetic_verification(parts, ids, ["identity"])["accuracy"]
    row["verif_other_parts"] = synthetic_verification(parts, ids, [k for k in PART_KEYS if k != "identity"])["accuracy"]
    row.update({f"r2_{p}->{p}": r2[i, list(truth).index(p)] for i, p in enumerate(parts)})
    row["pose_share_max_other"] = max(share[i, list(truth).index("pose")] for i, p in enumerate(parts) if p != "pose")
    targets, scale = list(cfg.model.pose_targets), cfg.model.pose_target_scale
    if 2 in targets:  # the pose head regresses the synthetic roll (radians, x scale): the paper's pose error
        err = parts["pose"][:, targets.index(2)] / scale - truth["pose"][:, 2]
        row["roll_error_deg"] = float(np.degrees(np.abs(err)).mean())
    row["r2_offdiag_mean"] = float((r2.sum() - sum(row[f"r2_{p}->{p}"] for p in parts)) / (r2.size - len(parts)))
    with torch.no_grad():
        row.update(pose_swap(method, nets, parts, truth["pose"][:, targets] * scale, cfg.eval.batch_size))
    k = min(cfg.eval.num_display, n // 2)
    x = torch.stack([ds[i]["image"] for i in range(min(n, max(cfg.eval.batch_size, 2 * k)))])  # recon + grid
    with torch.no_grad():
        rec = method.reconstruct(x[:cfg.eval.batch_size].to(method.device), nets).float().cpu()
    row["recon_l1"] = float((rec - x[:len(rec)]).abs().mean())
    save_png(image_grid(swap_grid(method, nets, x[:k].to(method.device), x[k:2 * k].to(method.device))),
             out_dir / "swap_grid.png")
    rows = [row]
    size, bs = cfg.data.size, cfg.eval.batch_size
    if cfg.eval.lfw_root:
        v = lfw_verification(method, nets, cfg.eval.lfw_root, size, bs, cfg.eval.lfw_max_pairs)
        rows.append({"data": "LFW pairs", "lfw_accuracy": v["accuracy"], "lfw_std": v["std"]})
    if cfg.eval.affectnet_root:
        e = expression_accuracy(method, nets, cfg.eval.affectnet_root, size, bs, cfg.eval.affectnet_max_images)
        rows.append({"data": "AffectNet validation", "expr_accuracy": e["accuracy"],
                     "expr_balanced_accuracy": e["balanced_accuracy"]})
    return rows

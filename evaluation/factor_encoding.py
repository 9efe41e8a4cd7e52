"""Protocol of the ``factor_encoding`` task (method 5; any method whose ``encode(x)`` names its code parts).

Held-out synthetic renders with their factor vectors (``data/synthetic/counterfactual.factor_test``: pose,
identity, expression, style). The first half of the items trains ridge probes, the second half scores them:
- the disentanglement matrix: R^2 of each code part (rows) for each factor group (columns), written as
  ``disentanglement.md`` (plus each part's R^2 per pose value) and ``disentanglement.png``; ``r2_<part>-><part>``
  for parts named like a factor, ``r2_offdiag_mean`` (leakage);
- DCI disentanglement and MIG of the whole code (``metrics/disentanglement.py``);
- verification in the LFW protocol on synthetic identities: the identity part (``verif_identity``) and the other
  parts together (``verif_other_parts``, a leakage check);
- with a ``pose`` part: ``pose_share_max_other`` (the reverse probe: the largest share of another part's variance
  that pose explains; every share is in ``disentanglement.md``);
- method extras where the method offers them: ``roll_error_deg`` (``method.roll_radians(parts)``), pose-swap
  R^2 (``method.pose_head_targets``: does decoding follow the pose part?), ``recon_l1`` (``method.reconstruct``)
  and ``swap_grid.png`` (``method.decode``: a, b, reconstruction, a with each of b's parts). Real data: LFW verification on the identity part (``eval.lfw_root``) and AffectNet expression accuracy
  of a linear probe on the expression part (``eval.affectnet_root``), images streamed in batches.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.figures import heatmap_png, image_grid, save_png
from data.identity_batches import FACTOR_KEYS
from data.synthetic.counterfactual import factor_test
from metrics.disentanglement import (dci_disentanglement, importance_matrix, mean_r2, mig, r2_matrix,
                                     synthetic_verification, variance_share_matrix, verification_accuracy)
from metrics.probe import linear_probe, ridge_probe
from metrics.tables import markdown_table

POSE_VALUES = ("tx", "ty", "roll", "scale")  # data.synthetic.factor_vectors' pose group
BEST = ("dci_disentanglement", "max")


def encode_items(method, ds, indices, bs, keys=("image",)) -> dict:
    """``{key: {part: (N, d) tensor}}`` of ``ds[i][key]`` for ``i`` in ``indices``: items are loaded and encoded
    ``bs`` at a time, so only one batch of images is ever in memory (LFW's 6,000 pairs at 256 px would take
    ~16 GB stacked)."""
    chunks = {k: [] for k in keys}
    with method.inference():
        for s in range(0, len(indices), bs):
            items = [ds[int(i)] for i in indices[s:s + bs]]
            for k in keys:
                chunks[k].append(method.encode(torch.stack([it[k] for it in items]).to(method.device)))
    return {k: {p: torch.cat([c[p] for c in cs]).float().cpu() for p in cs[0]} for k, cs in chunks.items()}


def lfw_verification(method, root, size, bs, max_pairs=None) -> dict:
    """LFW pairs (official folds kept): squared L2 distance of the identity parts, k-fold accuracy. Each distinct
    image of the pairs is encoded once, streamed in batches."""
    from data.lfw import LFWPairs

    pairs = LFWPairs(root, size=size)
    n = len(pairs) if max_pairs is None else min(max_pairs, len(pairs))
    used, where = np.unique(np.concatenate([pairs.a[:n], pairs.b[:n]]), return_inverse=True)
    ident = encode_items(method, pairs.records, used, bs)["image"]["identity"]
    a, b = ident[where[:n]], ident[where[n:]]
    dist = ((a - b) ** 2).sum(1).numpy()
    return verification_accuracy(dist, pairs.same[:n], pairs.fold[:n], np.arange(0, 4.0001, 0.01))


def expression_accuracy(method, root, size, bs, max_images=4000) -> dict:
    """AffectNet: linear probe on the expression part, trained on the training split, scored on validation
    (images streamed in batches)."""
    from data.affectnet import AffectNet

    feats, labels = [], []
    for split in ("train", "validation"):
        ds = AffectNet(root, split, size=size)
        n = min(max_images, len(ds))
        feats.append(encode_items(method, ds, np.arange(n), bs)["image"]["expression"])
        labels.append(ds.labels["expression"][:n])
    return linear_probe(feats[0], labels[0], feats[1], labels[1])


def swap_grid(method, a, b) -> list[list[torch.Tensor]]:
    """Rows per pair: a, b, a's reconstruction from its parts, then a with each of b's parts."""
    with method.inference():
        pa, pb = method.encode(a), method.encode(b)
        cols = [a, b, method.decode(pa)] + [method.decode({**pa, k: pb[k]}) for k in pa]
    return [[c[i].float().clamp(-1, 1) for c in cols] for i in range(a.shape[0])]


def pose_swap(method, parts: dict, pose, bs: int, seed: int = 0) -> dict:
    """Does decoding follow the pose part? Each image's pose part is replaced by another image's (a seeded
    permutation), decoded and re-encoded. R^2 of the re-encoded pose head against the donor's true pose values
    (``pose``: what the head regresses; 1 = the image took the donor's pose) and against its own; as the ceiling,
    the same for the unswapped reconstruction."""
    t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in parts.items()}
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(pose)))
    out = {}
    with method.inference():
        for name, code in (("swap", {**t, "pose": t["pose"][perm]}), ("recon", t)):
            heads = [method.encode(method.decode({k: v[i:i + bs].to(method.device) for k, v in code.items()}))
                     ["pose"].float().cpu() for i in range(0, len(pose), bs)]
            out[name] = torch.cat(heads).numpy()
    return {"pose_swap_r2_donor": mean_r2(out["swap"], pose[perm.numpy()]), "pose_swap_r2_own": mean_r2(out["swap"], pose),
            "pose_recon_r2": mean_r2(out["recon"], pose)}


def _matrix_scores(method, cfg, n: int):
    ds = factor_test(cfg.data, n, method.image_size)
    n = len(ds)
    parts = {k: v.double().numpy() for k, v in encode_items(method, ds, np.arange(n), cfg.eval.batch_size)["image"].items()}
    truth = {k: ds.tables[False][k][:n] for k in FACTOR_KEYS}  # unflipped ground truth, as ds[i] carries it
    r2 = r2_matrix(parts, truth, n // 2)
    code = np.concatenate(list(parts.values()), 1)
    row = {"dci_disentanglement": dci_disentanglement(importance_matrix(code, truth)),
           "mig": mig(code, np.concatenate(list(truth.values()), 1))["mig"]}
    ids = np.asarray(ds.identities[:n])
    if "identity" in parts:
        row["verif_identity"] = synthetic_verification(parts, ids, ["identity"])["accuracy"]
        others = [k for k in parts if k != "identity"]
        if others:
            row["verif_other_parts"] = synthetic_verification(parts, ids, others)["accuracy"]
    diag = {p: r2[list(parts).index(p), list(truth).index(p)] for p in parts if p in truth}
    row.update({f"r2_{p}->{p}": v for p, v in diag.items()})
    if diag:
        row["r2_offdiag_mean"] = float((r2.sum() - sum(diag.values())) / (r2.size - len(diag)))
    share = variance_share_matrix(parts, truth, n // 2)
    if "pose" in parts:  # the largest share of another part's variance that pose explains
        row["pose_share_max_other"] = max(share[i, list(truth).index("pose")] for i, p in enumerate(parts)
                                          if p != "pose")
    if hasattr(method, "roll_radians"):
        roll = method.roll_radians({k: torch.from_numpy(v) for k, v in parts.items()})
        if roll is not None:  # the paper's pose error, in degrees, on the synthetic roll
            row["roll_error_deg"] = float(np.degrees(np.abs(roll.numpy() - truth["pose"][:, 2])).mean())
    if "pose" in parts and hasattr(method, "decode") and hasattr(method, "pose_head_targets"):
        row.update(pose_swap(method, parts, method.pose_head_targets(truth["pose"]), cfg.eval.batch_size))
    return ds, parts, truth, r2, share, row


def evaluate(method, cfg, out_dir: Path) -> list[dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds, parts, truth, r2, share, row = _matrix_scores(method, cfg, cfg.eval.max_images)
    n = len(ds)
    row = {"data": f"synthetic test ({n})", **row}
    table = [{"part": p, **{f"R2 {g}": r2[i, j] for j, g in enumerate(truth)}} for i, p in enumerate(parts)]
    h = n // 2  # where pose sits: R^2 of each part for each pose value (tx, ty, roll, scale)
    per_pose = [{"part": p, **{f"R2 {v}": r for v, r in zip(POSE_VALUES, ridge_probe(
        parts[p][:h], truth["pose"][:h], parts[p][h:], truth["pose"][h:])["r2"])}} for p in parts]
    shares = [{"part": p, **{f"share {g}": share[i, j] for j, g in enumerate(truth)}} for i, p in enumerate(parts)]
    (out_dir / "disentanglement.md").write_text(
        markdown_table(table) + "\n\nPose values:\n\n" + markdown_table(per_pose)
        + "\n\nShare of each part's variance explained by each factor group (reverse probe):\n\n"
        + markdown_table(shares) + "\n")
    heatmap_png(r2, [f"{p} ({parts[p].shape[1]})" for p in parts], list(truth), out_dir / "disentanglement.png")
    k = min(cfg.eval.num_display, n // 2)
    bs = cfg.eval.batch_size
    x = torch.stack([ds[i]["image"] for i in range(min(n, max(bs, 2 * k)))])  # reconstruction + grid
    if hasattr(method, "reconstruct"):
        with method.inference():
            rec = method.reconstruct(x[:bs].to(method.device)).float().cpu()
        row["recon_l1"] = float((rec - x[:len(rec)]).abs().mean())
    if hasattr(method, "decode"):
        save_png(image_grid(swap_grid(method, x[:k].to(method.device), x[k:2 * k].to(method.device))),
                 out_dir / "swap_grid.png")
    rows = [row]
    e, size = cfg.eval, method.image_size
    if e.get("lfw_root"):
        v = lfw_verification(method, e.lfw_root, size, bs, e.lfw_max_pairs)
        rows.append({"data": "LFW pairs", "lfw_accuracy": v["accuracy"], "lfw_std": v["std"]})
    if e.get("affectnet_root"):
        r = expression_accuracy(method, e.affectnet_root, size, bs, e.affectnet_max_images)
        rows.append({"data": "AffectNet validation", "expr_accuracy": r["accuracy"],
                     "expr_balanced_accuracy": r["balanced_accuracy"]})
    return rows


def scores(method, cfg, n: int) -> dict[str, float]:
    """The synthetic row (DCI, MIG, R^2 diagonal / off-diagonal, verification) on ``n`` test renders."""
    if cfg.data.name != "synthetic":
        return {}
    return {k: float(v) for k, v in _matrix_scores(method, cfg, n)[5].items()}

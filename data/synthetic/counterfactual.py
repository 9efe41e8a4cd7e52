"""Evaluation test sets of the synthetic world with their true answers, one function per task.

The world can re-render any test face with one factor group changed, so each task's answer is known:
- content transfer: pairs (a_i with the attribute, b_i without) of the test domains; truth = b_i re-rendered
  with a_i's attribute (transfer), a_i without it (removal), a_i with a_{i+1}'s attribute (swap), plus the
  union attribute masks where each edit acts;
- identity swap: (identity source, attribute source) of different identities from two held-out streams; truth =
  the attribute source re-rendered with the identity source's identity, and its pose / expression / landmarks;
- factor encoding: held-out renders with their factor vectors (pose, identity, expression, style) and identities;
- image generation: held-out renders as the real reference set.
Everything is a pure function of (``data.seed``, ``data.n_identities``, the size, the count), so every protocol,
leaderboard and method draws the same test sets. Images are float tensors in [-1, 1].
"""
from __future__ import annotations

import numpy as np
import torch

from data.synthetic.dataset import SyntheticFaces, world_args
from data.synthetic.factors import CONTENT_ATTRIBUTES, LANDMARK_NAMES, factor_vectors, remove, swap
from data.synthetic.painter import render

# the two held-out streams of identity-swap pairs (identity sources, attribute sources)
SWAP_SPLITS = ("id-eval-identity", "id-eval-attribute")


def to_image(r: dict) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(r["image"].transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def faces(d, split: str, n: int, size: int | None = None) -> SyntheticFaces:
    """``n`` synthetic faces of ``split`` in the world of data config ``d`` (seed, identities, cache)."""
    return SyntheticFaces(size=size or d.size, length=n, seed=d.seed, split=split, n_identities=d.n_identities,
                          cache_dir=d.cache_dir, **world_args(d))


def stack(ds, n: int | None = None, key: str = "image", start: int = 0) -> torch.Tensor:
    n = len(ds) - start if n is None else min(n, len(ds) - start)
    return torch.stack([ds[i][key] for i in range(start, start + n)])


def content_transfer_truth(ds_a, ds_b, n: int, attribute: str, size: int | None = None) -> dict:
    """Ground truth for the pairs (a_i, b_i), i < n, of the content-transfer test domains (see the module
    docstring): ``transfer``, ``removal``, ``swap`` images and ``mask_<edit>`` (N, 1, H, W) at ``size``."""
    if attribute not in CONTENT_ATTRIBUTES:
        raise ValueError(f"{attribute!r} is not a synthetic content attribute ({list(CONTENT_ATTRIBUTES)})")
    size = size or ds_a.size
    out = {"transfer": [], "removal": [], "swap": [], "mask_transfer": [], "mask_removal": [], "mask_swap": []}
    for i in range(n):
        fa, fb, fa2 = ds_a.factors(i), ds_b.factors(i), ds_a.factors((i + 1) % n)
        for name, f, other in (("transfer", swap(fb, fa, attribute), fb),
                               ("removal", remove(fa, attribute), fa),
                               ("swap", swap(fa, fa2, attribute), fa)):
            r, r_other = render(f, size), render(other, size)
            out[name].append(to_image(r))
            m = np.maximum(r["masks"][attribute], r_other["masks"][attribute])
            out[f"mask_{name}"].append(torch.from_numpy(m)[None])
    return {key: torch.stack(v) for key, v in out.items()}


def identity_swap_pairs(d, n: int, size: int, truth_size: int | None = None, splits=SWAP_SPLITS) -> dict:
    """Up to ``n`` pairs of different identities: ``id`` / ``attr`` images at ``size``; the truth at
    ``truth_size`` (default ``size``): ``gt`` (the attribute source with the identity source's identity), the
    attribute source's ``pose`` / ``expression`` vectors and ``landmarks`` (px), and ``attr_ref`` (the attribute
    source at ``truth_size``, for copy baselines)."""
    truth_size = truth_size or size
    ids, attrs = (faces(d, split, n, size) for split in splits)
    keep = [i for i in range(n) if ids.identities[i] != attrs.identities[i]]
    out = {k: [] for k in ("id", "attr", "gt", "pose", "expression", "landmarks", "id_ref", "attr_ref")}
    for i in keep:
        f_id, f_attr = ids.factors(i), attrs.factors(i)
        out["id"].append(ids[i]["image"])
        out["attr"].append(attrs[i]["image"])
        out["gt"].append(to_image(render(swap(f_attr, f_id, "identity"), truth_size)))
        vec = factor_vectors(f_attr)
        out["pose"].append(torch.from_numpy(vec["pose"]))
        out["expression"].append(torch.from_numpy(vec["expression"]))
        if truth_size == size:
            out["landmarks"].append(attrs[i]["landmarks"])
            out["id_ref"].append(out["id"][-1])
            out["attr_ref"].append(out["attr"][-1])
        else:
            r_attr = render(f_attr, truth_size)
            out["landmarks"].append(torch.from_numpy(r_attr["landmarks"]))
            out["id_ref"].append(to_image(render(f_id, truth_size)))
            out["attr_ref"].append(to_image(r_attr))
    return {k: torch.stack(v) for k, v in out.items()}


def factor_test(d, n: int, size: int | None = None):
    """Held-out renders with factor vectors (``data.identity_batches.FactorFaces``: ``tables``, ``identities``)."""
    from data.identity_batches import FactorFaces

    return FactorFaces(faces(d, "test", min(n, d.test_length), size))


def generator_reference(d, split: str, n: int) -> torch.Tensor:
    """``n`` held-out renders of ``split`` at ``d.size``: the real reference set of image generation."""
    return stack(faces(d, split, n))


def landmark_shift(d, group: str, n: int = 200, size: int | None = None, per_landmark: bool = False):
    """How far a factor group moves the landmarks: the mean distance (px at ``size``) of the 12 landmarks between
    each of ``n`` held-out faces and the same face with ``group`` taken from the next face. A loss on landmarks
    sees a group only as far as this shift exceeds its own error. ``per_landmark``: a dict landmark name -> its
    mean shift instead (the overall figure is their mean)."""
    ds = faces(d, "test", n + 1, size)
    shifts = np.array([np.linalg.norm(render(ds.factors(k), ds.size)["landmarks"]
                                      - render(swap(ds.factors(k), ds.factors(k + 1), group), ds.size)["landmarks"],
                                      axis=1) for k in range(n)])
    if per_landmark:
        return {name: float(v) for name, v in zip(LANDMARK_NAMES, shifts.mean(0))}
    return float(shifts.mean())


def wrong_group_psnr(d, group: str, n: int = 200, size: int | None = None) -> float:
    """What getting one factor group wholly wrong costs an identity swap in pixels: the PSNR (dB, images in
    [-1, 1]) between the true swaps of the first ``n`` board pairs and the same swaps with ``group`` taken from the
    identity source (``identity``: the attribute source's, i.e. copying the attribute source). A pixel loss sees a
    group only as far as this error stands out of the method's own (the identity-swap methods reach 15-19 dB)."""
    size = size or d.size
    ids, attrs = (faces(d, split, n, size) for split in SWAP_SPLITS)
    mse = []
    for i in range(n):
        f_id, f_attr = ids.factors(i), attrs.factors(i)
        truth = swap(f_attr, f_id, "identity")
        wrong = swap(truth, f_attr if group == "identity" else f_id, group)
        a, b = (render(f, size)["image"].astype(np.float64) / 127.5 - 1.0 for f in (truth, wrong))
        mse.append(((a - b) ** 2).mean())
    return float(10 * np.log10(4.0 / np.mean(mse)))

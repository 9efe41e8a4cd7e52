"""Mask IoU and threshold search for soft (e.g. attention / alpha) masks against ground truth."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _flat_bool(m: torch.Tensor, name: str) -> torch.Tensor:
    if m.dim() == 4:
        if m.shape[1] != 1:
            raise ValueError(f"{name} must be (B, H, W) or (B, 1, H, W), got {tuple(m.shape)}")
        m = m[:, 0]
    if m.dim() != 3:
        raise ValueError(f"{name} must be (B, H, W) or (B, 1, H, W), got {tuple(m.shape)}")
    return (m if m.dtype == torch.bool else m > 0.5).flatten(1)


def iou(pred_bool: torch.Tensor, gt_bool: torch.Tensor) -> torch.Tensor:
    """Intersection over union per image -> float Tensor[B].

    Masks are (B, H, W) or (B, 1, H, W); non-bool masks are binarised with ``> 0.5``.
    An image where both masks are empty scores 1.0 (nothing to find, nothing predicted).
    """
    p = _flat_bool(pred_bool, "pred_bool")
    g = _flat_bool(gt_bool, "gt_bool").to(p.device)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {tuple(pred_bool.shape)} vs {tuple(gt_bool.shape)}")
    inter = (p & g).sum(1).double()
    union = (p | g).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def best_threshold_iou(
    soft_masks: torch.Tensor,
    gt_masks: torch.Tensor,
    thresholds: Sequence[float] | None = None,
) -> dict:
    """Pick the threshold ``t`` (prediction = ``soft > t``) maximising mean IoU over the set.

    The score for a threshold is the mean of per-image IoU (``iou``; empty/empty = 1.0), not a
    pooled IoU over all pixels. Default thresholds are 0.05, 0.10, ..., 0.95. On ties the smallest
    threshold wins. ``gt_masks`` are binarised with ``> 0.5`` unless bool.

    Returns ``dict(threshold=float, iou=float, per_threshold=[(t, mean_iou), ...])``.
    """
    if thresholds is None:
        thresholds = np.round(np.arange(1, 20) * 0.05, 2).tolist()
    thresholds = sorted(float(t) for t in thresholds)
    if not thresholds:
        raise ValueError("thresholds must not be empty")
    soft = soft_masks.detach()
    gt = gt_masks.detach().to(soft.device)
    per = [(t, float(iou(soft > t, gt).mean())) for t in thresholds]
    best_t, best_iou = max(per, key=lambda p: p[1])  # max keeps the first (smallest t) on ties
    return dict(threshold=best_t, iou=best_iou, per_threshold=per)

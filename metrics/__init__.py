"""Evaluation metrics: image similarity, linear probes, mask IoU and metric tables (pure functions)."""
from .image import l1, mask_count, masked_l1, mse, psnr, ssim, summarize
from .probe import linear_probe, ridge_probe
from .segmentation import best_threshold_iou, iou
from .tables import markdown_table, write_metrics

__all__ = [
    "l1", "mask_count", "masked_l1", "mse", "psnr", "ssim", "summarize",
    "linear_probe", "ridge_probe",
    "best_threshold_iou", "iou",
    "markdown_table", "write_metrics",
]

"""Method 2's own protocol beside ``content_transfer``: its masks as weakly-supervised segmentation.

- ``mask_grid.png``: the masks of the transfer grid's cells (a_i's content onto b_j);
- ``mask_overlay.png``: rows a, a's self-mask ``masks(a, a)`` overlaid in red, [the ground truth in green],
  removal; then the same for b (whose masks should be empty);
- IoU of a's self-masks against ground truth at the threshold that maximises mean per-image IoU (reported; it is
  chosen on the test set, so IoU at 0.5 is shown too). Ground truth: the renderer's attribute masks on synthetic
  data, else the binary masks in ``eval.mask_dir`` matched by file stem. Synthetic data also scores the transfer
  masks (a_i's content onto b_i) against the true region on b_i and against a_i's own region (a mask that follows
  the source's geometry scores higher there), a mask copying a_i's region against the true one (how far the two
  regions overlap), the transfer's L1 in the true region split by its mask, and a prior baseline (the mean
  training mask).
Ground-truth masks count as "on" where the rendered opacity is > 0.5 (as ``masked_l1`` does).
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.figures import image_grid, overlay_mask, save_png
from data.synthetic.counterfactual import content_transfer_truth, stack
from evaluation.content_transfer import test_pairs
from metrics.batch import batched
from metrics.image import mask_count, masked_l1
from metrics.mask_folder import read_mask_folder
from metrics.segmentation import best_threshold_iou

RED, GREEN = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
BEST = ("iou", "max")


def segmentation_row(task: str, method: str, soft: torch.Tensor, gt: torch.Tensor) -> dict:
    """Best-threshold IoU of soft masks (N, 1, H, W) against binary truth, IoU at 0.5, both mask areas."""
    gt = gt > 0.5 if gt.dtype != torch.bool else gt
    r = best_threshold_iou(soft, gt)
    return {"task": task, "method": method, "iou": r["iou"], "threshold": r["threshold"],
            "iou_at_0.5": dict(r["per_threshold"])[0.5],
            "mask_area": (soft > r["threshold"]).float().mean().item(), "gt_area": gt.float().mean().item(),
            "images": soft.shape[0]}


def split_by_mask(method: str, pred, truth, region, soft, at: float = 0.5) -> dict:
    """The transfer's L1 inside the true region, split by where its own mask (``soft`` > ``at``) covers the region
    and where not (mean over the images that have such pixels), and the covered share of the region's pixels."""
    region = region > 0.5
    covered, uncovered = region & (soft > at), region & ~(soft > at)

    def mean_l1(m):
        keep = mask_count(m) > 0
        return masked_l1(pred[keep], truth[keep], m[keep]).mean().item() if keep.any() else float("nan")

    return {"task": f"transfer L1 in the true region, split by the transfer mask (> {at:g})", "method": method,
            "l1_covered": mean_l1(covered), "l1_uncovered": mean_l1(uncovered),
            "covered_share": covered.sum().item() / max(region.sum().item(), 1), "images": pred.shape[0]}


def _test_a_paths(cfg, test) -> list:
    """File paths of the domain-a test images, in dataset order (decoded or cached folder domains)."""
    if hasattr(test["a"], "paths"):
        return test["a"].paths
    if cfg.data.name == "folders":
        from data.folders import list_domain

        return list_domain(Path(cfg.data.root), "testA")
    raise ValueError(f"eval.mask_dir needs image paths to match file names; data.name={cfg.data.name!r} has none")


def _mask_image(m: torch.Tensor) -> torch.Tensor:
    return m.float() * 2 - 1


def _self_masks(method, a, bs):
    with method.inference():
        return batched(lambda s, t: method.masks(t, s).float(), a, a, bs=bs)


def _attribute_masks(cfg, ds, n):
    from data.synthetic import CONTENT_ATTRIBUTES

    j = CONTENT_ATTRIBUTES.index(cfg.data.attribute)
    return stack(ds, n, key="mask")[:, j:j + 1]


def evaluate(method, cfg, out_dir: Path) -> list[dict]:
    out_dir = Path(out_dir)
    bs, dev = cfg.eval.batch_size, method.device
    test, a, b = test_pairs(method, cfg, cfg.eval.max_images)
    n = a.shape[0]
    with method.inference():
        self_a, self_b = _self_masks(method, a, bs), _self_masks(method, b, bs)
        trans = batched(lambda s, t: method.masks(t, s).float(), a, b, bs=bs)

    # ground truth: synthetic renderer masks, or a folder of binary masks
    k = min(cfg.eval.num_display, n)
    seg, truth = [], None
    if cfg.eval.mask_dir:
        idx, gt = read_mask_folder(cfg.eval.mask_dir, _test_a_paths(cfg, test)[:n], cfg.data.size, cfg.data.crop,
                                   cfg.data.resize_filter)
        seg.append(segmentation_row("segmentation a (self-mask)", cfg.method, self_a[idx], gt.to(dev)))
        truth = {i: g for i, g in zip(idx, gt.to(dev)) if i < k}
    elif cfg.data.name == "synthetic":
        gt = _attribute_masks(cfg, test["a"], n).to(dev)
        seg.append(segmentation_row("segmentation a (self-mask)", cfg.method, self_a, gt))
        prior = _attribute_masks(cfg, method.datasets(cfg, "train")["a"], 1024).mean(0, keepdim=True).to(dev)
        seg.append(segmentation_row("segmentation a (self-mask)", "baseline: mean training mask",
                                    prior.expand_as(gt), gt))
        gt_t = content_transfer_truth(test["a"], test["b"], n, cfg.data.attribute)
        seg.append(segmentation_row("segmentation transfer (a_i onto b_i)", cfg.method, trans,
                                    gt_t["mask_transfer"].to(dev)))
        # diagnostic: a transfer mask that matches the source's own region (a_i's geometry) better than the true
        # region on b_i paints the content where it was in the source, not where b_i's face needs it
        seg.append(segmentation_row("segmentation transfer vs the source's region (a_i)", cfg.method, trans, gt))
        # how far the two true regions overlap: the transfer score of a mask that copies the source's region
        seg.append(segmentation_row("segmentation transfer (a_i onto b_i)", "baseline: the source's region (a_i)",
                                    (gt > 0.5).float(), gt_t["mask_transfer"].to(dev)))
        with method.inference():
            out = batched(lambda t, s: method.transfer(t, s).float(), b, a, bs=bs)
        seg.append(split_by_mask(cfg.method, out, gt_t["transfer"].to(dev), gt_t["mask_transfer"].to(dev), trans))
        truth = dict(enumerate(gt[:k] > 0.5))
    if seg:
        t = seg[0]["threshold"]
        seg.append({"task": "segmentation b (no content)", "method": cfg.method, "threshold": t,
                    "mask_area": (self_b > t).float().mean().item(), "gt_area": 0.0, "images": n})

    # grids
    with method.inference():
        grid = [[None] + list(b[:k])]
        for i in range(k):
            grid.append([a[i]] + list(_mask_image(method.masks(b[:k], a[i:i + 1].expand(k, -1, -1, -1)))))
        save_png(image_grid(grid), out_dir / "mask_grid.png")
        overlay = [list(a[:k]), list(overlay_mask(a[:k], self_a[:k], RED))]
        if truth:
            overlay.append([overlay_mask(a[i], truth[i], GREEN) if i in truth else None for i in range(k)])
        overlay += [list(method.remove(a[:k]).float()),
                    list(b[:k]), list(overlay_mask(b[:k], self_b[:k], RED)), list(method.remove(b[:k]).float())]
    save_png(image_grid(overlay), out_dir / "mask_overlay.png")
    return seg


def scores(method, cfg, n: int) -> dict[str, float]:
    """IoU (best threshold) of the self-masks of the first ``n`` synthetic test images of domain a."""
    if cfg.data.name != "synthetic":
        return {}
    test, a, _ = test_pairs(method, cfg, n)
    gt = _attribute_masks(cfg, test["a"], a.shape[0]).to(method.device)
    r = segmentation_row("", "", _self_masks(method, a, cfg.eval.batch_size), gt)
    return {"iou": r["iou"], "iou_at_0.5": r["iou_at_0.5"]}

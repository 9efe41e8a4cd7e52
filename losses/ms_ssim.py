"""Differentiable MS-SSIM and the weighted L1 + MS-SSIM pixel loss of method 3 (Nitzan et al. 2020).

MS-SSIM (Wang et al. 2003) as ``tf.image.ssim_multiscale`` computes it, which the original's pixel loss
calls: per colour channel, the contrast-structure term at every scale and SSIM at the coarsest (each
averaged over the valid window positions, negative values set to 0) are combined by the power-weighted
product over scales; the channels are averaged last. Between scales the images are 2x2 average-pooled, an
odd side first extended by repeating its last row / column (TF's symmetric padding). With all 5 scales the
power factors are TF's (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Small images cannot hold 5 scales of an
11-tap window (TF refuses them), so only the scales whose side is at least ``win_size`` are used and their
weights renormalised to sum 1 (e.g. 2 scales at 32 px, all 5 from 176 px up).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from metrics.image import SSIM_K1, SSIM_K2, _gaussian_kernel_1d

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ssim_terms(x, y, data_range, win_size, sigma):
    """Per-channel mean SSIM and mean contrast-structure term ('valid' Gaussian window), each (B, C)."""
    b, c, h, w = x.shape
    k = _gaussian_kernel_1d(win_size, sigma, x.dtype, x.device)
    kh, kw = k.view(1, 1, -1, 1), k.view(1, 1, 1, -1)
    xs, ys = x.reshape(b * c, 1, h, w), y.reshape(b * c, 1, h, w)
    mom = F.conv2d(F.conv2d(torch.cat([xs, ys, xs * xs, ys * ys, xs * ys]), kh), kw)
    ux, uy, uxx, uyy, uxy = mom.chunk(5)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    cs = (2 * vxy + c2) / (vx + vy + c2)
    lum = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1)
    return (lum * cs).reshape(b, c, -1).mean(2), cs.reshape(b, c, -1).mean(2)


def _halve(x):
    """2x2 average pooling; an odd side is first extended by repeating its last row / column."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(x, 2)


def ms_ssim_weights(n: int) -> tuple[float, ...]:
    """Power factors of ``n`` scales: TF's five as they are; fewer renormalised to sum 1."""
    if n == len(MS_SSIM_WEIGHTS):
        return MS_SSIM_WEIGHTS
    total = sum(MS_SSIM_WEIGHTS[:n])
    return tuple(w / total for w in MS_SSIM_WEIGHTS[:n])


def ms_ssim_scales(size: int, win_size: int = 11) -> int:
    """Number of scales (at most 5) whose side ``size / 2**i`` still holds the window."""
    if size < win_size:
        raise ValueError(f"MS-SSIM needs images of at least {win_size} px (win_size), got {size}")
    return min(len(MS_SSIM_WEIGHTS), 1 + int(math.floor(math.log2(size / win_size))))


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, win_size: int = 11,
            sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM per image -> (B,): per channel over the scales, then the channel mean (as TF)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ms_ssim needs two (B,C,H,W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    n = ms_ssim_scales(min(x.shape[-2:]), win_size)
    weights = ms_ssim_weights(n)
    x, y = x.float(), y.float()
    per_channel = 1.0
    for i in range(n):
        s, cs = _ssim_terms(x, y, data_range, win_size, sigma)
        term = s if i == n - 1 else cs
        per_channel = per_channel * term.clamp(min=0).pow(weights[i])
        if i < n - 1:
            x, y = _halve(x), _halve(y)
    return per_channel.mean(1)


def inverse_gaussian_mask(size: int, sigma: float) -> torch.Tensor:
    """(size, size) pixel weights summing to 1, low at the centre: ``max + min - g`` of a Gaussian ``g``.

    The paper's pixel loss weights the border (hair, background) above the face centre, which the
    identity loss already constrains.
    """
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g1 = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g1[:, None] * g1[None, :]
    g = g / g.sum()
    inv = g.max() + g.min() - g
    return (inv / inv.sum()).float()


def pixel_loss(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, mssim_weight: float) -> torch.Tensor:
    """``mssim_weight * (1 - MS-SSIM) + (1 - mssim_weight) * weighted L1`` on images in [-1, 1], batch mean.

    The L1 term is computed on [0, 1] images with per-pixel weights ``mask`` (summing to 1; uniform if None),
    averaged over channels: the mean over the batch, not a batch sum, so the weight does not depend on the
    batch size (the original TF code summed over the batch).
    """
    a, b = (out.float() + 1) / 2, (target.float() + 1) / 2
    err = (a - b).abs().mean(1)  # (B, H, W)
    if mask is None:
        l1 = err.mean((1, 2))
    else:
        l1 = (err * mask).sum((1, 2))
    loss = (1 - mssim_weight) * l1.mean()
    if mssim_weight:
        loss = loss + mssim_weight * (1 - ms_ssim(a, b, data_range=1.0)).mean()
    return loss

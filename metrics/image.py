"""Per-image reconstruction metrics for (B, C, H, W) float images in [-1, 1].

Every metric returns one value per image (a ``Tensor[B]``); use ``summarize`` to reduce to floats.
The default ``data_range`` is 2.0 because our images span [-1, 1].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

PSNR_CAP_DB = 100.0
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(x.shape)}")


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image, over channels and pixels -> Tensor[B]."""
    _check_pair(x, y)
    dt = _work_dtype(x)
    return (x.to(dt) - y.to(dt)).abs().flatten(1).mean(1)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, over channels and pixels -> Tensor[B]."""
    _check_pair(x, y)
    dt = _work_dtype(x)
    return (x.to(dt) - y.to(dt)).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB per image: ``10 * log10(data_range**2 / mse)`` -> Tensor[B].

    Capped at ``PSNR_CAP_DB`` (100 dB), so identical images give 100.0 rather than inf and
    means over a set stay finite.
    """
    m = mse(x, y)
    return (10.0 * torch.log10(data_range**2 / m)).clamp(max=PSNR_CAP_DB)


def _gaussian_kernel_1d(win_size: int, sigma: float, dtype, device) -> torch.Tensor:
    r = win_size // 2
    t = torch.arange(-r, r + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _valid_filter_matrix(k: torch.Tensor, n: int) -> torch.Tensor:
    """(n - len(k) + 1, n) matrix whose product with a length-n signal is its 'valid' correlation with ``k``."""
    m = n - k.numel() + 1
    rows = torch.arange(m, device=k.device)[:, None] + torch.arange(k.numel(), device=k.device)[None, :]
    out = torch.zeros(m, n, dtype=k.dtype, device=k.device)
    return out.scatter_(1, rows, k.expand(m, -1))


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 2.0,
    win_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Mean SSIM per image (Wang et al. 2004) -> Tensor[B].

    Gaussian window of ``win_size`` taps (std ``sigma``, normalised to sum 1), K1=0.01, K2=0.03,
    population (not sample) covariances. Local statistics are computed per channel with a 'valid'
    convolution (no padding), and the SSIM map is averaged over channels and valid positions.
    This matches skimage ``structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=..., channel_axis=0)`` (which filters the full image
    and then crops ``win_size // 2`` pixels from each border).

    Raises ValueError if ``win_size`` is even or the image is smaller than the window.
    """
    _check_pair(x, y)
    if win_size % 2 != 1 or win_size < 1:
        raise ValueError(f"win_size must be a positive odd integer, got {win_size}")
    h, w = x.shape[-2:]
    if h < win_size or w < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size} pixels (win_size), got {h}x{w}")
    b, c = x.shape[:2]
    dt = _work_dtype(x)
    k = _gaussian_kernel_1d(win_size, sigma, dt, x.device)
    kh, kw = _valid_filter_matrix(k, h), _valid_filter_matrix(k, w)

    def filt(t: torch.Tensor) -> torch.Tensor:  # separable valid Gaussian filter on (N, H, W), as two matmuls
        return kh @ t @ kw.T

    xs = x.to(dt).reshape(b * c, h, w)
    ys = y.to(dt).reshape(b * c, h, w)
    # One batched filter call over the five local moments.
    mom = filt(torch.cat([xs, ys, xs * xs, ys * ys, xs * ys], 0))
    ux, uy, uxx, uyy, uxy = mom.chunk(5, 0)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(b, -1).mean(1)


def _mask_bool(mask: torch.Tensor, b: int) -> torch.Tensor:
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape[0] != b or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, H, W) or (B, 1, H, W) with B={b}, got {tuple(mask.shape)}")
    return mask > 0.5 if mask.dtype != torch.bool else mask


def mask_count(mask: torch.Tensor) -> torch.Tensor:
    """Number of selected pixels (mask > 0.5) per image -> int64 Tensor[B]; mask (B,H,W) or (B,1,H,W)."""
    return _mask_bool(mask, mask.shape[0]).flatten(1).sum(1)


def masked_l1(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels where ``mask > 0.5`` (and all channels) -> Tensor[B].

    ``mask`` is (B, H, W) or (B, 1, H, W), float or bool. An image whose mask selects no pixel
    gets 0.0 (never NaN); use ``mask_count(mask)`` to find those images and exclude them from
    averages if needed (e.g. ``vals[mask_count(mask) > 0].mean()``).
    """
    _check_pair(x, y)
    m = _mask_bool(mask, x.shape[0]).to(x.device)
    if m.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"mask spatial size {tuple(m.shape[-2:])} != image size {tuple(x.shape[-2:])}")
    dt = _work_dtype(x)
    err = (x.to(dt) - y.to(dt)).abs() * m.to(dt)
    n = m.flatten(1).sum(1).to(dt) * x.shape[1]
    return err.flatten(1).sum(1) / n.clamp(min=1)


def summarize(values: dict[str, torch.Tensor | Sequence[torch.Tensor]]) -> dict[str, float]:
    """Mean of each entry -> ``{key: float}``.

    A value may be one tensor or a list of per-batch tensors (concatenated first), so per-batch
    results can be accumulated in a list and summarised at the end. Empty entries give NaN.
    """
    out = {}
    for key, v in values.items():
        if isinstance(v, torch.Tensor):
            t = v.detach().reshape(-1)
        else:
            parts = [torch.as_tensor(p).detach().reshape(-1).cpu() for p in v]
            t = torch.cat(parts) if parts else torch.empty(0)
        out[key] = float(t.double().mean()) if t.numel() else float("nan")
    return out

"""MS-SSIM and the pixel loss of method 3 against SSIM (1 scale) and their defining formulas."""
import math

import pytest
import torch

from losses.ms_ssim import MS_SSIM_WEIGHTS, inverse_gaussian_mask, ms_ssim, ms_ssim_scales, pixel_loss
from metrics.image import ssim


def test_scales_fit_the_window():
    assert ms_ssim_scales(32) == 2 and ms_ssim_scales(21) == 1 and ms_ssim_scales(176) == 5
    assert ms_ssim_scales(1024) == 5
    with pytest.raises(ValueError, match="at least 11"):
        ms_ssim_scales(8)


def test_single_scale_equals_ssim_and_identity_gives_one():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 21, 21, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert torch.allclose(ms_ssim(x, y), ssim(x, y), atol=1e-5)
    assert torch.allclose(ms_ssim(x, x), torch.ones(3), atol=1e-5)


def test_multi_scale_is_the_weighted_product_and_falls_with_noise():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    # two scales at 32 px: cs at full size ^ w0' times SSIM at half size ^ w1'
    w = torch.tensor(MS_SSIM_WEIGHTS[:2])
    w = w / w.sum()
    half = torch.nn.functional.avg_pool2d
    from losses.ms_ssim import _ssim_terms
    _, cs0 = _ssim_terms(x, y, 2.0, 11, 1.5)
    s1 = ssim(half(x, 2), half(y, 2))
    assert torch.allclose(ms_ssim(x, y), cs0.clamp(min=0) ** w[0] * s1.clamp(min=0) ** w[1], atol=1e-5)
    z = (x + 0.6 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert (ms_ssim(x, z) < ms_ssim(x, y)).all()


def test_inverse_gaussian_mask():
    m = inverse_gaussian_mask(32, 10.0)
    assert m.shape == (32, 32) and math.isclose(m.sum().item(), 1.0, rel_tol=1e-5)
    assert m[0, 0] == m.max() and m[15:17, 15:17].max() == m.min()
    t = torch.arange(32.0) - 15.5
    g = torch.exp(-0.5 * (t / 10) ** 2)
    g = g[:, None] * g[None, :]
    g = g / g.sum()
    ref = g.max() + g.min() - g
    assert torch.allclose(m, ref / ref.sum(), atol=1e-7)


def test_pixel_loss_mixes_l1_and_ms_ssim_and_has_gradients():
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1).requires_grad_()
    y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    l1_only = pixel_loss(x, y, None, 0.0)
    assert torch.allclose(l1_only, ((x - y).abs() / 2).mean())
    mix = pixel_loss(x, y, inverse_gaussian_mask(32, 10.0), 0.84)
    mix.backward()
    assert x.grad.abs().sum() > 0
    assert pixel_loss(y, y, None, 0.84).item() == pytest.approx(0.0, abs=1e-5)

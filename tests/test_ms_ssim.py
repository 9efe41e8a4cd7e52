"""MS-SSIM and the pixel loss of method 3 against SSIM (1 scale), their defining formulas and a NumPy reference
of ``tf.image.ssim_multiscale`` (the original's pixel loss) written from its documented algorithm."""
import math

import numpy as np
import pytest
import torch

from losses.ms_ssim import MS_SSIM_WEIGHTS, inverse_gaussian_mask, ms_ssim, ms_ssim_scales, pixel_loss
from metrics.image import ssim

TF_POWER_FACTORS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def tf_scale_terms(a, b, max_val=1.0, scales=5, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Per scale of tf.image.ssim_multiscale, in float64 on (B, H, W, C) arrays: (SSIM, contrast-structure),
    each (B, C, scales). Local means: a 2-D Gaussian (exp(-(u^2 + v^2) / (2 sigma^2)), normalised to sum 1)
    slid over every valid position; luminance (2 ma mb + c1) / (ma^2 + mb^2 + c1), contrast-structure
    (2 E[ab] - 2 ma mb + c2) / (E[a^2 + b^2] - ma^2 - mb^2 + c2), both averaged over the positions. Between
    scales: an odd side is padded at its end by mirroring (one repeated row / column), then 2x2 means."""
    u = np.arange(size) - (size - 1) / 2
    kern = np.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / (2 * sigma ** 2))
    kern /= kern.sum()
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    ssims, css = [], []
    for k in range(scales):
        if k:
            rh, rw = a.shape[1] % 2, a.shape[2] % 2
            a, b = (np.pad(t, ((0, 0), (0, rh), (0, rw), (0, 0)), mode="symmetric") for t in (a, b))
            n, h, w, c = a.shape
            a, b = (t.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4)) for t in (a, b))
        oh, ow = a.shape[1] - size + 1, a.shape[2] - size + 1

        def local(t):
            return sum(kern[i, j] * t[:, i:i + oh, j:j + ow] for i in range(size) for j in range(size))

        ma, mb = local(a), local(b)
        lum = (2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1)
        cs = (2 * local(a * b) - 2 * ma * mb + c2) / (local(a * a + b * b) - ma ** 2 - mb ** 2 + c2)
        ssims.append((lum * cs).mean((1, 2)))
        css.append(cs.mean((1, 2)))
    return np.stack(ssims, -1), np.stack(css, -1)


def tf_ms_ssim(ssims, css):
    """relu(cs) of the first four scales and relu(SSIM) of the fifth, power-weighted product per channel,
    then the mean over channels -> (B,)."""
    terms = np.maximum(np.concatenate([css[..., :-1], ssims[..., -1:]], -1), 0)
    return np.prod(terms ** TF_POWER_FACTORS, -1).mean(-1)


def smooth_faces(n, size, seed):
    """Smooth random colour images in [0, 1] and copies with a different error in each colour channel."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 3, size // 8, size // 8, generator=g), size=(size, size),
                                        mode="bicubic", align_corners=False).clamp(0, 1)
    gain = torch.tensor([1.0, 0.8, 1.15]).view(1, 3, 1, 1)
    noise = torch.tensor([0.02, 0.12, 0.05]).view(1, 3, 1, 1) * torch.randn(x.shape, generator=g)
    return x, (x * gain + noise).clamp(0, 1)


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
    # two scales at 32 px, per channel: cs at full size ^ w0' times SSIM at half size ^ w1'; channel mean last
    w = torch.tensor(MS_SSIM_WEIGHTS[:2])
    w = w / w.sum()
    half = torch.nn.functional.avg_pool2d
    per_channel = []
    for c in range(3):
        xc, yc = x[:, c:c + 1], y[:, c:c + 1]
        _, cs0 = ssim_and_cs(xc, yc)
        s1 = ssim(half(xc, 2), half(yc, 2))
        per_channel.append(cs0.clamp(min=0) ** w[0] * s1.clamp(min=0) ** w[1])
    assert torch.allclose(ms_ssim(x, y), torch.stack(per_channel).mean(0), atol=1e-5)
    z = (x + 0.6 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert (ms_ssim(x, z) < ms_ssim(x, y)).all()


def ssim_and_cs(x, y):
    """Single-channel SSIM and contrast-structure means from the reference's formulas (float64)."""
    a, b = (t.permute(0, 2, 3, 1).double().numpy() for t in (x, y))
    s, cs = tf_scale_terms(a, b, max_val=2.0, scales=1)
    return torch.from_numpy(s[:, 0, 0]).float(), torch.from_numpy(cs[:, 0, 0]).float()


@pytest.mark.parametrize("size", [256, 190])  # 190: odd sides at the 2nd scale (95 px) are padded as TF does
def test_matches_tf_ssim_multiscale_per_channel(size):
    x, y = smooth_faces(2, size, seed=3)
    ssims, css = tf_scale_terms(*(t.permute(0, 2, 3, 1).double().numpy() for t in (x, y)))
    ref = tf_ms_ssim(ssims, css)
    ours = ms_ssim(x, y, data_range=1.0).double().numpy()
    np.testing.assert_allclose(1 - ours, 1 - ref, rtol=2e-4)
    # the channels differ here: averaging them at every scale before the product (not TF's order) is off by
    # more than 1% of the loss, so this test tells the two apart
    channel_first = np.prod(np.maximum(np.concatenate([css[..., :-1], ssims[..., -1:]], -1).mean(1), 0)
                            ** TF_POWER_FACTORS, -1)
    assert (np.abs((1 - channel_first) / (1 - ref) - 1) > 0.01).all()


def test_five_scales_use_tf_power_factors_unnormalised():
    from losses.ms_ssim import ms_ssim_weights

    assert ms_ssim_weights(5) == (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # sum 1.0001, as TF uses them
    assert math.isclose(sum(ms_ssim_weights(2)), 1.0) and ms_ssim_weights(1) == (1.0,)


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

"""Tests for metrics/: each metric against an independent reference or a hand-made case."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from core.figures import image_grid, overlay_mask, save_png, to_uint8
from metrics import (
    best_threshold_iou, iou, l1, linear_probe, markdown_table, mask_count, masked_l1, mse, psnr, ridge_probe,
    ssim, summarize, write_metrics,
)


# ---------------------------------------------------------------- SSIM reference (numpy/scipy)

def ssim_reference(x: np.ndarray, y: np.ndarray, data_range=2.0, sigma=1.5, win=11) -> float:
    """skimage-style SSIM for one (C, H, W) image: filter full image, crop win//2 border, mean."""
    r = win // 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for a, b in zip(x.astype(np.float64), y.astype(np.float64)):
        f = lambda t: gaussian_filter(t, sigma=sigma, truncate=r / sigma, mode="reflect")  # noqa: E731
        ux, uy = f(a), f(b)
        vx, vy, vxy = f(a * a) - ux * ux, f(b * b) - uy * uy, f(a * b) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        vals.append(s[r:-r, r:-r].mean())
    return float(np.mean(vals))


def _structured(h, w, seed):
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [
        np.sin(2 * np.pi * (3 * xx + g.uniform())) * np.cos(2 * np.pi * 2 * yy),
        ((np.floor(xx * 8) + np.floor(yy * 8)) % 2) * 2 - 1,
        np.tanh(4 * (xx - yy)) * 0.8,
    ]
    return np.stack(chans).astype(np.float32)


def test_ssim_matches_reference_random():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 40, 48, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    got = ssim(x, y)
    ref = [ssim_reference(a.numpy(), b.numpy()) for a, b in zip(x, y)]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4)


def test_ssim_matches_reference_structured_32px():
    xs = np.stack([_structured(32, 32, s) for s in range(3)])
    ys = np.stack([
        xs[0] * 0.6 + 0.1,                                   # contrast / brightness change
        np.roll(xs[1], 2, axis=-1),                          # shift
        gaussian_filter(xs[2], sigma=(0, 1.0, 1.0)),         # blur
    ]).astype(np.float32)
    got = ssim(torch.from_numpy(xs), torch.from_numpy(ys))
    ref = [ssim_reference(a, b) for a, b in zip(xs, ys)]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4)
    # Single channel and a non-default window also agree.
    got1 = ssim(torch.from_numpy(xs[:, :1]), torch.from_numpy(ys[:, :1]), win_size=7, sigma=1.0, data_range=1.0)
    ref1 = [ssim_reference(a[:1], b[:1], data_range=1.0, sigma=1.0, win=7) for a, b in zip(xs, ys)]
    np.testing.assert_allclose(got1.numpy(), ref1, atol=1e-4)


def test_ssim_identity_and_monotone_in_noise():
    x = torch.from_numpy(np.stack([_structured(32, 32, s) for s in range(2)]))
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0, atol=1e-6)
    g = torch.Generator().manual_seed(1)
    n = torch.randn(x.shape, generator=g)
    scores = [ssim(x, x + s * n).mean().item() for s in (0.02, 0.1, 0.3, 1.0)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores


def test_ssim_rejects_small_images():
    x = torch.zeros(1, 3, 10, 32)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x, x)
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), win_size=4)


# ---------------------------------------------------------------- L1 / MSE / PSNR

def test_l1_mse_psnr_formula():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    y = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    xn, yn = x.double().numpy(), y.double().numpy()
    m = ((xn - yn) ** 2).reshape(4, -1).mean(1)
    np.testing.assert_allclose(l1(x, y).numpy(), np.abs(xn - yn).reshape(4, -1).mean(1), rtol=1e-5)
    np.testing.assert_allclose(mse(x, y).numpy(), m, rtol=1e-5)
    np.testing.assert_allclose(psnr(x, y).numpy(), 10 * np.log10(2.0 ** 2 / m), rtol=1e-5)
    np.testing.assert_allclose(psnr(x, y, data_range=1.0).numpy(), 10 * np.log10(1.0 / m), rtol=1e-5)


def test_psnr_identical_is_capped():
    x = torch.rand(2, 3, 8, 8)
    p = psnr(x, x)
    assert torch.isfinite(p).all() and torch.all(p == 100.0)


# ---------------------------------------------------------------- masked L1

def test_masked_l1_hand_made():
    x = torch.zeros(3, 2, 2, 2)
    y = torch.zeros(3, 2, 2, 2)
    y[0, :, 0, 0] = 1.0           # error 1 on pixel (0,0), both channels
    y[0, 0, 1, 1] = 4.0           # error outside the mask
    y[1] = 0.5                    # error 0.5 everywhere
    mask = torch.zeros(3, 2, 2)
    mask[0, 0, 0] = 1.0
    mask[0, 0, 1] = 0.6           # > 0.5 -> selected, error 0
    mask[0, 1, 1] = 0.5           # not > 0.5 -> excluded
    mask[1] = 1.0
    # image 2: empty mask
    got = masked_l1(x, y, mask)
    np.testing.assert_allclose(got.numpy(), [0.5, 0.5, 0.0])
    assert mask_count(mask).tolist() == [2, 4, 0]
    # (B, 1, H, W) and bool masks give the same
    np.testing.assert_allclose(masked_l1(x, y, mask[:, None]).numpy(), got.numpy())
    np.testing.assert_allclose(masked_l1(x, y, mask > 0.5).numpy(), got.numpy())
    assert not torch.isnan(got).any()


def test_summarize():
    out = summarize({"a": torch.tensor([1.0, 2.0, 3.0]), "b": [torch.tensor([1.0]), torch.tensor([3.0, 5.0])]})
    assert out == {"a": 2.0, "b": 3.0}
    assert all(isinstance(v, float) for v in out.values())


# ---------------------------------------------------------------- probes

def test_linear_probe_separable_and_independent():
    g = torch.Generator().manual_seed(3)
    k, d = 4, 6
    centres = torch.randn(k, d, generator=g) * 6
    ytr = torch.randint(0, k, (400,), generator=g)
    yte = torch.randint(0, k, (400,), generator=g)
    xtr = centres[ytr] + torch.randn(400, d, generator=g) * 0.3
    xte = centres[yte] + torch.randn(400, d, generator=g) * 0.3
    res = linear_probe(xtr, ytr + 10, xte, yte + 10)   # arbitrary integer labels
    assert res["accuracy"] > 0.99 and res["balanced_accuracy"] > 0.99
    assert res["n_classes"] == k

    # labels independent of features -> about chance
    xtr2, xte2 = torch.randn(400, d, generator=g), torch.randn(4000, d, generator=g)
    ytr2, yte2 = torch.randint(0, k, (400,), generator=g), torch.randint(0, k, (4000,), generator=g)
    res2 = linear_probe(xtr2, ytr2, xte2, yte2)
    assert abs(res2["accuracy"] - 1 / k) < 0.06
    assert abs(res2["balanced_accuracy"] - res2["balanced_chance"]) < 0.06
    assert abs(res2["chance"] - 1 / k) < 0.05
    # deterministic
    assert linear_probe(xtr2, ytr2, xte2, yte2) == res2


def test_linear_probe_with_more_features_than_samples_solves_in_the_row_space(monkeypatch):
    """D > N: the probe optimises over the span of the training rows; the same objective over all D features
    (an identity basis) ends at the same classifier on held-out data, and the basis is orthonormal."""
    import metrics.probe as probe

    g = torch.Generator().manual_seed(3)
    n, d = 300, 1200
    z = torch.randn(n, 8, generator=g, dtype=torch.float64)
    x = z @ torch.randn(8, d, generator=g, dtype=torch.float64) + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (z[:, 0] + 0.2 * torch.randn(n, generator=g, dtype=torch.float64) > 0).long()
    basis = probe._row_space(probe._standardise(x[:200], x[200:])[0])
    assert basis.shape == (d, 199)  # standardising removes one dimension (the mean) from the span
    assert torch.allclose(basis.T @ basis, torch.eye(199, dtype=torch.float64), atol=1e-9)
    seen = []
    real = probe._row_space
    monkeypatch.setattr(probe, "_row_space", lambda t: seen.append(t.shape) or real(t))
    reduced = linear_probe(x[:200], y[:200], x[200:], y[200:])
    assert seen == [(200, d)]
    monkeypatch.setattr(probe, "_row_space", lambda t: torch.eye(t.shape[1], dtype=t.dtype))
    full = linear_probe(x[:200], y[:200], x[200:], y[200:])
    assert reduced["accuracy"] == full["accuracy"] > 0.8 and reduced["train_accuracy"] == full["train_accuracy"]
    seen.clear()
    monkeypatch.setattr(probe, "_row_space", lambda t: seen.append(t.shape) or real(t))
    linear_probe(x[:200, :150], y[:200], x[200:, :150], y[200:])  # fewer features than samples: as it was
    assert seen == []


def test_ridge_probe_linear_and_noise():
    g = np.random.default_rng(4)
    xtr, xte = g.normal(size=(500, 8)), g.normal(size=(500, 8))
    w = g.normal(size=(8, 2))
    res = ridge_probe(xtr, xtr @ w + 3.0, xte, xte @ w + 3.0, alpha=1e-3)
    assert res["r2"].shape == (2,) and np.all(res["r2"] > 0.999)
    noise = ridge_probe(xtr, g.normal(size=500), xte, g.normal(size=500))
    assert noise["r2"].shape == (1,) and abs(noise["mean_r2"]) < 0.05


# ---------------------------------------------------------------- segmentation

def test_iou_hand_made():
    pred = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    gt = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    pred[0, 0, :2, :2] = True          # 4 px
    gt[0, 0, :2, :3] = True            # 6 px, inter 4, union 6
    gt[1, 0, 0, 0] = True              # pred empty -> 0
    # image 2: both empty -> 1
    np.testing.assert_allclose(iou(pred, gt).numpy(), [4 / 6, 0.0, 1.0])
    np.testing.assert_allclose(iou(pred[:, 0], gt[:, 0].float()).numpy(), [4 / 6, 0.0, 1.0])


def test_best_threshold_iou_finds_known_threshold():
    g = torch.Generator().manual_seed(5)
    gt = torch.rand(6, 16, 16, generator=g) > 0.6
    # foreground at 0.32, background at 0.28: only t = 0.30 separates them perfectly.
    soft = torch.where(gt, torch.tensor(0.32), torch.tensor(0.28))
    soft[0, 0, 0] = 0.9 if not gt[0, 0, 0] else 0.0  # one unavoidable error
    res = best_threshold_iou(soft, gt)
    assert res["threshold"] == pytest.approx(0.30)
    assert 0.97 < res["iou"] < 1.0
    ts = [t for t, _ in res["per_threshold"]]
    assert len(ts) == 19 and ts[0] == pytest.approx(0.05) and ts[-1] == pytest.approx(0.95)
    assert res["iou"] == max(v for _, v in res["per_threshold"])
    res2 = best_threshold_iou(soft[:, None], gt[:, None].float(), thresholds=[0.5, 0.3, 0.1])
    assert res2["threshold"] == pytest.approx(0.3) and [t for t, _ in res2["per_threshold"]] == [0.1, 0.3, 0.5]


# ---------------------------------------------------------------- grids / PNG

def test_image_grid_shape_and_values():
    a = torch.full((3, 4, 5), 0.0)
    a[:, 0, 0] = torch.tensor([-1.0, 1.0, 0.5])
    b = torch.full((1, 4, 5), 2.0)          # grayscale, out of range -> clamped to 255
    grid = image_grid([[a, None, b], [b]], pad=2, pad_value=1.0)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 4 + 3 * 2, 3 * 5 + 4 * 2, 3)
    assert grid[2, 2].tolist() == [0, 255, 191]          # first pixel of a
    assert grid[3, 3].tolist() == [128, 128, 128]        # 0.0 -> 128
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()  # pad
    assert (grid[2:6, 9:14] == 255).all()                # blank cell -> pad colour
    assert (grid[2:6, 16:21] == 255).all()               # clamped b
    assert (grid[8:12, 9:14] == 255).all()               # missing cell in short row
    t = torch.zeros(2, 3, 3, 4, 5) - 1
    g2 = image_grid(t, pad=1, pad_value=-1.0)
    assert g2.shape == (2 * 4 + 3, 3 * 5 + 4, 3) and (g2 == 0).all()
    assert to_uint8(torch.tensor([[[-0.5]]]))[0, 0, 0] == 64  # (0.5 * 127.5 = 63.75) -> 64


def test_overlay_mask():
    img = torch.zeros(3, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    out = overlay_mask(img, mask, color=(1, 0, 0), alpha=0.5)
    assert out.shape == (3, 2, 2)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), [0.5, -0.5, -0.5])
    np.testing.assert_allclose(out[:, 0, 1].numpy(), [0, 0, 0])
    np.testing.assert_allclose(out[:, 1, 0].numpy(), [0.25, -0.25, -0.25])
    assert overlay_mask(img[None].expand(2, -1, -1, -1), mask[None, None].expand(2, 1, 2, 2)).shape == (2, 3, 2, 2)


def test_save_png_round_trip(tmp_path):
    g = np.random.default_rng(6)
    arr = g.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    p = save_png(arr, tmp_path / "sub" / "x.png")
    np.testing.assert_array_equal(np.array(Image.open(p)), arr)
    t = torch.tensor([[[-1.0, 1.0]], [[0.0, 0.0]], [[1.0, -1.0]]])
    p2 = save_png(t, tmp_path / "t.png")
    np.testing.assert_array_equal(np.array(Image.open(p2)), to_uint8(t))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["sub", "t.png"]  # no temp files left
    with pytest.raises(ValueError):
        save_png(arr.astype(np.float32), tmp_path / "bad.png")


# ---------------------------------------------------------------- tables

def test_markdown_table():
    rows = [{"method": "ours", "psnr": 30.123456, "n": 10}, {"method": "a|b", "ssim": np.float32(0.5)}]
    md = markdown_table(rows)
    assert md.split("\n") == [
        "| method | psnr    | n   | ssim   |",
        "| ------ | ------- | --- | ------ |",
        "| ours   | 30.1235 | 10  |        |",
        "| a\\|b   |         |     | 0.5000 |",
    ]
    assert markdown_table(rows, columns=["n"], floatfmt=".2f").split("\n")[2] == "| 10  |"
    assert markdown_table([{"x": torch.tensor(0.25)}], floatfmt=".2f").split("\n")[2] == "| 0.25 |"


def test_write_metrics(tmp_path):
    rows = [{"m": "x", "v": torch.tensor(1.5), "bad": math.nan}]
    md, js = write_metrics(tmp_path / "out", "eval", rows)
    assert md.name == "eval.md" and js.name == "eval.json"
    assert md.read_text() == markdown_table(rows) + "\n"
    assert json.loads(js.read_text()) == [{"m": "x", "v": 1.5, "bad": None}]
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["eval.json", "eval.md"]

"""Tests of the procedural synthetic face dataset (data/synthetic/)."""
import os

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

import data.synthetic.dataset as synthetic_dataset
import data.synthetic.painter as synthetic_painter
from data.synthetic import (CONTENT_ATTRIBUTES, FACTOR_DIMS, FLIP_PAIRS, GROUPS, N_LANDMARKS, SyntheticFaces,
                            factor_vectors, mirror, remove, render, sample_factors, swap)

DIFF = 2  # uint8 levels: 2/255


def _changed(a, b):
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1) > DIFF


def _dilate(mask):
    return binary_dilation(mask, np.ones((3, 3), bool))


# ----------------------------------------------------------------------------- factors

def test_determinism_and_streams():
    f1, f2 = sample_factors(3, 17), sample_factors(3, 17)
    assert f1 == f2
    np.testing.assert_array_equal(render(f1)["image"], render(f2)["image"])
    assert sample_factors(4, 17) != f1
    assert sample_factors(3, 18) != f1
    assert sample_factors(3, 17, split="test") != f1
    assert not np.array_equal(render(sample_factors(3, 17, split="test"))["image"], render(f1)["image"])


def test_identity_consistency():
    fs = [sample_factors(0, i, n_identities=4) for i in range(40)]
    fs += [sample_factors(0, i, n_identities=4, split="val") for i in range(10)]
    by_id = {}
    for f in fs:
        assert 0 <= f["identity_id"] < 4
        by_id.setdefault(f["identity_id"], []).append(f["identity"])
    assert len(by_id) == 4
    for same in by_id.values():
        assert all(p == same[0] for p in same)
    firsts = [v[0] for v in by_id.values()]
    assert all(firsts[i] != firsts[j] for i in range(4) for j in range(i + 1, 4))
    # the identity depends on the seed
    one = dict(n_identities=1)
    assert sample_factors(1, 0, **one)["identity"] != sample_factors(0, 0, **one)["identity"]


def test_attribute_forcing_keeps_other_factors():
    for i in range(20):
        on = sample_factors(0, i, attributes={"glasses": True, "facial_hair": True})
        off = sample_factors(0, i, attributes={"glasses": False, "facial_hair": 0.0})
        assert on["glasses"] is not None and on["facial_hair"] is not None
        assert off["glasses"] is None and off["facial_hair"] is None
        for g in ("identity", "pose", "expression", "style"):
            assert on[g] == off[g]
        assert remove(remove(on, "glasses"), "facial_hair") == off
    # defaults give a mix; a probability of 1 forces presence
    pres = [sample_factors(0, i)["glasses"] is not None for i in range(200)]
    assert 0.3 < np.mean(pres) < 0.7
    assert all(sample_factors(0, i, attributes={"facial_hair": 1.0})["facial_hair"] for i in range(20))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="glasses"):
        sample_factors(0, 0, attributes={"hat": True})
    with pytest.raises(ValueError):
        sample_factors(0, 0, attributes={"glasses": 1.5})
    f = sample_factors(0, 0)
    for size in (31, 257, 0):
        with pytest.raises(ValueError):
            render(f, size)
    with pytest.raises(ValueError):
        SyntheticFaces(size=16, length=1)
    with pytest.raises(ValueError):
        remove(f, "hat")
    with pytest.raises(ValueError):
        swap(f, f, "hat")


def test_factor_vectors_fixed_lengths():
    lengths = None
    for i in range(30):
        f = sample_factors(0, i)
        v = factor_vectors(f)
        assert set(v) == set(GROUPS)
        cur = {k: a.shape for k, a in v.items()}
        lengths = lengths or cur
        assert cur == lengths
        for k, a in v.items():
            assert a.dtype == np.float32 and a.ndim == 1 and np.isfinite(a).all()
        for attr in CONTENT_ATTRIBUTES:
            assert (v[attr][0] == 1.0) == (f[attr] is not None)
            if f[attr] is None:
                assert not v[attr].any()
    assert lengths == {k: (n,) for k, n in FACTOR_DIMS.items()}


# ----------------------------------------------------------------------------- rendering

def test_render_outputs():
    for size in (32, 64, 97):
        r = render(sample_factors(0, 1, attributes={"glasses": True}), size)
        assert r["image"].shape == (size, size, 3) and r["image"].dtype == np.uint8
        assert r["landmarks"].shape == (N_LANDMARKS, 2) and r["landmarks"].dtype == np.float32
        assert set(r["masks"]) == set(CONTENT_ATTRIBUTES)
        for m in r["masks"].values():
            assert m.shape == (size, size) and m.dtype == np.float32
            assert m.min() >= 0.0 and m.max() <= 1.0
        assert ((r["landmarks"] >= 0) & (r["landmarks"] <= size - 1)).all()


@pytest.mark.parametrize("attr", CONTENT_ATTRIBUTES)
def test_masks_cover_exactly_the_attribute(attr):
    for size in (32, 64, 128):
        for i in range(12):
            f = sample_factors(5, i, attributes={attr: True})
            r, r0 = render(f, size), render(remove(f, attr), size)
            mask = r["masks"][attr]
            assert not r0["masks"][attr].any()
            changed = _changed(r["image"], r0["image"])
            assert not (changed & ~_dilate(mask > 0)).any()
            assert changed.sum() > 0.5 * (mask > 0.5).sum()  # the attribute is visible where masked
            if size == 64:
                assert (mask > 0).mean() > 0.01
            # the other attribute's mask is untouched by its presence status elsewhere
            other = [a for a in CONTENT_ATTRIBUTES if a != attr][0]
            if f[other] is None:
                assert not r["masks"][other].any()


def test_swap_semantics():
    a = sample_factors(1, 0, attributes={"glasses": True})
    b = sample_factors(1, 1, attributes={"glasses": True})
    a_plain = sample_factors(1, 2, attributes={"glasses": False})
    a_copy = {k: v for k, v in a.items()}
    s = swap(b, a, "glasses")
    assert a == a_copy and s["glasses"] == a["glasses"] and s["glasses"] is not a["glasses"]
    for g in ("identity", "pose", "expression", "style", "facial_hair"):
        assert s[g] == b[g]
    rs, rb = render(s), render(b)
    union = np.maximum(rs["masks"]["glasses"], rb["masks"]["glasses"]) > 0
    assert not (_changed(rs["image"], rb["image"]) & ~_dilate(union)).any()
    # glasses follow the target's eyes: the swapped mask is that of b's face, not a's
    assert (rs["masks"]["glasses"] > 0.5).sum() > 0
    np.testing.assert_array_equal(render(swap(b, a_plain, "glasses"))["image"],
                                  render(remove(b, "glasses"))["image"])
    # identity swap copies the id; several groups at once
    t = swap(b, a, ["identity", "pose"])
    assert t["identity_id"] == a["identity_id"] and t["identity"] == a["identity"] and t["pose"] == a["pose"]
    assert t["style"] == b["style"]
    assert swap(b, a, GROUPS) == a


def test_same_face_at_every_size():
    f = sample_factors(0, 4)
    lm = {s: (render(f, s)["landmarks"] + 0.5) / s for s in (32, 64, 256)}
    np.testing.assert_allclose(lm[32], lm[256], atol=1e-5)
    big = render(f, 128)["image"].astype(np.float32)
    small = render(f, 64)["image"].astype(np.float32)
    pooled = big.reshape(64, 2, 64, 2, 3).mean((1, 3))
    assert np.abs(pooled - small).mean() < 6.0


def test_landmarks_follow_pose():
    f = sample_factors(2, 3)
    size = 64
    base = render(f, size)["landmarks"]
    g = swap(f, f, "pose")
    g["pose"]["tx"] += 0.1
    g["pose"]["ty"] -= 0.05
    moved = render(g, size)["landmarks"]
    np.testing.assert_allclose(moved - base, np.broadcast_to([0.1 * size / 2, -0.05 * size / 2], base.shape),
                               atol=1e-3)
    # the picture moves too: the shifted render matches the original shifted by whole pixels
    g = swap(f, f, "pose")
    g["pose"]["tx"] += 4 * 2 / size
    shifted = render(g, size)["image"].astype(np.int16)
    orig = render(f, size)["image"].astype(np.int16)
    assert np.abs(shifted[16:48, 20:44] - orig[16:48, 16:40]).mean() < 3
    # left/right landmarks are on the expected sides of an upright face
    g["pose"]["roll"] = 0.0
    lm = render(g, size)["landmarks"]
    for left, right in FLIP_PAIRS:
        assert lm[left, 0] < lm[right, 0]


def test_pose_range_scales_pose_only():
    from data.synthetic.factors import POSE_CENTRE

    for i in range(5):
        f = sample_factors(3, i)
        assert sample_factors(3, i, pose_range=1.0) == f  # the world's own range: the same faces
        flat, half = sample_factors(3, i, pose_range=0.0), sample_factors(3, i, pose_range=0.5)
        assert flat["pose"] == pytest.approx(POSE_CENTRE)  # every face at one position, roll and scale
        assert half["pose"] == pytest.approx({k: (v + POSE_CENTRE[k]) / 2 for k, v in f["pose"].items()})
        assert {k: v for k, v in flat.items() if k != "pose"} == {k: v for k, v in f.items() if k != "pose"}
    with pytest.raises(ValueError, match="pose_range"):
        sample_factors(3, 0, pose_range=1.5)
    one, flat = SyntheticFaces(size=32, length=2, seed=3), SyntheticFaces(size=32, length=2, seed=3, pose_range=0.0)
    assert one.cache_key != flat.cache_key and flat.factors(1)["pose"] == pytest.approx(POSE_CENTRE)
    assert one.cache_key == SyntheticFaces(size=32, length=2, seed=3, pose_range=1).cache_key


def test_expression_scale_moves_brows_and_mouth_only():
    """expression_scale: the world's faces at 1; otherwise the same factor values (labels), and every landmark's
    offset from the neutral expression grows exactly in proportion (the painter's layout is linear in it)."""
    from data.synthetic.painter import _landmarks_local

    for i in range(4):
        f = sample_factors(3, i)
        assert sample_factors(3, i, expression_scale=1.0) == f
        big = sample_factors(3, i, expression_scale=2.5)
        assert big["expression"] == {**f["expression"], "amplitude": 2.5}
        assert {k: v for k, v in big.items() if k != "expression"} == {k: v for k, v in f.items() if k != "expression"}
        assert factor_vectors(big)["expression"].tolist() == factor_vectors(f)["expression"].tolist()
        neutral = {**f, "expression": {"smile": 0.0, "mouth_open": 0.0, "brow_raise": 0.0}}
        base = _landmarks_local(neutral)
        np.testing.assert_allclose(_landmarks_local(big) - base, 2.5 * (_landmarks_local(f) - base), atol=1e-12)
        # the world's faces are drawn as before the knob existed: the expression group without "amplitude"
        assert "amplitude" not in f["expression"]
    with pytest.raises(ValueError, match="expression_scale"):
        sample_factors(3, 0, expression_scale=5.0)
    one, big = SyntheticFaces(size=32, length=2, seed=3), SyntheticFaces(size=32, length=2, seed=3, expression_scale=3)
    assert one.cache_key != big.cache_key and big.factors(1)["expression"]["amplitude"] == 3.0
    assert one.cache_key == SyntheticFaces(size=32, length=2, seed=3, expression_scale=1).cache_key
    # a larger expression changes more pixels of the same face
    f, g = big.factors(0), big.factors(1)
    small = [{**h, "expression": {k: v for k, v in h["expression"].items() if k != "amplitude"}} for h in (f, g)]
    moved = lambda a, b: np.abs(render(a, 32)["image"].astype(int) - render(swap(a, b, "expression"), 32)["image"]).sum()
    assert moved(f, g) > 1.5 * moved(*small)
    # features pushed past each other: never in the world at 1, in some faces at the largest scale
    from data.synthetic.painter import expression_overlaps

    at = {s: [expression_overlaps(sample_factors(0, i, expression_scale=s)) for i in range(400)] for s in (1.0, 3.0)}
    assert not any(o["lip_past_chin"] or o["brow_on_eye"] for o in at[1.0])
    assert any(o["lip_past_chin"] for o in at[3.0]) and any(o["brow_on_eye"] for o in at[3.0])


def test_wrong_group_psnr_against_the_board_baseline():
    """wrong_group_psnr: ``identity`` wrong is copying the attribute source (the board's own baseline, computed
    independently from identity_swap_pairs); a wrong expression costs far less at the world's scale than at 3."""
    from core.config import load_config
    from data.synthetic.counterfactual import identity_swap_pairs, wrong_group_psnr

    d = load_config("configs/stylegan2_synth.yaml", ["data.size=32", "data.expression_scale=1"]).data
    pairs = identity_swap_pairs(d, 6, 32)
    assert len(pairs["gt"]) == 6  # no same-identity pair among the first six
    mse = ((pairs["attr_ref"].double() - pairs["gt"].double()) ** 2).mean()
    assert wrong_group_psnr(d, "identity", n=6, size=32) == pytest.approx(float(10 * torch.log10(4 / mse)), abs=1e-4)
    world = wrong_group_psnr(d, "expression", n=6, size=32)
    d3 = load_config("configs/stylegan2_synth.yaml", ["data.size=32", "data.expression_scale=3"]).data
    assert world > wrong_group_psnr(d3, "expression", n=6, size=32) + 3 > wrong_group_psnr(d, "pose", n=6, size=32)


def test_landmark_shift_per_factor_group():
    """landmark_shift: zero for a group that never moves landmarks (style), pixels scale with the size, and
    expression moves the landmarks less than identity in the first world (expression_scale 1: the finding of
    docs/reference.md, method 3), and exactly three times as far at the identity-swap configs' 3."""
    from core.config import load_config
    from data.synthetic.counterfactual import landmark_shift

    d = load_config("configs/stylegan2_synth.yaml", ["data.expression_scale=1"]).data  # the first world
    assert landmark_shift(d, "style", n=12, size=32) == 0.0
    expr32, expr64 = landmark_shift(d, "expression", n=12, size=32), landmark_shift(d, "expression", n=12, size=64)
    assert 0 < expr32 < landmark_shift(d, "identity", n=12, size=32)
    assert abs(expr64 / expr32 - 2) < 0.05
    # per landmark: expression moves brows and mouth, never the eyes, nose or jaw (the painter's layout)
    each = landmark_shift(d, "expression", n=12, size=32, per_landmark=True)
    assert np.mean(list(each.values())) == pytest.approx(expr32)
    assert all(each[k] == 0.0 for k in ("eye_l", "eye_r", "nose_tip", "chin", "jaw_l", "jaw_r"))
    assert all(each[k] > 0 for k in ("brow_l", "brow_r", "mouth_l", "upper_lip", "lower_lip"))
    # the identity-swap configs' world (expression_scale 3): every expression shift exactly three times larger
    d3 = load_config("configs/stylegan2_synth.yaml").data
    assert d3.expression_scale == 3
    assert landmark_shift(d3, "expression", n=12, size=32) == pytest.approx(3 * expr32, rel=1e-5)


# ----------------------------------------------------------------------------- dataset

def test_dataset_items_and_flip():
    ds = SyntheticFaces(size=32, length=6, seed=1, attributes={"glasses": True})
    assert len(ds) == 6
    it = ds[2]
    assert it["image"].shape == (3, 32, 32) and it["image"].dtype == torch.float32
    assert -1.0 <= it["image"].min() and it["image"].max() <= 1.0
    assert it["mask"].shape == (len(CONTENT_ATTRIBUTES), 32, 32)
    assert it["landmarks"].shape == (N_LANDMARKS, 2)
    assert it["identity"].dtype == torch.int64 and it["identity"].ndim == 0
    assert it["index"].item() == 2
    assert it["attrs"].tolist()[CONTENT_ATTRIBUTES.index("glasses")] == 1.0
    f = ds.factors(2)
    assert f == sample_factors(1, 2, attributes={"glasses": True})
    r = render(f, 32)
    np.testing.assert_allclose(it["image"].numpy(), r["image"].transpose(2, 0, 1) / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(it["landmarks"].numpy(), r["landmarks"])

    fl = ds[(2, True)]
    assert torch.equal(fl["image"], torch.flip(it["image"], dims=[2]))
    assert torch.equal(fl["mask"], torch.flip(it["mask"], dims=[2]))
    lm = it["landmarks"].numpy()
    for a, b in FLIP_PAIRS:
        np.testing.assert_allclose(fl["landmarks"][a, 0].item(), 31 - lm[b, 0])
        np.testing.assert_allclose(fl["landmarks"][b, 1].item(), lm[a, 1])
    # the flipped sample is the render of the mirrored scene
    rm = render(mirror(f), 32)
    np.testing.assert_allclose(fl["landmarks"].numpy(), rm["landmarks"], atol=1e-3)
    assert np.abs((fl["image"].numpy() + 1) * 127.5 - rm["image"].transpose(2, 0, 1)).max() <= 1.01

    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["identity"].shape == (4,)
    with pytest.raises(IndexError):
        ds[6]


def test_cache_roundtrip_and_corruption(tmp_path, monkeypatch):
    kw = dict(size=32, length=5, seed=7, split="test", n_identities=3, cache_dir=str(tmp_path))
    ds = SyntheticFaces(**kw)
    files = [p for p in os.listdir(tmp_path)]
    assert len(files) == 1 and files[0].endswith(".npz")
    path = tmp_path / files[0]

    real_render = synthetic_dataset.render

    def boom(*a, **k):
        raise AssertionError("should have been loaded from the cache")

    monkeypatch.setattr(synthetic_dataset, "render", boom)
    ds2 = SyntheticFaces(**kw)
    np.testing.assert_array_equal(ds.images, ds2.images)
    np.testing.assert_array_equal(ds.masks, ds2.masks)
    np.testing.assert_array_equal(ds.landmarks, ds2.landmarks)
    np.testing.assert_array_equal(ds.identities, ds2.identities)
    # different parameters -> a different cache file
    monkeypatch.setattr(synthetic_dataset, "render", real_render)
    SyntheticFaces(**{**kw, "length": 4})
    assert len(os.listdir(tmp_path)) == 2

    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    for bad in (good[: len(good) // 2], b"not a zip file", good[:-40] + bytes(40), bytes(flipped)):
        path.write_bytes(bad)
        ds3 = SyntheticFaces(**kw)
        np.testing.assert_array_equal(ds.images, ds3.images)
        ds4 = SyntheticFaces(**kw)  # the regenerated file is valid again
        np.testing.assert_array_equal(ds.images, ds4.images)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_layer_boxes_do_not_clip(monkeypatch):
    """Every layer is computed inside a bounding box; it must never cut a shape."""
    fs = [sample_factors(9, i, attributes={"glasses": True, "facial_hair": i % 2 == 0}) for i in range(40)]
    ref = [render(f, 48) for f in fs]
    monkeypatch.setattr(synthetic_painter._Canvas, "box", lambda self, *a: (slice(None), slice(None)))
    for f, r in zip(fs, ref):
        q = render(f, 48)
        assert np.abs(q["image"].astype(np.int16) - r["image"]).max() <= 1
        for a in CONTENT_ATTRIBUTES:
            np.testing.assert_allclose(q["masks"][a], r["masks"][a], atol=1e-5)

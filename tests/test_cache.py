"""The uint8 memmap cache: identical items to decoding, atomic builds, partial/stale caches never used."""
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from data.cache import (CachedImages, PathLoader, build_cache, cache_name, check_cache, fingerprint,
                        open_domain_cache, path_keys, verify_cache)
from data.folders import DatasetLayoutError, ImageDomain
from data.sampler import StepBatchSampler, images_to_float, make_stream


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        p = tmp_path / "src" / f"{i:03d}.jpg"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_cache_items_equal_decoded_items(images, tmp_path):
    ds = open_domain_cache(tmp_path / "c", "trainA", images, 24, 48, mode="build")
    assert isinstance(ds, CachedImages) and (tmp_path / "c" / "trainA_24_48.u8").stat().st_size == 12 * 3 * 24 * 24
    ref = ImageDomain(images, 24, 48)
    for item in [0, 5, (5, True), (11, False), (3, True)]:
        a, b = ds[item], ref[item]
        assert torch.equal(a["image"], b["image"]) and int(a["index"]) == int(b["index"])
    assert verify_cache(tmp_path / "c" / "trainA_24_48")
    # through the training stream, with worker processes (the memmap is reopened per worker)
    stream = make_stream(ds, 4, seed=0, name="a", rank=0, world=1, start_step=0, flip=True, workers=2)
    got = images_to_float(next(stream))  # workers hand images over as uint8
    assert got["image"].shape == (4, 3, 24, 24)
    idx, flips = zip(*StepBatchSampler(12, 4, 0, "a").batch_at(0))
    want = torch.stack([ref[(i, f)]["image"] for i, f in zip(idx, flips)])
    assert torch.equal(got["image"], want)
    del stream


def _base(tmp_path, images, size=16, crop=None):
    base = tmp_path / "c" / cache_name("trainB", size, crop)
    fp = fingerprint(path_keys(images))
    return base, fp


def test_interrupted_build_leaves_no_usable_cache(images, tmp_path):
    base, fp = _base(tmp_path, images)
    build_cache(base, PathLoader(images, 16, None), 12, 16, None, fp)
    assert check_cache(base, 12, 16, None, fp) is None

    def dies_at_7(i):
        if i == 7:
            raise KeyboardInterrupt
        return PathLoader(images, 16, None)(i)

    with pytest.raises(KeyboardInterrupt):  # a rebuild killed half way
        build_cache(base, dies_at_7, 12, 16, None, fp)
    assert not base.with_suffix(".json").exists() and not list(base.parent.glob("*.partial.*"))
    assert "no header" in check_cache(base, 12, 16, None, fp)
    with pytest.warns(UserWarning, match="no header"):
        assert open_domain_cache(tmp_path / "c", "trainB", images, 16, None, mode="auto") is None
    with pytest.raises(DatasetLayoutError, match="no header"):
        open_domain_cache(tmp_path / "c", "trainB", images, 16, None, mode="require")
    assert isinstance(open_domain_cache(tmp_path / "c", "trainB", images, 16, None, mode="build"), CachedImages)


def test_truncated_stale_or_foreign_caches_are_ignored(images, tmp_path):
    base, fp = _base(tmp_path, images)
    build_cache(base, PathLoader(images, 16, None), 12, 16, None, fp)
    data, header = base.with_name(base.name + ".u8"), base.with_name(base.name + ".json")
    assert "source list changed" in check_cache(base, 12, 16, None, fingerprint(path_keys(images[::-1])))
    assert "count" in check_cache(base, 11, 16, None, fingerprint(path_keys(images[:11])))
    assert "crop" in check_cache(base, 12, 16, 10, fp)
    raw = data.read_bytes()
    data.write_bytes(raw[:-100])
    assert "truncated or partly written" in check_cache(base, 12, 16, None, fp)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert open_domain_cache(tmp_path / "c", "trainB", images, 16, None) is None
    assert "ignoring cache" in str(w[0].message)
    data.write_bytes(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:])
    assert check_cache(base, 12, 16, None, fp) is None and not verify_cache(base)  # checksum catches bit flips
    h = json.loads(header.read_text())
    header.write_text(json.dumps({**h, "complete": False}))
    assert "not a complete" in check_cache(base, 12, 16, None, fp)
    header.write_text("{not json")
    assert "unreadable header" in check_cache(base, 12, 16, None, fp)
    with pytest.raises(ValueError, match="auto | build"):
        open_domain_cache(tmp_path / "c", "trainB", images, 16, None, mode="yes")


def test_a_cache_made_with_another_resize_filter_is_not_used(images, tmp_path):
    """The header records the filter: a bicubic cache is stale for a bilinear run (and an old header that
    recorded none is stale for both), so a run never trains on pixels resized otherwise than it asked."""
    ds = open_domain_cache(tmp_path / "c", "trainA", images, 24, 48, mode="build", resample="bicubic")
    bicubic = ds[3]["image"].clone()  # (the rebuild below rewrites the file under this memmap)
    base = tmp_path / "c" / cache_name("trainA", 24, 48)
    fp = fingerprint(path_keys(images))
    assert check_cache(base, 12, 24, 48, fp, "bicubic") is None
    assert "resample='bicubic', wanted 'bilinear'" in check_cache(base, 12, 24, 48, fp, "bilinear")
    with pytest.warns(UserWarning, match="resample"):
        assert open_domain_cache(tmp_path / "c", "trainA", images, 24, 48, resample="bilinear") is None
    rebuilt = open_domain_cache(tmp_path / "c", "trainA", images, 24, 48, mode="build", resample="bilinear")
    want = ImageDomain(images, 24, 48, "bilinear")
    assert torch.equal(rebuilt[3]["image"], want[3]["image"]) and not torch.equal(want[3]["image"], bicubic)
    header = base.with_name(base.name + ".json")
    header.write_text(json.dumps({k: v for k, v in json.loads(header.read_text()).items() if k != "resample"}))
    assert "resample=None" in check_cache(base, 12, 24, 48, fp, "bilinear")


def test_corrupt_images_abort_the_build_naming_the_file(images, tmp_path):
    images[4].write_bytes(images[4].read_bytes()[:300])  # truncated JPEG
    base, fp = _base(tmp_path, images)
    for workers in (0, 2):
        with pytest.raises(DatasetLayoutError, match="004.jpg"):
            build_cache(base, PathLoader(images, 16, None), 12, 16, None, fp, workers=workers)
        assert check_cache(base, 12, 16, None, fp) == "not built"
    images[5].write_text("not an image")
    with pytest.raises(DatasetLayoutError, match="005.jpg"):
        ImageDomain(images, 16)[5]
    with pytest.raises(DatasetLayoutError, match="empty"):
        build_cache(base, PathLoader([], 16, None), 0, 16, None, fp)


def test_to_tensor_matches_the_torch_formula():
    from data.folders import to_tensor
    v = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    assert torch.equal(to_tensor(v), torch.from_numpy(v).permute(2, 0, 1).float().div_(127.5).sub_(1.0))
    assert to_tensor(v).is_contiguous() and to_tensor(v.transpose(2, 0, 1), chw=True).is_contiguous()


def test_a_replaced_image_invalidates_the_cache(images, tmp_path):
    """Same names, same count: a different file (size or modification time) makes the cache stale."""
    import os

    base, fp = _base(tmp_path, images)
    build_cache(base, PathLoader(images, 16, None), 12, 16, None, fp)
    st = os.stat(images[3])
    Image.fromarray(np.zeros((60, 50, 3), np.uint8)).save(images[3])  # replaced in place
    os.utime(images[3], ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old modification time
    assert "source list changed" in check_cache(base, 12, 16, None, fingerprint(path_keys(images)))
    with pytest.warns(UserWarning, match="source list changed"):
        assert open_domain_cache(tmp_path / "c", "trainB", images, 16, None) is None
    rebuilt = open_domain_cache(tmp_path / "c", "trainB", images, 16, None, mode="build")
    assert torch.equal(rebuilt[3]["image"], ImageDomain(images, 16)[3]["image"])
    os.utime(images[5], (st.st_atime + 100, st.st_mtime + 100))  # touched: same bytes, new time
    assert "source list changed" in check_cache(base, 12, 16, None, fingerprint(path_keys(images)))


def test_caches_are_written_outside_the_dataset(tmp_path):
    """data.cache=build on a folders dataset writes under <folder of data.cache_dir>/<name>-<hash>/, not in
    data.root; a preprocess.py output folder keeps its own cache/; data.cache_root wins."""
    from core.config import load_config
    from data import _cache_dir, build_domains

    root = tmp_path / "faces"
    for d in ("trainA", "trainB", "testA", "testB"):
        for i in range(2):
            (root / d).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20), (i * 90, 5, 9)).save(root / d / f"{i}.png")
    before = sorted(root.rglob("*"))
    cfg = load_config("configs/celeba_glasses.yaml", [f"data.root={root}", "data.size=8", "data.crop=null",
                                                      f"data.cache_dir={tmp_path / 'c' / 'synthetic'}",
                                                      "data.cache=build"])
    assert isinstance(build_domains(cfg.data, "train")["a"], CachedImages)
    assert sorted(root.rglob("*")) == before  # nothing written into the dataset
    made = list((tmp_path / "c").glob("faces-*/trainA_8_full.u8"))
    assert len(made) == 1 and made[0].parent == _cache_dir(cfg.data, root)
    other = tmp_path / "elsewhere" / "faces"
    assert _cache_dir(cfg.data, other) != _cache_dir(cfg.data, root)  # same folder name, other dataset
    (root / "preprocess.json").write_text('{"cache": "/anywhere/cache"}')
    assert _cache_dir(cfg.data, root) == root.resolve() / "cache"
    cfg.data.cache_root = str(tmp_path / "mine")
    assert _cache_dir(cfg.data, root) == tmp_path / "mine"


def test_cache_off_never_builds(tmp_path):
    """data.cache=off (YAML's boolean false, read back as 'off') on a real-data loader writes nothing."""
    from core.config import load_config
    from data.records import FaceRecords

    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    off = load_config("configs/celeba_glasses.yaml", ["data.cache=off"]).data.cache
    ds = FaceRecords([tmp_path / "a.png"], 8).use_cache(tmp_path / "c", "x", off)
    assert off == "off" and ds.cache is None and not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match=r"data.cache must be auto \| build \| require \| off, got False"):
        FaceRecords([tmp_path / "a.png"], 8).use_cache(tmp_path / "c", "x", False)

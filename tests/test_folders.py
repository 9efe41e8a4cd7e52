"""Custom trainA/trainB/testA/testB domains: folders or .txt lists, crop/resize, clear layout errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.config import load_config
from data import build_domains
from data.folders import DatasetLayoutError, ImageDomain, list_domain


def make_image(path, w=178, h=218, value=None):
    rng = np.random.default_rng(len(str(path)))
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8) if value is None else np.full((h, w, 3), value, np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def test_folders_and_lists(tmp_path):
    for dom in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / dom).mkdir()
        for i in range(3):
            make_image(tmp_path / dom / f"{i:06d}.jpg")
    cfg = load_config("configs/celeba_glasses.yaml", [f"data.root={tmp_path}", "data.size=64"])
    doms = build_domains(cfg.data, "train")
    item = doms["a"][0]
    assert item["image"].shape == (3, 64, 64) and -1 <= item["image"].min() and item["image"].max() <= 1
    flipped = doms["a"][(0, True)]["image"]
    assert torch.equal(flipped, item["image"].flip(-1))

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "trainA.txt").write_text("\n".join(str(p) for p in sorted((tmp_path / "trainA").iterdir())))
    assert [p.name for p in list_domain(lists, "trainA")] == ["000000.jpg", "000001.jpg", "000002.jpg"]


def test_crop_then_resize_keeps_the_centre(tmp_path):
    arr = np.zeros((218, 178, 3), np.uint8)
    arr[20:198] = 200  # the centre 178x178 square is bright, the 20-px bands above/below dark
    Image.fromarray(arr).save(tmp_path / "x.png")
    img = ImageDomain([tmp_path / "x.png"], 32, crop=178)[0]["image"]
    assert img.min() > 0.5  # no dark band survived the crop


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="trainA"):
        list_domain(tmp_path, "trainA")
    (tmp_path / "trainA").mkdir()
    with pytest.raises(DatasetLayoutError, match="empty"):
        list_domain(tmp_path, "trainA")
    (tmp_path / "testA.txt").write_text("nope/missing.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"testA.txt:1: image .*missing.jpg does not exist"):
        list_domain(tmp_path, "testA")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetLayoutError, match="bad.jpg"):
        ImageDomain([tmp_path / "bad.jpg"], 32)[0]
    cfg = load_config("configs/celeba_glasses.yaml", [f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        build_domains(cfg.data, "train")


@pytest.mark.parametrize("w, h, size, crop, name", [
    (178, 218, 128, 178, "bilinear"),   # method 1: CenterCrop(178), Resize(128)
    (178, 218, 224, None, "bilinear"),  # method 4: Resize(224), CenterCrop(224)
    (181, 220, 100, 177, "bicubic"),    # odd margins: round-half-even offsets, truncated long side
    (215, 160, 67, None, "bilinear"),   # landscape
])
def test_resize_matches_torchvision_on_pil_images(tmp_path, w, h, size, crop, name):
    """The originals fed PIL images to torchvision transforms; ours gives the same pixels and its affine maps
    source pixel centres where the pixels went."""
    import torchvision.transforms as T

    from data.folders import load_image
    from data.geometry import centre_affine, centre_crop_resize

    make_image(tmp_path / "x.png", w, h)
    mode = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[name]
    steps = ([T.CenterCrop(crop)] if crop else []) + [T.Resize(size, interpolation=mode), T.CenterCrop(size)]
    with Image.open(tmp_path / "x.png") as im:
        want = np.asarray(T.Compose(steps)(im.convert("RGB")))
        got, affine = centre_crop_resize(im, size, crop, name)
    assert np.array_equal(load_image(tmp_path / "x.png", size, crop, name), want) and np.array_equal(got, want)
    assert centre_affine(w, h, size, crop) == affine
    # a one-pixel dot lands where the affine says (its brightest output pixel is within one pixel)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[h // 2 + 3, w // 2 - 5] = 255
    out = centre_crop_resize(Image.fromarray(arr), size, crop, name)[0].sum(2)
    sx, sy, ox, oy = affine
    y, x = np.unravel_index(out.argmax(), out.shape)
    assert abs(x - ((w // 2 - 5) * sx + ox)) <= 1 and abs(y - ((h // 2 + 3) * sy + oy)) <= 1


def test_unknown_resize_filter_is_a_clear_error(tmp_path):
    from data.folders import load_image

    make_image(tmp_path / "x.png")
    with pytest.raises(ValueError, match="resize filter must be one of"):
        load_image(tmp_path / "x.png", 32, None, "lanczos")

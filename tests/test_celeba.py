"""CelebA annotation parsing (checked against torchvision's CelebA), the dataset, and bad-file errors."""
import os
import shutil

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from celeba_layout import write_celeba
from core.config import load_config
from data import build_domains
from data.celeba import CELEBA_ATTRIBUTES, CelebA, find_root, read_celeba, split_domains
from data.folders import DatasetLayoutError


class TorchvisionCelebA(torchvision.datasets.CelebA):
    """torchvision's loader minus its MD5 check of the official files (our fixture has other bytes)."""

    def _check_integrity(self) -> bool:
        return os.path.isdir(os.path.join(self.root, self.base_folder, "img_align_celeba"))


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba_root")
    write_celeba(root, n=240)
    return root


def test_parsing_agrees_with_torchvision(celeba):
    table = read_celeba(celeba)
    assert table.names == list(CELEBA_ATTRIBUTES)
    for split in ("train", "valid", "test", "all"):
        tv = TorchvisionCelebA(str(celeba), split=split, target_type=["attr", "identity", "landmarks", "bbox"],
                               download=False)
        ours = CelebA(celeba, split=split, size=32)
        assert [p.rsplit("/", 1)[-1] for p in ours.paths] == list(tv.filename)
        assert torch.equal(torch.as_tensor(ours.labels["attributes"]), tv.attr)
        assert torch.equal(torch.as_tensor(ours.labels["identity"]), tv.identity[:, 0])
        assert np.array_equal(table.landmarks[ours.rows].reshape(-1, 10), tv.landmarks_align.numpy())
        assert np.array_equal(table.bbox[ours.rows], tv.bbox.numpy())
        assert [h for h in tv.attr_names if h] == table.names
        _, (attr, ident, _, _) = tv[3]
        item = ours[3]
        assert torch.equal(item["attributes"], attr) and int(item["identity"]) == int(ident)


def test_items_landmarks_follow_crop_resize_and_flip(tmp_path):
    base = write_celeba(tmp_path, n=4)
    # paint a bright dot at image 0's nose landmark, then check where it lands after crop + resize (+ flip)
    table = read_celeba(tmp_path)
    x, y = table.landmarks[0, 2].astype(int)
    arr = np.zeros((218, 178, 3), np.uint8)
    arr[y - 2:y + 3, x - 2:x + 3] = 255
    Image.fromarray(arr).save(base / "img_align_celeba" / "000001.jpg", quality=100)
    ds = CelebA(tmp_path, size=89, crop=178)  # scale 0.5
    for flip in (False, True):
        item = ds[(0, flip)]
        img = item["image"].mean(0)
        yy, xx = np.unravel_index(int(img.argmax()), img.shape)
        nose = item["landmarks"][2].numpy()
        assert abs(nose[0] - xx) <= 1.5 and abs(nose[1] - yy) <= 1.5, (flip, nose, (xx, yy))
    plain, flipped = ds[0]["landmarks"], ds[(0, True)]["landmarks"]
    assert torch.allclose(flipped[0], torch.stack([88 - plain[1, 0], plain[1, 1]]))  # eyes swap names
    cached = CelebA(tmp_path, size=89, crop=178).use_cache(tmp_path / "cache", "all", mode="build")
    assert cached.cache is not None
    for item in (0, (0, True), (3, True)):
        a, b = cached[item], ds[item]
        assert all(torch.equal(a[k], b[k]) for k in b), item


def test_first_n_and_official_splits(celeba):
    table = read_celeba(celeba)
    rows = split_domains(table, "Eyeglasses", "~Eyeglasses", "first-n", 5)
    a = np.flatnonzero(table.attrs[:, CELEBA_ATTRIBUTES.index("Eyeglasses")] == 1)
    assert list(rows["testA"]) == list(a[:5]) and list(rows["trainA"]) == list(a[5:])
    off = split_domains(table, "Eyeglasses", "~Eyeglasses", "official")
    assert set(off) == {"trainA", "valA", "testA", "trainB", "valB", "testB"}
    assert (table.partition[off["valB"]] == 1).all() and (table.partition[off["testA"]] == 2).all()
    with pytest.raises(DatasetLayoutError, match="too few"):
        split_domains(table, "Eyeglasses", "~Eyeglasses", "first-n", 10_000)


def test_celeba_domain_builder(celeba):
    cfg = load_config("configs/celeba_glasses.yaml", ["data.name=celeba", f"data.root={celeba}", "data.size=32",
                                                      "data.attribute=smile", "data.num_test=4"])
    test = build_domains(cfg.data, "test")
    assert len(test["a"]) == len(test["b"]) == 4
    assert test["a"][(0, True)]["image"].shape == (3, 32, 32)
    cfg = load_config("configs/celeba_glasses.yaml", ["data.name=celeba", f"data.root={celeba}", "data.size=32",
                                                      "data.attribute=Eyeglasse & Male"])
    with pytest.raises(DatasetLayoutError, match="did you mean 'Eyeglasses'"):
        build_domains(cfg.data, "train")


def _copy(src, dst):
    shutil.copytree(find_root(src), dst / "celeba")
    return dst / "celeba"


def _edit(path, fn):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


@pytest.mark.parametrize("case, edit, message", [
    ("count", lambda L: ["999"] + L[1:], r"list_attr_celeba.txt: line 1 declares 999 images"),
    ("value", lambda L: L[:5] + [L[5].replace(" 1", " 0", 1)] + L[6:], r"list_attr_celeba.txt:6: attribute values"),
    ("fields", lambda L: L[:4] + [L[4].rsplit(" ", 1)[0]] + L[5:], r"list_attr_celeba.txt:5: 40 fields"),
    ("text", lambda L: L[:3] + [L[3].replace("-1", "x", 1)] + L[4:], r"list_attr_celeba.txt:4: every value"),
    ("dup", lambda L: L[:3] + [L[2]] + L[4:], r"list_attr_celeba.txt:4: image 000001.jpg is listed twice"),
])
def test_bad_attribute_file(celeba, tmp_path, case, edit, message):
    base = _copy(celeba, tmp_path)
    _edit(base / "list_attr_celeba.txt", edit)
    with pytest.raises(DatasetLayoutError, match=message):
        read_celeba(tmp_path)


def test_mismatched_and_missing_files(celeba, tmp_path):
    base = _copy(celeba, tmp_path)
    _edit(base / "list_eval_partition.txt", lambda L: L[:-1])
    with pytest.raises(DatasetLayoutError, match=r"list_eval_partition.txt lacks 1 images .* e.g. 000240.jpg"):
        read_celeba(tmp_path)
    _edit(base / "list_eval_partition.txt", lambda L: L + ["000240.jpg 2", "999999.jpg 0"])
    with pytest.raises(DatasetLayoutError, match=r"list_eval_partition.txt:241: image 999999.jpg is not in"):
        read_celeba(tmp_path)
    _edit(base / "list_eval_partition.txt", lambda L: L[:-1])
    _edit(base / "list_landmarks_align_celeba.txt", lambda L: L[:7] + [L[7] + " 12"] + L[8:])
    with pytest.raises(DatasetLayoutError, match=r"list_landmarks_align_celeba.txt:8: 12 fields"):
        read_celeba(tmp_path)
    _edit(base / "list_landmarks_align_celeba.txt", lambda L: L[:7] + [L[7].rsplit(" ", 1)[0]] + L[8:])
    (base / "img_align_celeba" / "000007.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"list_attr_celeba.txt:9: image 000007.jpg not found"):
        read_celeba(tmp_path)
    (base / "list_attr_celeba.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="not an aligned CelebA folder"):
        read_celeba(tmp_path)


def test_corrupt_image_is_named(celeba, tmp_path):
    base = _copy(celeba, tmp_path)
    data = (base / "img_align_celeba" / "000002.jpg").read_bytes()
    (base / "img_align_celeba" / "000002.jpg").write_bytes(data[: len(data) // 2])
    ds = CelebA(tmp_path, size=32)
    with pytest.raises(DatasetLayoutError, match="000002.jpg"):
        ds[1]


def test_rows_in_another_order_are_matched_by_file_name(celeba, tmp_path):
    """The identity, partition, landmark and box files may list the images in another order than the
    attribute file: rows are matched by file name. Reference: torchvision on the files in their order."""
    base = _copy(celeba, tmp_path)
    rng = np.random.default_rng(1)
    for name, head in (("identity_CelebA.txt", 0), ("list_eval_partition.txt", 0),
                       ("list_landmarks_align_celeba.txt", 2), ("list_bbox_celeba.txt", 2)):
        _edit(base / name, lambda L: L[:head] + [L[head:][i] for i in rng.permutation(len(L) - head)])
    for split in ("train", "test", "all"):
        tv = TorchvisionCelebA(str(celeba), split=split, target_type=["identity", "landmarks", "bbox"],
                               download=False)
        ours = CelebA(tmp_path, split=split, size=32)
        assert [p.rsplit("/", 1)[-1] for p in ours.paths] == list(tv.filename)
        assert torch.equal(torch.as_tensor(ours.labels["identity"]), tv.identity[:, 0])
        assert np.array_equal(ours.table.landmarks[ours.rows].reshape(-1, 10), tv.landmarks_align.numpy())
        assert np.array_equal(ours.table.bbox[ours.rows], tv.bbox.numpy())
    lines = (base / "list_eval_partition.txt").read_text().splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.startswith("000005.jpg"))
    _edit(base / "list_eval_partition.txt", lambda L: L[:k] + ["000005.jpg 7"] + L[k + 1:])
    with pytest.raises(DatasetLayoutError, match=rf"list_eval_partition.txt:{k + 1}: partition must be 0, 1 or 2"):
        read_celeba(tmp_path)


def test_official_release_layout(celeba, tmp_path):
    """The Google-Drive release: Anno/ (attributes, identities, landmarks, boxes), Eval/ (partition),
    Img/img_align_celeba/ -- read exactly as the flat layout."""
    src, root = find_root(celeba), tmp_path / "CelebA"
    for folder, names in (("Anno", ("list_attr_celeba.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
                                    "list_landmarks_align_celeba.txt")), ("Eval", ("list_eval_partition.txt",))):
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(src / name, root / folder / name)
    (root / "Img").mkdir()
    (root / "Img" / "img_align_celeba").symlink_to(src / "img_align_celeba")
    (root / "README.txt").write_text("CelebA dataset\n")
    flat, official = read_celeba(celeba), read_celeba(root)
    assert official.files == flat.files and official.image_dir == root / "Img" / "img_align_celeba"
    for key in ("attrs", "partition", "identity", "landmarks", "bbox"):
        assert np.array_equal(getattr(official, key), getattr(flat, key)), key
    ours, ref = CelebA(root, "test", size=16), CelebA(celeba, "test", size=16)
    assert torch.equal(ours[3]["image"], ref[3]["image"]) and int(ours[3]["identity"]) == int(ref[3]["identity"])
    cfg = load_config("configs/celeba_glasses.yaml", ["data.name=celeba", f"data.root={tmp_path}", "data.size=16",
                                                      "data.split_rule=official"])
    with pytest.raises(DatasetLayoutError, match="not an aligned CelebA folder"):
        build_domains(cfg.data, "test")  # tmp_path holds CelebA/, not celeba/
    cfg.data.root = str(root)
    assert len(build_domains(cfg.data, "test")["a"]) == len(split_domains(flat, "Eyeglasses", "~Eyeglasses",
                                                                          "official")["testA"])

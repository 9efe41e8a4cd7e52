"""FFHQ, VGGFace2, LFW, AffectNet and VoxCeleb1 loaders on tiny fixtures in their public formats."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from data.affectnet import AffectNet
from data.ffhq import FFHQ
from data.folders import DatasetLayoutError
from data.lfw import LFWPairs, LFWPeople, read_pairs
from data.vggface2 import VGGFace2
from data.voxceleb import VoxCeleb1


def save(path, w=64, h=64, colour=(120, 60, 30), dot=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w, 3), colour, np.uint8)
    if dot is not None:
        x, y = dot
        arr[y - 1:y + 2, x - 1:x + 2] = 255
    Image.fromarray(arr).save(path, quality=100)


def brightest(img):
    m = img.mean(0)
    y, x = np.unravel_index(int(m.argmax()), m.shape)
    return x, y


# --- FFHQ ----------------------------------------------------------------------------------------
def test_ffhq_folders_json_and_split(tmp_path):
    nums = [0, 1, 59999, 60000]
    meta = {}
    for n in nums:
        save(tmp_path / "thumbnails128x128" / f"{n // 1000 * 1000:05d}" / f"{n:05d}.png", 128, 128, dot=(40, 70))
        lms = [[40 * 8 + 3.5, 70 * 8 + 3.5]] * 68  # 1024-px coordinates of the dot's centre
        meta[str(n)] = {"category": "validation" if n >= 60000 else "training",
                        "image": {"face_landmarks": lms, "pixel_size": [1024, 1024]}}
    (tmp_path / "ffhq-dataset-v2.json").write_text(json.dumps(meta))
    ds = FFHQ(tmp_path, split="train", size=64)
    assert len(ds) == 3 and ds.labels["ffhq_id"].tolist() == [0, 1, 59999]
    item = ds[(1, True)]
    x, y = brightest(item["image"])
    assert np.allclose(item["landmarks"][0].numpy(), [x + 0.25, y + 0.25], atol=1.0)
    assert len(FFHQ(tmp_path, split="validation", size=32)) == 1
    del meta["59999"]
    (tmp_path / "ffhq-dataset-v2.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetLayoutError, match="no entry 59999"):
        FFHQ(tmp_path)
    (tmp_path / "ffhq-dataset-v2.json").unlink()
    assert len(FFHQ(tmp_path, split="train")) == 3 and "landmarks" not in FFHQ(tmp_path)[0]
    save(tmp_path / "thumbnails128x128" / "00000" / "cover.png")
    with pytest.raises(DatasetLayoutError, match="cover.png"):
        FFHQ(tmp_path)


# --- VGGFace2 ------------------------------------------------------------------------------------
def make_vggface2(root, extra_level=False):
    rows_bb, rows_lm = ["NAME_ID,X,Y,W,H"], ["NAME_ID,P1X,P1Y,P2X,P2Y,P3X,P3Y,P4X,P4Y,P5X,P5Y"]
    for ident in ("n000002", "n000017"):
        for k in range(2):
            name = f"{ident}/{k:04d}_01"
            folder = root / "train" / ("imgs" if extra_level else "") / ident
            save(folder / f"{k:04d}_01.jpg", 100, 120, dot=(30, 50))
            rows_bb.append(f'"{name}",20,20,50,{60 + 80 * k}')
            rows_lm.append(f'"{name}",30,50,60,50,45,65,35,80,55,80')
    (root / "bb_landmark").mkdir(parents=True)
    (root / "bb_landmark" / "loose_bb_train.csv").write_text("\n".join(rows_bb) + "\n")
    (root / "bb_landmark" / "loose_landmark_train.csv").write_text("\n".join(rows_lm) + "\n")
    (root / "meta").mkdir()
    (root / "meta" / "identity_meta.csv").write_text(
        'Class_ID, Name, Sample_Num, Flag, Gender\nn000002, "A_B", 2, 1, f\nn000017, "C, D", 2, 1, m\n')


def test_vggface2(tmp_path):
    make_vggface2(tmp_path)
    ds = VGGFace2(tmp_path, "train", size=40, margins=(0.0, 0.0))
    assert len(ds) == 4 and ds.labels["identity"].tolist() == [2, 2, 17, 17]
    assert ds.labels["label"].tolist() == [0, 0, 1, 1] and ds.labels["male"].tolist() == [0, 0, 1, 1]
    for item, k in ((0, 0), ((0, True), 1)):  # the dot is at landmark 0 (left eye); a flip renames it 1
        it = ds[item]
        x, y = brightest(it["image"])
        assert np.allclose(it["landmarks"][k].numpy(), [x, y], atol=1.5)
        x0, y0, w, h = it["bbox"].tolist()
        assert abs(w - 40 * 50 / 60) < 1e-4 and abs(h - 40) < 1e-4 and y0 == pytest.approx(0)
    assert len(VGGFace2(tmp_path, "train", min_height=100)) == 2
    cached = VGGFace2(tmp_path, "train", size=40).use_cache(tmp_path / "cache", "vgg_train", mode="build")
    plain = VGGFace2(tmp_path, "train", size=40)
    assert cached.cache is not None and torch.equal(cached[(3, True)]["image"], plain[(3, True)]["image"])
    assert torch.equal(cached[(3, True)]["landmarks"], plain[(3, True)]["landmarks"])

    csv = tmp_path / "bb_landmark" / "loose_bb_train.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetLayoutError, match="loose_bb_train.csv has no row for 1 of 4 images, e.g. n000017/0001"):
        VGGFace2(tmp_path)
    csv.write_text("\n".join(lines[:2] + ['"n000002/0001_01",20,20,fifty,60'] + lines[3:]) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"loose_bb_train.csv:3: W must be a number"):
        VGGFace2(tmp_path)
    csv.write_text("NAME_ID,X,Y,W\n")
    with pytest.raises(DatasetLayoutError, match=r"loose_bb_train.csv:1: header lacks column\(s\) \['H'\]"):
        VGGFace2(tmp_path)


def test_vggface2_extra_imgs_level(tmp_path):
    make_vggface2(tmp_path, extra_level=True)
    assert len(VGGFace2(tmp_path, "train", size=32)) == 4
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        VGGFace2(tmp_path, "test")


# --- LFW -----------------------------------------------------------------------------------------
def make_lfw(root):
    for name, n in (("Ann_A", 2), ("Bob_B", 1), ("Cy_C", 3)):
        for i in range(1, n + 1):
            save(root / "lfw" / name / f"{name}_{i:04d}.jpg", 250, 250, colour=(10 * i, 50, 90))
    (root / "lfw" / "pairs.txt").write_text(
        "2\t2\nAnn_A\t1\t2\nCy_C\t1\t3\nAnn_A\t1\tBob_B\t1\nBob_B\t1\tCy_C\t2\n"
        "Cy_C\t2\t3\nAnn_A\t2\t1\nAnn_A\t2\tCy_C\t1\nCy_C\t3\tBob_B\t1\n")
    return root / "lfw"


def test_lfw_pairs_and_people(tmp_path):
    root = make_lfw(tmp_path)
    pairs = LFWPairs(root, size=32, crop=150)
    assert len(pairs) == 8 and pairs.same.tolist() == [1, 1, 0, 0] * 2 and pairs.fold.tolist() == [0] * 4 + [1] * 4
    item = pairs[(2, True)]
    assert item["image"].shape == item["image2"].shape == (3, 32, 32) and int(item["same"]) == 0
    assert len(pairs.records) == 6  # distinct images, decoded once each
    people = LFWPeople(root, size=32)
    assert len(people) == 6 and people.labels["identity"].tolist() == [0, 0, 1, 2, 2, 2]

    text = (root / "pairs.txt").read_text().splitlines()
    (root / "pairs.txt").write_text("\n".join(text[:-1]) + "\n")
    with pytest.raises(DatasetLayoutError, match="promises 2 x \\(2 x 2\\) = 8 pairs, the file has 7"):
        read_pairs(root / "pairs.txt")
    (root / "pairs.txt").write_text("\n".join(text[:2] + ["Ann_A\t1\tBob_B\t1"] + text[3:]) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"pairs.txt:3: expected a matched pair"):
        read_pairs(root / "pairs.txt")
    (root / "pairs.txt").write_text("\n".join(text[:1] + ["Ann_A\t1\t7"] + text[2:]) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"pairs.txt:2: image .*Ann_A_0007.jpg not found"):
        LFWPairs(root)


# --- AffectNet -----------------------------------------------------------------------------------
def test_affectnet_csv(tmp_path):
    lms = ";".join(f"{30 + k % 5}.0;{40 + k % 7}.0" for k in range(68))
    rows = []
    for k, e in enumerate([0, 1, 9, 7]):
        rel = f"{k + 1}/img{k}.jpg"
        save(tmp_path / "Manually_Annotated_Images" / rel, 90, 110, dot=(30, 40))
        rows.append(f"{rel},10,20,60,70,{lms},{e},0.{k},-0.{k}")
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    (tmp_path / "training.csv").write_text("\n".join([header] + rows) + "\n")
    (tmp_path / "validation.csv").write_text("\n".join(rows[:2]) + "\n")  # no header row
    ds = AffectNet(tmp_path, "train", size=48, margins=(0, 0))
    assert len(ds) == 3 and ds.labels["expression"].tolist() == [0, 1, 7]
    item = ds[(0, True)]
    assert item["landmarks"].shape == (68, 2) and item["valence"].dtype == torch.float32
    x, y = brightest(item["image"])
    assert np.allclose(item["landmarks"][16].numpy(), [x, y], atol=1.5)  # point 0 mirrors to 16 under flip
    assert len(AffectNet(tmp_path, "train", keep_all=True)) == 4 and len(AffectNet(tmp_path, "validation")) == 2
    (tmp_path / "Manually_Annotated_file_lists").mkdir()  # the release's place for the lists
    for name in ("training.csv", "validation.csv"):
        (tmp_path / name).rename(tmp_path / "Manually_Annotated_file_lists" / name)
    moved = AffectNet(tmp_path, "train", size=48, margins=(0, 0))
    assert moved.paths == ds.paths and torch.equal(moved[(0, True)]["image"], item["image"])
    assert len(AffectNet(tmp_path, "validation")) == 2
    for name in ("training.csv", "validation.csv"):
        (tmp_path / "Manually_Annotated_file_lists" / name).rename(tmp_path / name)

    bad = rows[1].replace(lms, lms.rsplit(";", 2)[0])
    (tmp_path / "training.csv").write_text("\n".join([header, rows[0], bad]) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"training.csv:3: facial_landmarks has 134 numbers"):
        AffectNet(tmp_path)
    (tmp_path / "training.csv").write_text("\n".join([header, rows[0].replace("img0", "gone")]) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"training.csv:2: image .*gone.jpg not found"):
        AffectNet(tmp_path)
    (tmp_path / "training.csv").write_text("\n".join([header, rows[0].replace(",0,0.0", ",happy,0.0")]) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"training.csv:2: expression must be an integer"):
        AffectNet(tmp_path)


# --- VoxCeleb1 -----------------------------------------------------------------------------------
def test_voxceleb1_lists_and_meta(tmp_path):
    frames = tmp_path / "frames" / "unzippedIntervalFaces" / "data"
    fnames = []
    for name, vid in (("A.J._Buckley", "1zcIwhmdeo4"), ("A.J._Buckley", "7w0IBEWc9Qw"), ("Aaron_Tveit", "5r0dWxy17C8")):
        for f in range(4):
            fn = f"{name}/1.6/{vid}/1/{f + 1:07d}"
            save(frames / f"{fn}.jpg", 80, 80)
            fnames.append(fn)
    uid = lambda fn: "id10001" if fn.startswith("A.J.") else "id10003"  # noqa: E731
    (tmp_path / "dev.csv").write_text("fname,uid\n" + "".join(f"{fn},{uid(fn)}\n" for fn in fnames))
    ds = VoxCeleb1(tmp_path, "dev", size=32, frame_step=2)
    assert len(ds) == 6 and sorted(set(ds.labels["identity"].tolist())) == [10001, 10003]
    assert ds.labels["video"].tolist() == [0, 0, 2, 2, 1, 1] and ds.video_names[1] == "5r0dWxy17C8"
    assert len(VoxCeleb1(tmp_path, "dev", max_frames=1)) == 3

    (tmp_path / "dev.csv").unlink()
    (tmp_path / "vox1_meta.csv").write_text(
        "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\nid10001\tA.J._Buckley\tm\tIreland\tdev\n"
        "id10003\tAaron_Tveit\tm\tUSA\ttest\n")
    assert len(VoxCeleb1(tmp_path, "dev")) == 8 and len(VoxCeleb1(tmp_path, "test")) == 4
    (tmp_path / "dev.csv").write_text("fname,uid\n" + f"{fnames[0]},10001\n")
    with pytest.raises(DatasetLayoutError, match=r"dev.csv:2: expected fname"):
        VoxCeleb1(tmp_path, "dev")
    (tmp_path / "dev.csv").write_text("fname,uid\n" + f"{fnames[0]}x,id10001\n")
    with pytest.raises(DatasetLayoutError, match=r"dev.csv:2: frame .* not found"):
        VoxCeleb1(tmp_path, "dev")


@pytest.mark.parametrize("layout", ["download", "download-inner", "torchvision"])
def test_lfw_release_layouts(tmp_path, layout):
    """The download (lfw/ with pairs.txt beside it; root = either folder) and torchvision's lfw-py/."""
    import shutil

    inner = make_lfw(tmp_path / "src")
    base = tmp_path / "x" / "lfw-py" if layout == "torchvision" else tmp_path / "x"
    images = base / ("lfw-deepfunneled" if layout == "torchvision" else "lfw")
    shutil.copytree(inner, images)
    (images / "pairs.txt").rename(base / "pairs.txt")
    root = images if layout == "download-inner" else tmp_path / "x"
    ref, got = LFWPairs(inner, size=16), LFWPairs(root, size=16)
    assert got.same.tolist() == ref.same.tolist() and got.fold.tolist() == ref.fold.tolist()
    assert torch.equal(got[5]["image2"], ref[5]["image2"])
    assert LFWPeople(root, size=16).labels["identity"].tolist() == [0, 0, 1, 2, 2, 2]
    (base / "pairs.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="LFW pairs file not found"):
        LFWPairs(root)

"""Aligned CelebA in its public layouts, its annotation files, and attribute-selected A/B domains.

Layout (``root`` may also be the folder above it, torchvision's ``root/celeba/``; the official release's
folders work too: ``Anno/`` holds the attribute, identity, landmark and box files, ``Eval/`` the partition
file and ``Img/`` the image folder ``img_align_celeba/``)::

    root/img_align_celeba/000001.jpg ...      178x218 aligned JPEGs
    root/list_attr_celeba.txt                 count, 40 names, then "file v1 .. v40" with v in {-1, 1}
    root/list_eval_partition.txt              "file p", p = 0 train / 1 valid / 2 test   (optional)
    root/identity_CelebA.txt                  "file identity"                              (optional)
    root/list_landmarks_align_celeba.txt      count, 10 names, then "file x1 y1 .. x5 y5"  (optional)
    root/list_bbox_celeba.txt                 count, "image_id x_1 y_1 width height", rows (optional;
                                              boxes of the unaligned images, kept for completeness)

Tokens are separated by any run of spaces. Every file must list the same images as the attribute file
(checked by name, errors name the file and line), in any order: rows are matched by file name. Landmarks
are in the 178x218 aligned frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from data import attributes
from data.errors import DatasetLayoutError
from data.geometry import FLIP_5
from data.records import FaceRecords
from data.tables import parse_int, read_lines, require_file, where

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")
FILES = {
    "attr": "list_attr_celeba.txt", "partition": "list_eval_partition.txt", "identity": "identity_CelebA.txt",
    "landmarks": "list_landmarks_align_celeba.txt", "bbox": "list_bbox_celeba.txt",
}
IMAGES = "img_align_celeba"
PARTITIONS = {"train": 0, "valid": 1, "test": 2}
OFFICIAL_FOLDERS = {"attr": "Anno", "identity": "Anno", "landmarks": "Anno", "bbox": "Anno", "partition": "Eval",
                    "images": "Img"}


def locate(root: Path, key: str) -> Path:
    """Path of annotation file ``key`` (a key of ``FILES``) or of the image folder (``images``) in ``root``:
    ``root/<name>``, else the official release's ``root/{Anno,Eval,Img}/<name>`` if that exists."""
    name = IMAGES if key == "images" else FILES[key]
    flat, official = root / name, root / OFFICIAL_FOLDERS[key] / name
    return official if not flat.exists() and official.exists() else flat


def find_root(root: str | Path) -> Path:
    """The CelebA folder (``root`` or ``root/celeba``): it holds ``list_attr_celeba.txt`` and
    ``img_align_celeba/``, directly or in the official ``Anno/`` and ``Img/``."""
    root = Path(root)
    for cand in (root, root / "celeba"):
        if locate(cand, "attr").is_file() and locate(cand, "images").is_dir():
            return cand
    if not root.is_dir():
        raise DatasetLayoutError(f"CelebA folder {root} does not exist")
    have = sorted(p.name for p in root.iterdir())[:12]
    raise DatasetLayoutError(f"{root} is not an aligned CelebA folder: expected {IMAGES}/ and {FILES['attr']} "
                             f"(in it, in {root / 'celeba'}, or in the official Img/ and Anno/); found {have}")


def read_table(path: Path, header: bool) -> tuple[list[str] | None, list[str], np.ndarray, list[int]]:
    """``(column names, file names, int64 values (N, K), line numbers)`` of one CelebA annotation file.

    With ``header`` the file starts with the image count and a line of column names (a leading
    ``image_id`` column name is dropped); the count must match the rows.
    """
    lines = read_lines(path)
    if not lines:
        raise DatasetLayoutError(f"{path}: empty file")
    names, declared = None, None
    if header:
        if len(lines) < 2:
            raise DatasetLayoutError(f"{path}: expected an image count and a header line")
        declared = parse_int(lines[0][1], path, lines[0][0], "the first line (image count)")
        names = lines[1][1].split()
        if names and names[0] == "image_id":
            names = names[1:]
        lines = lines[2:]
    width = len(names) if names is not None else (len(lines[0][1].split()) - 1 if lines else 0)
    files, rows, numbers = [], [], []
    for n, text in lines:
        tok = text.split()
        if len(tok) != width + 1:
            raise DatasetLayoutError(f"{where(path, n)}: {len(tok)} fields, expected {width + 1} "
                                     f"(file name + {width} values)")
        files.append(tok[0])
        rows.append(tok[1:])
        numbers.append(n)
    if declared is not None and declared != len(files):
        raise DatasetLayoutError(f"{path}: line 1 declares {declared} images but the file has {len(files)} rows")
    try:
        values = np.array(rows, dtype=np.int64).reshape(len(rows), width)
    except ValueError:
        for n, r in zip(numbers, rows):
            for t in r:
                parse_int(t, path, n, "every value")
        raise
    dup = len(set(files)) != len(files)
    if dup:
        seen = set()
        for n, f in zip(numbers, files):
            if f in seen:
                raise DatasetLayoutError(f"{where(path, n)}: image {f} is listed twice")
            seen.add(f)
    return names, files, values, numbers


def _align(path: Path, files: list[str], numbers: list[int], values: np.ndarray, ref_files: list[str],
           ref_path: Path) -> tuple[np.ndarray, list[int]]:
    """``values`` and their line numbers reordered by file name to ``ref_files``; an error naming the first
    image one file lacks or lists in addition."""
    if files == ref_files:
        return values, numbers
    pos = {f: i for i, f in enumerate(files)}
    missing = [f for f in ref_files if f not in pos]
    if missing:
        raise DatasetLayoutError(f"{path} lacks {len(missing)} images listed in {ref_path}, e.g. {missing[0]} "
                                 f"({len(files)} vs {len(ref_files)} rows)")
    if len(files) != len(ref_files):
        ref = set(ref_files)
        f, n = next((f, n) for f, n in zip(files, numbers) if f not in ref)
        raise DatasetLayoutError(f"{where(path, n)}: image {f} is not in {ref_path} "
                                 f"({len(files)} vs {len(ref_files)} rows)")
    order = np.array([pos[f] for f in ref_files], dtype=np.int64)
    return values[order], [numbers[i] for i in order]


@dataclass
class CelebATable:
    """All annotations of one CelebA folder, rows in attribute-file order."""

    root: Path
    names: list[str]
    files: list[str]
    attrs: np.ndarray                 # int8 (N, 40) in {-1, 1}
    lines: list[int]                  # line of each row in list_attr_celeba.txt
    partition: np.ndarray | None = None   # int8 (N,) 0/1/2
    identity: np.ndarray | None = None    # int64 (N,)
    landmarks: np.ndarray | None = None   # float32 (N, 5, 2)
    bbox: np.ndarray | None = None        # int64 (N, 4) x, y, w, h (unaligned images)
    sources: dict = field(default_factory=dict)

    @property
    def image_dir(self) -> Path:
        return locate(self.root, "images")

    def paths(self, idx) -> list[Path]:
        folder = self.image_dir
        return [folder / self.files[i] for i in idx]


def read_celeba(root: str | Path, check_images: bool = True) -> CelebATable:
    """Parse every annotation file present; validate values, counts and that listed images exist."""
    root = find_root(root)
    attr_path = require_file(locate(root, "attr"), "CelebA attribute file")
    names, files, values, numbers = read_table(attr_path, header=True)
    if len(set(names)) != len(names):
        raise DatasetLayoutError(f"{where(attr_path, 2)}: repeated attribute names")
    bad = np.flatnonzero(~np.isin(values, (-1, 1)).all(axis=1))
    if len(bad):
        i = bad[0]
        raise DatasetLayoutError(f"{where(attr_path, numbers[i])}: attribute values must be -1 or 1, "
                                 f"got {sorted(set(values[i].tolist()) - {-1, 1})}")
    t = CelebATable(root, names, files, values.astype(np.int8), numbers, sources={"attr": attr_path})
    for key, hdr in (("partition", False), ("identity", False), ("landmarks", True), ("bbox", True)):
        path = locate(root, key)
        if not path.is_file():
            continue
        cols, f2, v2, n2 = read_table(path, header=hdr)
        expected = {"partition": 1, "identity": 1, "landmarks": 10, "bbox": 4}[key]
        if v2.shape[1] != expected:
            raise DatasetLayoutError(f"{path}: {v2.shape[1]} values per row, expected {expected}")
        v2, n2 = _align(path, f2, n2, v2, files, attr_path)
        if key == "partition":
            bad = np.flatnonzero(~np.isin(v2[:, 0], (0, 1, 2)))
            if len(bad):
                raise DatasetLayoutError(f"{where(path, n2[bad[0]])}: partition must be 0, 1 or 2")
            t.partition = v2[:, 0].astype(np.int8)
        elif key == "identity":
            t.identity = v2[:, 0]
        elif key == "landmarks":
            t.landmarks = v2.reshape(-1, 5, 2).astype(np.float32)
        else:
            t.bbox = v2
        t.sources[key] = path
    if check_images:
        present = {e.name for e in os.scandir(t.image_dir)}
        missing = [(f, n) for f, n in zip(files, numbers) if f not in present]
        if missing:
            f, n = missing[0]
            raise DatasetLayoutError(f"{where(attr_path, n)}: image {f} not found in {t.image_dir} "
                                     f"({len(missing)} of {len(files)} listed images are missing)")
    return t


@lru_cache(maxsize=4)
def _cached_table(root: str) -> CelebATable:
    return read_celeba(root)


def split_domains(t: CelebATable, rule_a: str, rule_b: str, split: str = "first-n",
                  num_test: int = 64) -> dict[str, np.ndarray]:
    """Row indices of ``trainA/trainB/testA/testB`` (and ``valA/valB`` for the official split).

    ``first-n``: the first ``num_test`` images of each domain in file order are test, the rest train (the
    originals' rule). ``official``: ``list_eval_partition.txt`` (0 train, 1 valid, 2 test).
    """
    a, b = attributes.select(t.attrs, t.names, rule_a, rule_b, t.files)
    out = {}
    for dom, m in (("A", a), ("B", b)):
        idx = np.flatnonzero(m)
        if split == "first-n":
            if not isinstance(num_test, int) or num_test < 1:
                raise DatasetLayoutError(f"num_test must be a positive integer, got {num_test!r}")
            if len(idx) <= num_test:
                raise DatasetLayoutError(f"domain {dom} has {len(idx)} images: too few to hold out {num_test} "
                                         "test images and keep any for training")
            out[f"train{dom}"], out[f"test{dom}"] = idx[num_test:], idx[:num_test]
        elif split == "official":
            if t.partition is None:
                raise DatasetLayoutError(f"split 'official' needs {locate(t.root, 'partition')}")
            for name, p in (("train", 0), ("val", 1), ("test", 2)):
                out[f"{name}{dom}"] = idx[t.partition[idx] == p]
            for name in ("train", "test"):
                if not len(out[f"{name}{dom}"]):
                    raise DatasetLayoutError(f"domain {dom} has no images in the official {name} partition")
        else:
            raise DatasetLayoutError(f"split must be 'first-n' or 'official', got {split!r}")
    return out


class CelebA(FaceRecords):
    """Aligned CelebA images with their labels.

    Items: ``image`` (3, size, size) in [-1, 1], ``index``, ``attributes`` (int64 0/1 per column, like
    torchvision), and where the files exist ``identity``, ``partition`` and ``landmarks`` (5, 2) in output
    pixels (flipped with the image). ``split`` is all | train | valid | test (official partition);
    ``indices`` (rows of the attribute file) overrides it. ``use_cache`` serves pixels from a cache.
    """

    def __init__(self, root, split: str = "all", size: int = 128, crop: int | None = 178, indices=None,
                 resample: str = "bicubic"):
        t = _cached_table(str(find_root(root).resolve()))
        if indices is None:
            if split == "all":
                indices = np.arange(len(t.files))
            elif split in PARTITIONS:
                if t.partition is None:
                    raise DatasetLayoutError(f"split {split!r} needs {locate(t.root, 'partition')}")
                indices = np.flatnonzero(t.partition == PARTITIONS[split])
            else:
                raise ValueError(f"split must be one of {['all', *PARTITIONS]}, got {split!r}")
        rows = np.asarray(indices, dtype=np.int64)
        labels = {"attributes": (t.attrs[rows] > 0).astype(np.int64)}
        if t.identity is not None:
            labels["identity"] = t.identity[rows]
        if t.partition is not None:
            labels["partition"] = t.partition[rows].astype(np.int64)
        super().__init__(t.paths(rows), size, crop, labels=labels, flip_perm=FLIP_5,
                         landmarks=None if t.landmarks is None else t.landmarks[rows], resample=resample)
        self.table, self.rows = t, rows

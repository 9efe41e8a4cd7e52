"""FFHQ: aligned face image folders, optionally with the official ``ffhq-dataset-v2.json`` metadata.

Layout::

    root/images1024x1024/00000/00000.png ...   (or thumbnails128x128/, or any folder of images,
                                                 e.g. a resized flat copy root/00000.png ...)
    root/ffhq-dataset-v2.json                  optional: {"0": {"category": "training" | "validation",
                                                 "image": {"face_landmarks": [[x, y] * 68], "pixel_size":
                                                 [1024, 1024], ...}, ...}, ...}

The image number is the file stem (``00042.png`` -> 42). The official split is the JSON's ``category``;
without the JSON, numbers below 60,000 are training and the rest validation (the release's rule).
Landmarks (68 points, dlib order) are given for the 1024 px images and are rescaled to the files' size,
assumed uniform within the folder (the first image's size is read).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from data.folders import IMAGE_EXTENSIONS, DatasetLayoutError, image_size
from data.geometry import FLIP_68
from data.records import FaceRecords

OFFICIAL_FOLDERS = ("images1024x1024", "thumbnails128x128")
N_TRAIN = 60000


def list_ffhq(root: Path) -> tuple[Path, list[Path], np.ndarray]:
    """``(image folder, paths sorted by number, numbers)``."""
    folder = next((root / f for f in OFFICIAL_FOLDERS if (root / f).is_dir()), root)
    if not folder.is_dir():
        raise DatasetLayoutError(f"FFHQ folder {folder} does not exist")
    paths = sorted((p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda p: (p.stem.isdigit() and int(p.stem), str(p)))
    if not paths:
        raise DatasetLayoutError(f"no FFHQ images under {folder} (expected e.g. {folder}/00000/00000.png)")
    bad = [p for p in paths if not p.stem.isdigit()]
    if bad:
        raise DatasetLayoutError(f"FFHQ image names must be numbers (00000.png), got {bad[0]}")
    numbers = np.array([int(p.stem) for p in paths], dtype=np.int64)
    dup = np.flatnonzero(np.diff(numbers) == 0)
    if len(dup):
        raise DatasetLayoutError(f"FFHQ image {numbers[dup[0]]} appears twice: {paths[dup[0]]}, {paths[dup[0] + 1]}")
    return folder, paths, numbers


class FFHQ(FaceRecords):
    """FFHQ images; items add ``ffhq_id`` and, with the JSON, ``landmarks`` (68, 2) in output pixels.

    ``split``: all | train | validation. ``crop``: centre crop in px before resizing (none by default).
    """

    def __init__(self, root, split: str = "all", size: int = 256, crop: int | None = None,
                 metadata: str | Path | None = None):
        root = Path(root)
        folder, paths, numbers = list_ffhq(root)
        meta_path = Path(metadata) if metadata else root / "ffhq-dataset-v2.json"
        landmarks, category = None, numbers >= N_TRAIN
        if metadata and not meta_path.is_file():
            raise DatasetLayoutError(f"FFHQ metadata file not found: {meta_path}")
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError as e:
                raise DatasetLayoutError(f"{meta_path}: invalid JSON ({e})") from None
            width = image_size(paths[0])[0]
            lms, cat = [], []
            for n, p in zip(numbers, paths):
                entry = meta.get(str(int(n)))
                if entry is None:
                    raise DatasetLayoutError(f"{meta_path} has no entry {int(n)} for image {p}")
                try:
                    pts = np.asarray(entry["image"]["face_landmarks"], dtype=np.float32)
                    full = float(entry["image"].get("pixel_size", [1024])[0])
                    cat.append(entry["category"] == "validation")
                except (KeyError, TypeError, ValueError) as e:
                    raise DatasetLayoutError(f"{meta_path}: entry {int(n)} lacks image.face_landmarks / "
                                             f"category ({e})") from None
                if pts.shape != (68, 2):
                    raise DatasetLayoutError(f"{meta_path}: entry {int(n)} has landmarks of shape {pts.shape}, "
                                             "expected (68, 2)")
                lms.append((pts + 0.5) * (width / full) - 0.5)
            landmarks, category = np.stack(lms), np.array(cat)
        keep = {"all": np.ones(len(paths), bool), "train": ~category, "validation": category}.get(split)
        if keep is None:
            raise ValueError(f"split must be all | train | validation, got {split!r}")
        idx = np.flatnonzero(keep)
        super().__init__([paths[i] for i in idx], size, crop, labels={"ffhq_id": numbers[idx]},
                         landmarks=None if landmarks is None else landmarks[idx], flip_perm=FLIP_68)
        self.folder = folder

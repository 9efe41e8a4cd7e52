"""AffectNet (manually annotated part): ``training.csv`` / ``validation.csv`` and the image folder.

Layout::

    root/training.csv, root/validation.csv     columns subDirectory_filePath, face_x, face_y, face_width,
                                                face_height, facial_landmarks ("x1;y1;...;x68;y68"),
                                                expression, valence, arousal (the release keeps them in
                                                root/Manually_Annotated_file_lists/, also accepted)
    root/Manually_Annotated_Images/<subDirectory_filePath>   (MAD's name cropped_Annotated/ works too)

Assumptions: the header row is optional (some copies of validation.csv lack it; then the columns are in
the order above); expressions 0-7 are Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt and
8-10 (None, Uncertain, Non-Face) are dropped unless ``keep_all``; rows with a non-positive face box are
dropped (the release has at least one such row). Crop: a square around the face box with its top moved
down by ``margins[0] * h`` and its bottom by ``margins[1] * h`` (MAD's AffectNet rule 0.05 / 0.25).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from data.errors import DatasetLayoutError
from data.geometry import FLIP_68, square_box
from data.records import FaceRecords
from data.tables import parse_float, parse_int, read_csv_rows, require_file, where

COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")
EXPRESSIONS = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
IMAGE_FOLDERS = ("Manually_Annotated_Images", "cropped_Annotated")
LIST_FOLDER = "Manually_Annotated_file_lists"


def parse_landmarks(text: str, path, line: int) -> np.ndarray:
    vals = [v for v in text.replace(",", ";").split(";") if v.strip()]
    if len(vals) != 136:
        raise DatasetLayoutError(f"{where(path, line)}: facial_landmarks has {len(vals)} numbers, expected 136")
    return np.array([parse_float(v, path, line, "a landmark coordinate") for v in vals], np.float32).reshape(68, 2)


class AffectNet(FaceRecords):
    """Items: ``image``, ``index``, ``expression`` (int64), ``valence``, ``arousal`` (float32),
    ``landmarks`` (68, 2) and ``bbox`` in output pixels. ``split``: train | validation."""

    def __init__(self, root, split: str = "train", size: int = 128, margins: tuple[float, float] = (0.05, 0.25),
                 keep_all: bool = False, check_images: bool = True):
        root = Path(root)
        name = {"train": "training.csv", "validation": "validation.csv"}.get(split)
        if name is None:
            raise ValueError(f"split must be train | validation, got {split!r}")
        listed = root / LIST_FOLDER / name
        csv_path = require_file(listed if not (root / name).is_file() and listed.is_file() else root / name,
                                "AffectNet annotation file")
        folder = next((root / f for f in IMAGE_FOLDERS if (root / f).is_dir()), None)
        if folder is None:
            raise DatasetLayoutError(f"AffectNet images not found: expected {root}/{IMAGE_FOLDERS[0]}/")
        paths, boxes, bbox, lms, expr, va, dropped = [], [], [], [], [], [], 0
        for n, r in read_csv_rows(csv_path, COLUMNS, optional_header=True):
            e = parse_int(r["expression"], csv_path, n, "expression")
            if e < 0 or e > 10:
                raise DatasetLayoutError(f"{where(csv_path, n)}: expression must be 0..10, got {e}")
            x, y, w, h = (parse_float(r[c], csv_path, n, c) for c in COLUMNS[1:5])
            if (e >= 8 and not keep_all) or w <= 0 or h <= 0:
                dropped += w <= 0 or h <= 0
                continue
            p = folder / r["subDirectory_filePath"]
            if check_images and not p.is_file():
                raise DatasetLayoutError(f"{where(csv_path, n)}: image {p} not found")
            paths.append(p)
            bbox.append((x, y, w, h))
            boxes.append(square_box(x, y, w, h, top=margins[0], bottom=margins[1]))
            lms.append(parse_landmarks(r["facial_landmarks"], csv_path, n))
            expr.append(e)
            va.append(tuple(parse_float(r[c], csv_path, n, c) for c in ("valence", "arousal")))
        if dropped:
            warnings.warn(f"{csv_path}: dropped {dropped} rows with an empty face box", stacklevel=2)
        if not paths:
            raise DatasetLayoutError(f"{csv_path}: no usable rows")
        va = np.array(va, dtype=np.float32)
        super().__init__(paths, size, None, boxes=boxes, landmarks=np.stack(lms), bbox=bbox, flip_perm=FLIP_68,
                         labels={"expression": np.array(expr, np.int64), "valence": va[:, 0], "arousal": va[:, 1]})

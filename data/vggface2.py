"""VGGFace2 in its public layout: identity folders plus the loose bounding-box / landmark CSVs.

Layout (``split`` = train | test)::

    root/<split>/n000002/0001_01.jpg ...           identity folders ("n" + 6-digit class id); MAD's copy
                                                   with an extra level, root/<split>/imgs/n000002/..., works too
    root/bb_landmark/loose_bb_<split>.csv          NAME_ID,X,Y,W,H            (NAME_ID = n000002/0001_01)
    root/bb_landmark/loose_landmark_<split>.csv    NAME_ID,P1X,P1Y,...,P5X,P5Y (eyes, nose, mouth corners)
    root/meta/identity_meta.csv                    Class_ID, Name, Sample_Num, Flag, Gender   (optional;
                                                   also looked for at root/identity_meta.csv)

Images are the folder contents (sorted). If a CSV exists it must have a row for every image (extra rows,
e.g. for images not extracted, are ignored), and the two CSVs must list the same images.
Crop: a square around the loose box, its top moved down by ``margins[0] * H`` and its bottom by
``margins[1] * H`` (MAD's VGGFace2 rule 0.05 / 0.10 by default), side = the new height; without the box
CSV, the folder transform (centre crop ``crop``, resize).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.folders import IMAGE_EXTENSIONS, DatasetLayoutError
from data.geometry import FLIP_5, square_box
from data.records import FaceRecords
from data.tables import parse_float, read_csv_rows, where

BOX_COLUMNS = ("NAME_ID", "X", "Y", "W", "H")
LANDMARK_COLUMNS = ("NAME_ID",) + tuple(f"P{k}{a}" for k in range(1, 6) for a in "XY")


def _read_named_rows(path: Path, columns: tuple[str, ...]) -> dict[str, tuple[int, np.ndarray]]:
    out = {}
    for n, row in read_csv_rows(path, columns):
        name = row["NAME_ID"]
        if name in out:
            raise DatasetLayoutError(f"{where(path, n)}: {name} is listed twice")
        out[name] = (n, np.array([parse_float(row[c], path, n, c) for c in columns[1:]], dtype=np.float32))
    return out


def read_identity_meta(path: Path) -> dict[str, dict]:
    """``Class_ID -> {"name", "flag", "gender"}`` from ``identity_meta.csv`` (", "-separated, quoted names)."""
    rows = read_csv_rows(path, ("Class_ID", "Name", "Sample_Num", "Flag", "Gender"))
    return {r["Class_ID"]: {"name": r["Name"], "flag": r["Flag"], "gender": r["Gender"].lower(), "line": n}
            for n, r in rows}


class VGGFace2(FaceRecords):
    """Items: ``image``, ``index``, ``identity`` (class id, n000002 -> 2), ``label`` (0..K-1 over this split's
    identities), ``landmarks`` (5, 2) and ``bbox`` in output pixels where the CSVs exist, ``male`` (1/0, -1
    unknown) where identity_meta.csv exists. ``min_height`` drops boxes not taller than it (MAD: 100)."""

    def __init__(self, root, split: str = "train", size: int = 128, crop: int | None = None,
                 margins: tuple[float, float] = (0.05, 0.10), min_height: float = 0):
        root = Path(root)
        if split not in ("train", "test"):
            raise ValueError(f"split must be train | test, got {split!r}")
        folder = root / split
        if (folder / "imgs").is_dir():
            folder = folder / "imgs"
        if not folder.is_dir():
            raise DatasetLayoutError(f"VGGFace2 image folder {folder} does not exist")
        names, files = [], {}
        for ident in sorted(e.name for e in os.scandir(folder) if e.is_dir()):
            if not (ident.startswith("n") and ident[1:].isdigit()):
                raise DatasetLayoutError(f"{folder / ident}: identity folders are named n<class id>, e.g. n000002")
            for f in sorted(os.listdir(folder / ident)):
                if Path(f).suffix.lower() in IMAGE_EXTENSIONS:
                    names.append(f"{ident}/{Path(f).stem}")
                    files[names[-1]] = f"{ident}/{f}"
        if not names:
            raise DatasetLayoutError(f"no images in {folder}/n*/")
        ids = np.array([int(n.split("/")[0][1:]) for n in names], dtype=np.int64)
        labels = {"identity": ids, "label": np.unique(ids, return_inverse=True)[1].astype(np.int64)}

        boxes = bbox = landmarks = None
        csv_dir = root / "bb_landmark"
        bb_path, lm_path = csv_dir / f"loose_bb_{split}.csv", csv_dir / f"loose_landmark_{split}.csv"
        tables = {}
        for key, path, cols in (("bb", bb_path, BOX_COLUMNS), ("lm", lm_path, LANDMARK_COLUMNS)):
            if path.is_file():
                tables[key] = (path, _read_named_rows(path, cols))
                missing = [n for n in names if n not in tables[key][1]]
                if missing:
                    raise DatasetLayoutError(f"{path} has no row for {len(missing)} of {len(names)} images, "
                                             f"e.g. {missing[0]}")
        if len(tables) == 2 and tables["bb"][1].keys() != tables["lm"][1].keys():
            raise DatasetLayoutError(f"{bb_path} ({len(tables['bb'][1])} rows) and {lm_path} "
                                     f"({len(tables['lm'][1])} rows) list different images")
        keep = np.ones(len(names), bool)
        if "bb" in tables:
            bbox = np.stack([tables["bb"][1][n][1] for n in names])
            bad = np.flatnonzero((bbox[:, 2] <= 0) | (bbox[:, 3] <= 0))
            if len(bad):
                line = tables["bb"][1][names[bad[0]]][0]
                raise DatasetLayoutError(f"{where(bb_path, line)}: box of {names[bad[0]]} has no area")
            keep &= bbox[:, 3] > min_height
            boxes = np.array([square_box(*b, top=margins[0], bottom=margins[1]) for b in bbox])
        if "lm" in tables:
            landmarks = np.stack([tables["lm"][1][n][1] for n in names]).reshape(-1, 5, 2)

        meta_path = next((p for p in (root / "meta" / "identity_meta.csv", root / "identity_meta.csv")
                          if p.is_file()), None)
        if meta_path is not None:
            meta = read_identity_meta(meta_path)
            labels["male"] = np.array([{"m": 1, "f": 0}.get(meta.get(n.split("/")[0], {}).get("gender"), -1)
                                       for n in names], dtype=np.int64)
        idx = np.flatnonzero(keep)
        if not len(idx):
            raise DatasetLayoutError(f"VGGFace2 {split}: no box taller than min_height={min_height}")
        pick = (lambda a: None if a is None else a[idx])
        super().__init__([folder / files[names[i]] for i in idx], size, crop, boxes=pick(boxes),
                         landmarks=pick(landmarks), bbox=pick(bbox), flip_perm=FLIP_5,
                         labels={k: v[idx] for k, v in labels.items()})
        self.names = [names[i] for i in idx]

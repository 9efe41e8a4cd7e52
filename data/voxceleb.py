"""VoxCeleb1 face frames (the "unzippedIntervalFaces" release), with identity and video labels.

Layout (``split`` = dev | test)::

    root/frames/unzippedIntervalFaces/data/<Name>/1.6/<video>/<track>/<frame>.jpg
         (root/unzippedIntervalFaces/data/... also accepted)
    root/<split>.csv       MAD's frame list: header with columns fname, uid; fname = <Name>/1.6/<video>/<track>/<frame>
                           (no extension), uid = id10001                                   -- used if present
    root/vox1_meta.csv     official metadata, tab-separated: VoxCeleb1 ID, VGGFace1 ID (= <Name>), Gender,
                           Nationality, Set (dev | test)                                 -- used otherwise

Identity = the number of the VoxCeleb1 ID (id10001 -> 10001), video = the YouTube id (the third path
component). MAD's landmark file (``dev.lms.pkl``, a pickled pandas table) is not read. ``frame_step`` /
``max_frames`` subsample each video's frames in order (MAD used 3 and 200).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.errors import DatasetLayoutError
from data.records import FaceRecords
from data.tables import read_csv_rows, read_lines, where

FRAME_DIRS = ("frames/unzippedIntervalFaces/data", "unzippedIntervalFaces/data")
META_COLUMNS = ("VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set")


def read_meta(path: Path) -> dict[str, tuple[str, str]]:
    """``Name -> (VoxCeleb1 ID, Set)`` from ``vox1_meta.csv``."""
    lines = read_lines(path)
    head = [c.strip() for c in lines[0][1].split("\t")] if lines else []
    if head[:5] != list(META_COLUMNS):
        raise DatasetLayoutError(f"{where(path, 1)}: expected tab-separated header {list(META_COLUMNS)}")
    out = {}
    for n, text in lines[1:]:
        f = [c.strip() for c in text.split("\t")]
        if len(f) < 5 or not f[0].startswith("id") or not f[0][2:].isdigit():
            raise DatasetLayoutError(f"{where(path, n)}: expected 'idNNNNN<TAB>Name<TAB>gender<TAB>nation<TAB>set'")
        out[f[1]] = (f[0], f[4])
    return out


class VoxCeleb1(FaceRecords):
    """Items: ``image``, ``index``, ``identity`` (int), ``video`` (index of the video id in sorted order)."""

    def __init__(self, root, split: str = "dev", size: int = 128, crop: int | None = None, frame_step: int = 1,
                 max_frames: int | None = None):
        root = Path(root)
        if split not in ("dev", "test"):
            raise ValueError(f"split must be dev | test, got {split!r}")
        frames = next((root / d for d in FRAME_DIRS if (root / d).is_dir()), None)
        if frames is None:
            raise DatasetLayoutError(f"VoxCeleb1 frames not found: expected {root / FRAME_DIRS[0]}/")
        listing = root / f"{split}.csv"
        entries = []  # (fname without extension, uid, source line or None)
        if listing.is_file():
            for n, r in read_csv_rows(listing, ("fname", "uid")):
                entries.append((r["fname"], r["uid"], n))
        else:
            meta_path = root / "vox1_meta.csv"
            if not meta_path.is_file():
                raise DatasetLayoutError(f"VoxCeleb1 needs {listing} (fname, uid) or {meta_path}")
            for name, (uid, s) in sorted(read_meta(meta_path).items()):
                if s == split and (frames / name).is_dir():
                    entries += [(str(p.relative_to(frames).with_suffix("")), uid, None)
                                for p in sorted((frames / name).rglob("*.jpg"))]
        if not entries:
            raise DatasetLayoutError(f"VoxCeleb1 {split}: no frames listed")
        paths, ids, vids, count = [], [], [], {}
        for fname, uid, line in entries:
            parts = fname.split("/")
            if len(parts) < 4 or not uid.startswith("id") or not uid[2:].isdigit():
                src = where(listing, line) if line else fname
                raise DatasetLayoutError(f"{src}: expected fname <Name>/1.6/<video>/<track>/<frame> and uid idNNNNN, "
                                         f"got {fname!r}, {uid!r}")
            k = count[parts[2]] = count.get(parts[2], -1) + 1
            if k % frame_step or (max_frames is not None and k // frame_step >= max_frames):
                continue
            p = frames / f"{fname}.jpg"
            if line and not p.is_file():
                raise DatasetLayoutError(f"{where(listing, line)}: frame {p} not found")
            paths.append(p)
            ids.append(int(uid[2:]))
            vids.append(parts[2])
        video_names, video = np.unique(np.array(vids), return_inverse=True)
        super().__init__(paths, size, crop, labels={"identity": np.array(ids, np.int64),
                                                   "video": video.astype(np.int64)})
        self.video_names = list(video_names)

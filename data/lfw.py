"""LFW: person folders and the official verification pairs.

Layout::

    root/<Name>/<Name>_0001.jpg ...     the person folders
    root/pairs.txt                      view 2: "10<TAB>300", then per fold 300 matched lines
                                        "name<TAB>i<TAB>j" followed by 300 mismatched "n1<TAB>i<TAB>n2<TAB>j"
    root/pairsDevTrain.txt / pairsDevTest.txt   view 1: "N", then N matched and N mismatched lines

``root`` may also be the folder holding the person folders' folder -- the download: ``lfw/`` (or
``lfw-deepfunneled/``, ``lfw_funneled/``, MAD's ``images/``) with ``pairs.txt`` beside it -- or the folder
above torchvision's ``lfw-py/`` (which holds both); pairs files beside the person folders' folder are found
when ``root`` is that folder.

The fold structure is kept (unlike MAD, which shuffled the pairs and so lost the official folds).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data.folders import IMAGE_EXTENSIONS, DatasetLayoutError
from data.records import FaceRecords
from data.tables import parse_int, read_lines, require_file, where


IMAGE_FOLDERS = ("images", "lfw", "lfw-deepfunneled", "lfw_funneled")  # MAD's copy, the release's archives


def find_lfw(root) -> tuple[Path, Path]:
    """``(folder of the person folders, folder where pairs files are looked for first)`` for any layout of the
    module docstring (a pairs file not there is looked for beside the person folders' folder)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"LFW folder {root} does not exist")
    for base in (root, root / "lfw-py"):
        for name in IMAGE_FOLDERS:
            if (base / name).is_dir():
                return base / name, base
    return root, root


def read_pairs(path: Path) -> list[tuple[str, int, str, int, int, int]]:
    """``(name1, n1, name2, n2, same, fold)`` per line of a pairs file, header and order checked."""
    lines = read_lines(require_file(path, "LFW pairs file"))
    if not lines:
        raise DatasetLayoutError(f"{path}: empty file")
    head = lines[0][1].split()
    if len(head) == 1:
        folds, per = 1, parse_int(head[0], path, lines[0][0], "the pair count")
    elif len(head) == 2:
        folds = parse_int(head[0], path, lines[0][0], "the fold count")
        per = parse_int(head[1], path, lines[0][0], "the pairs per fold")
    else:
        raise DatasetLayoutError(f"{where(path, lines[0][0])}: header must be 'N' or 'folds N', got {lines[0][1]!r}")
    body = lines[1:]
    if len(body) != folds * 2 * per:
        raise DatasetLayoutError(f"{path}: header promises {folds} x (2 x {per}) = {folds * 2 * per} pairs, "
                                 f"the file has {len(body)}")
    out = []
    for k, (n, text) in enumerate(body):
        tok = text.split()
        fold, same = k // (2 * per), (k % (2 * per)) < per
        if same and len(tok) == 3:
            out.append((tok[0], parse_int(tok[1], path, n, "image number"), tok[0],
                        parse_int(tok[2], path, n, "image number"), 1, fold))
        elif not same and len(tok) == 4:
            out.append((tok[0], parse_int(tok[1], path, n, "image number"), tok[2],
                        parse_int(tok[3], path, n, "image number"), 0, fold))
        else:
            kind = "a matched pair 'name i j'" if same else "a mismatched pair 'name1 i name2 j'"
            raise DatasetLayoutError(f"{where(path, n)}: expected {kind} (fold {fold + 1}), got {text!r}")
    return out


def _person_image(folder: Path, name: str, number: int) -> Path:
    return folder / name / f"{name}_{number:04d}.jpg"


class LFWPeople(FaceRecords):
    """All LFW images; items add ``identity`` (index of the person's name in sorted order)."""

    def __init__(self, root, size: int = 128, crop: int | None = None):
        folder = find_lfw(root)[0]
        people = sorted(p for p in folder.iterdir() if p.is_dir())
        paths, ids = [], []
        for k, person in enumerate(people):
            imgs = sorted(p for p in person.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            paths += imgs
            ids += [k] * len(imgs)
        if not paths:
            raise DatasetLayoutError(f"no LFW images under {folder}/<Name>/")
        super().__init__(paths, size, crop, labels={"identity": np.array(ids, dtype=np.int64)})
        self.names = [p.name for p in people]


class LFWPairs(torch.utils.data.Dataset):
    """Verification pairs: items ``image``, ``image2``, ``same`` (1/0), ``fold`` (0-based), ``index``.

    A flip mirrors both images. Images referenced by the pairs file must exist (checked up front).
    ``pairs`` is a path or a file name looked for as the module docstring says. ``records`` holds each
    distinct image once (its ``use_cache`` makes a uint8 cache of them).
    """

    def __init__(self, root, pairs: str = "pairs.txt", size: int = 128, crop: int | None = None):
        folder, base = find_lfw(root)
        pairs_path = Path(pairs) if Path(pairs).is_file() else next(
            (d / pairs for d in (base, folder.parent) if (d / pairs).is_file()), base / pairs)
        rows = read_pairs(pairs_path)
        lines = [n for n, _ in read_lines(pairs_path)[1:]]
        images: dict[Path, int] = {}
        a, b = [], []
        for (n1, i1, n2, i2, _, _), line in zip(rows, lines):
            for name, num, dst in ((n1, i1, a), (n2, i2, b)):
                p = _person_image(folder, name, num)
                if p not in images:
                    if not p.is_file():
                        raise DatasetLayoutError(f"{where(pairs_path, line)}: image {p} not found")
                    images[p] = len(images)
                dst.append(images[p])
        self.records = FaceRecords(list(images), size, crop)
        self.a, self.b = np.array(a), np.array(b)
        self.same = np.array([r[4] for r in rows], dtype=np.int64)
        self.fold = np.array([r[5] for r in rows], dtype=np.int64)

    def __len__(self):
        return len(self.same)

    def __getitem__(self, item):
        i, flip = item if isinstance(item, tuple) else (item, False)
        return {"image": self.records[(int(self.a[i]), flip)]["image"],
                "image2": self.records[(int(self.b[i]), flip)]["image"],
                "same": torch.tensor(self.same[i]), "fold": torch.tensor(self.fold[i]), "index": torch.tensor(i)}

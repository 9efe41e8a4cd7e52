"""Align every face photo of a folder (``python preprocess.py --align PRESET --images DIR --out OUT``).

Each file under DIR (sub-folders kept, hidden files skipped) is decoded (EXIF rotation applied), its faces
found with dlib (data/dlib_faces.py) and the largest (or, with ``all_faces``, each) aligned by the preset
(data/align.py) into ``OUT/<relative path>.png`` (several faces: ``<name>_<k>.png``, largest first).
Problems do not stop the run: one line each in ``OUT/align_report.txt`` and on stdout --
``<file>: unreadable: <reason>``, ``<file>: no face`` (both failures) and ``<file>: N faces, kept the
largest`` / ``N faces, wrote all`` (notes).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from data.align import DEFAULT_SIZE, align
from data.errors import DatasetLayoutError

REPORT = "align_report.txt"


def _photos(src: Path, out: Path) -> list[Path]:
    out = out.resolve()
    files = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and out not in p.resolve().parents:
            files.append(p)
    return files


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)


def align_folder(src, out, preset: str, size: int | None = None, all_faces: bool = False,
                 progress: bool = True) -> tuple[int, int, list[str]]:
    """Align the photos of ``src`` into ``out``: (photos, failed photos, report lines)."""
    from data.dlib_faces import detect, require

    require("face alignment")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DatasetLayoutError(f"--images {src} is not a folder")
    files = _photos(src, out)
    if not files:
        raise DatasetLayoutError(f"no files in {src}")
    size = size or DEFAULT_SIZE[preset]
    lines, failed, used = [], 0, set()
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc=f"align {preset}", unit="photo")
    for path in files:
        rel = path.relative_to(src)
        try:
            img = _read(path)
        except Exception as e:  # noqa: BLE001 -- any decoder failure is reported, the folder goes on
            reason = (str(e) or type(e).__name__).replace(f" '{path}'", "").replace(str(path), "the file")
            lines.append(f"{rel}: unreadable: {reason}")
            failed += 1
            continue
        faces = detect(img)
        if not faces:
            lines.append(f"{rel}: no face")
            failed += 1
            continue
        if len(faces) > 1:
            lines.append(f"{rel}: {len(faces)} faces, " + ("wrote all" if all_faces else "kept the largest"))
        keep = faces if all_faces else faces[:1]
        base = rel.with_suffix("")
        if str(base) in used:  # photo.jpg and photo.png in one folder
            base = rel.with_name(rel.name.replace(".", "_"))
        used.add(str(base))
        pim = Image.fromarray(img)
        for k, face in enumerate(keep):
            name = f"{base}_{k}.png" if len(keep) > 1 else f"{base}.png"
            _save(align(pim, face.landmarks, preset, size)[0], out / name)
    n = len(files)
    lines.append(f"{n} files: {n - failed} aligned ({preset}, {size} px), {failed} failed")
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text("\n".join(lines) + "\n")
    return n, failed, lines

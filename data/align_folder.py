"""Align every face photo of a folder (``python preprocess.py --align PRESET --images DIR --out OUT``).

Each file under DIR (sub-folders kept, hidden files skipped) is decoded (EXIF rotation applied; images of
more than 8 bits per channel brought to 8 bits, :func:`to_uint8`), its faces found with dlib
(data/dlib_faces.py) and the largest (or, with ``all_faces``, each) aligned by the preset (data/align.py)
into ``OUT/<relative path>.png`` (several faces: ``<name>_<k>.png``, largest first).
Problems do not stop the run: one line each in ``OUT/align_report.txt`` and on stdout --
``<file>: unreadable: <reason>``, ``<file>: no face`` (both failures) and ``<file>: N faces, kept the
largest`` / ``N faces, wrote all`` (notes).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data.align import DEFAULT_SIZE, align
from data.folders import DatasetLayoutError

REPORT = "align_report.txt"


def _photos(src: Path, out: Path) -> list[Path]:
    out = out.resolve()
    files = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and out not in p.resolve().parents:
            files.append(p)
    return files


def _check_folders(src: Path, out: Path) -> None:
    """--images must be a folder, --out a folder (or new) that is neither --images nor above it."""
    if not src.is_dir():
        raise DatasetLayoutError(f"--images {src} is not a folder")
    if out.exists() and not out.is_dir():
        raise DatasetLayoutError(f"--out {out} is a file, not a folder")
    s, o = src.resolve(), out.resolve()
    if o == s:
        raise DatasetLayoutError(f"--out {out} is the --images folder: the aligned faces would be written among "
                                 f"the photos; give another folder, e.g. --out {out / 'aligned'}")
    if o in s.parents:
        raise DatasetLayoutError(f"--images {src} is inside --out {out}: the aligned faces would be written among "
                                 "the photos; give an --out outside it (a sub-folder of --images is fine)")


# -- reading: 8 bits per channel ---------------------------------------------------------------------------

def to_uint8(a: np.ndarray) -> np.ndarray:
    """Pixel values of any bit depth as uint8: 16-bit values keep their high byte (as Pillow reads 16-bit
    RGB); 32-bit integers count as 8-, 16- or 32-bit by their largest value; floating point is 0-1, a
    larger range divided by its maximum (NaN counts as 0)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = max(1.0, float(a.max(initial=0.0)))
        return np.uint8(np.clip(np.rint(a * (255.0 / top)), 0, 255))
    if a.dtype.kind not in "ui":
        raise ValueError(f"unsupported pixel type {a.dtype}")
    size = a.dtype.itemsize
    a = np.clip(a, 0, None).astype(np.uint64)
    top = int(a.max(initial=0))
    bits = 16 if size == 2 else next(b for b in (8, 16, 32, 64) if top < 2 ** b)
    return np.uint8(a >> np.uint64(bits - 8))


_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # one channel of more than 8 bits (Pillow modes)


def _rgb8(im: Image.Image) -> np.ndarray:
    """uint8 RGB H x W x 3 of a decoded image of any mode (16-bit and float greyscale scaled, not clipped)."""
    if im.mode in _GREY:
        return np.repeat(to_uint8(np.asarray(im))[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def _deep_tiff(im: Image.Image) -> bool:
    """A TIFF of more than 8 bits per sample."""
    bits = im.tag_v2.get(258, 1) if im.format == "TIFF" else 1  # BitsPerSample
    return max(bits if isinstance(bits, tuple) else (bits,)) > 8


def _read_tiff(path: Path) -> np.ndarray | None:
    """A TIFF read with tifffile (installed with scikit-image), which reads what Pillow does not (floating-point
    RGB) or misreads (planar 16-bit RGB); None when tifffile is missing or cannot read the file either."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            a, axes, tag = page.asarray(), page.axes, page.tags.get("Orientation")
    except Exception:  # noqa: BLE001 -- no tifffile, or not a TIFF it reads: the caller's error stands
        return None
    if "S" in axes:  # samples (colour channels) last
        a = np.moveaxis(a, axes.index("S"), -1)
    a = np.squeeze(a)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"unsupported TIFF layout {axes} {page.shape}")
    a = to_uint8(a)
    im = Image.fromarray(a if a.ndim == 2 else np.ascontiguousarray(a[..., :3]))
    if tag is not None:
        im.getexif()[0x0112] = tag.value  # the TIFF Orientation tag means what EXIF's does
    return _rgb8(ImageOps.exif_transpose(im))


def _read(path: Path) -> np.ndarray:
    """The photo upright (EXIF / TIFF orientation), uint8 RGB."""
    try:
        with Image.open(path) as im:
            if _deep_tiff(im):
                a = _read_tiff(path)
                if a is not None:
                    return a
                if im.tag_v2.get(284) == 2:  # PlanarConfiguration: Pillow reads these as 8-bit bands
                    raise ValueError("a planar TIFF of more than 8 bits per sample needs tifffile "
                                     "(pip install tifffile)")
            return _rgb8(ImageOps.exif_transpose(im))
    except UnidentifiedImageError:
        a = _read_tiff(path)
        if a is None:
            raise
        return a


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)


def align_folder(src, out, preset: str, size: int | None = None, all_faces: bool = False,
                 progress: bool = True) -> tuple[int, int, list[str]]:
    """Align the photos of ``src`` into ``out``: (photos, failed photos, report lines)."""
    from data.dlib_faces import detect, require

    src, out = Path(src), Path(out)
    _check_folders(src, out)
    files = _photos(src, out)
    if not files:
        raise DatasetLayoutError(f"no files in {src}")
    require("face alignment")
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

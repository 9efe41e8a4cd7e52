"""Align every face photo of a folder (``python preprocess.py --align PRESET --images DIR --out OUT``).

Each file under DIR (sub-folders kept, hidden files skipped) is decoded (EXIF rotation applied; images of
more than 8 bits per channel brought to 8 bits, :func:`to_uint8`), its faces found with dlib
(data/dlib_faces.py) and the largest (or, with ``all_faces``, each) aligned by the preset (data/align.py)
into ``OUT/<relative path without extension>.png`` (several faces: ``<name>_<k>.png``, largest first).

Output names are fixed from the list of files before any photo is read (:func:`output_names`): photos whose
outputs could take the same name (``a.jpg`` and ``a.png``; with ``all_faces`` also ``x.jpg``, whose faces
are ``x_<k>.png``, and ``x_0.jpg``) all keep their extension in the name (``a_jpg``, ``a_png``). No output
replaces another output of the run, nor, without ``force``, a file that was there before: the run refuses
to start if OUT already holds one of its names.

Problems with single photos do not stop the run: one line each in ``OUT/align_report.txt`` and on stdout --
``<file>: unreadable: <reason>``, ``<file>: no face``, ``<file>: not written: <reason>`` (failures),
``<file>: N faces, kept the largest`` / ``N faces, wrote all`` and ``<file>: written as <names> (name shared
with <file>)`` (notes); the last line counts files, aligned photos, failures and images written.

The output-folder rules (:func:`check_out_folder`, :func:`files_under`, :func:`refuse_taken`, :class:`Writer`)
are infer.py's too.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data.align import DEFAULT_SIZE, align
from data.errors import DatasetLayoutError

REPORT = "align_report.txt"
_NUMBERED = re.compile(r"(.+)_\d+")  # <name>_<k>: the k-th face of photo <name> (all_faces)


def files_under(src: Path, out: Path) -> list[Path]:
    """Every file under ``src`` (sub-folders included) but hidden ones, those in hidden folders and those under
    the output folder ``out`` (not read as input), unless ``src`` is inside ``out``."""
    out, s = out.resolve(), src.resolve()
    above = out == s or out in s.parents
    files = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and (
                above or out not in p.resolve().parents):
            files.append(p)
    return files


def check_out_folder(src: Path, out: Path, option: str = "--images", outputs: str = "the aligned faces",
                     inputs: str = "the photos", suggest: str = "aligned") -> None:
    """``option`` (the input folder ``src``) must be a folder, --out a folder (or new) that is not ``src``: the
    error says that ``outputs`` would be written among ``inputs`` and suggests ``--out OUT/suggest``."""
    if not src.is_dir():
        raise DatasetLayoutError(f"{option} {src} is not a folder")
    if out.exists() and not out.is_dir():
        raise DatasetLayoutError(f"--out {out} is a file, not a folder")
    if out.resolve() == src.resolve():
        raise DatasetLayoutError(f"--out {out} is the {option} folder: {outputs} would be written among {inputs}; "
                                 f"give another folder, e.g. --out {out / suggest}")


def _check_folders(src: Path, out: Path) -> None:
    """--images must be a folder, --out a folder (or new) that is neither --images nor above it."""
    check_out_folder(src, out)
    if out.resolve() in src.resolve().parents:
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


# -- output names ------------------------------------------------------------------------------------------

def _tagged(rel: Path) -> Path:
    """``a.jpg`` -> ``a_jpg``: the name with its extension kept."""
    return rel.with_name(f"{rel.stem}_{rel.suffix[1:]}") if rel.suffix else rel


def _clashes(base: dict[Path, Path], all_faces: bool) -> dict[Path, Path]:
    """Photo -> another photo whose outputs could take one of its output names."""
    owners = defaultdict(list)
    for rel, b in base.items():
        owners[b].append(rel)
    found = {}
    for b, rels in owners.items():
        group = list(rels)
        m = _NUMBERED.fullmatch(b.name) if all_faces else None
        if m:  # b = <root>_<k>, a face of photo <root> when it has several
            group += owners.get(b.with_name(m.group(1)), [])
        if len(group) > 1:
            for r in group:
                found.setdefault(r, next(o for o in group if o != r))
    return found


def output_names(rels: list[Path], all_faces: bool) -> tuple[dict[Path, Path], dict[Path, Path], dict[Path, Path]]:
    """Output names of photos (relative paths), decided from the names alone: (photo -> output path without
    ``.png``, renamed photo -> the photo it shared its name with, photo left out -> the photo that keeps its
    name).

    A photo's output is its path without the extension (with ``all_faces`` also that name + ``_<k>``).
    Every photo whose output names could meet another's keeps its extension in its name (``a.jpg`` ->
    ``a_jpg``), until no names meet; photos that renaming cannot separate (a file without an extension named
    like another's new name) are left out but the first.
    """
    base = {r: r.with_suffix("") for r in rels}
    renamed, left_out = {}, {}
    while clashes := _clashes(base, all_faces):
        fresh = [r for r in clashes if r not in renamed]
        for r in fresh:
            renamed[r], base[r] = clashes[r], _tagged(r)
        if not fresh:
            for r in sorted(clashes, reverse=True):
                if clashes[r] in base:
                    left_out[r] = clashes[r]
                    del base[r]
    return base, renamed, left_out


def _existing(out: Path, bases, all_faces: bool) -> list[str]:
    """Files in ``out`` that this run could write (its outputs, the report)."""
    by_dir = defaultdict(list)
    for b in bases:
        by_dir[b.parent].append(b.name)
    found = [REPORT] if (out / REPORT).exists() else []
    for d, names in sorted(by_dir.items()):
        folder = out / d
        if not folder.is_dir():
            continue
        present = sorted(os.listdir(folder))
        faces = defaultdict(list)
        for n in present:
            m = _NUMBERED.fullmatch(n[:-4]) if n.endswith(".png") else None
            if m:
                faces[m.group(1)].append(n)
        present = set(present)
        for n in names:
            hits = ([f"{n}.png"] if f"{n}.png" in present else []) + (faces[n] if all_faces else [])
            found += [(d / h).as_posix() for h in hits]
    return found


# -- writing -----------------------------------------------------------------------------------------------

def refuse_taken(out: Path, taken: list[str]) -> None:
    """Without --force a run whose output names ``taken`` are already in ``out`` refuses to start: one error
    naming a few of them and their count."""
    if taken:
        raise DatasetLayoutError(f"--out {out} already holds {_plural(len(taken), 'file')} this run would write "
                                 f"({', '.join(taken[:3])}{', ...' if len(taken) > 3 else ''}): add --force to "
                                 "overwrite them, or give another --out")


class Writer:
    """Writes files into ``out`` through a temporary file: never over a file written by this run, nor, without
    ``force``, over any file that exists. A folder that cannot be written raises an error naming it."""

    def __init__(self, out: Path, force: bool):
        self.out, self.force, self.ours, self.count = out, force, set(), 0
        self._folder(out)
        os.unlink(self._tmp(out))  # the folder is writable: fail before aligning anything

    @staticmethod
    def _folder(folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create the output folder {folder}: {e.strerror or e}") from None

    @staticmethod
    def _tmp(folder: Path) -> Path:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
        except OSError as e:
            raise OSError(f"cannot write into the output folder {folder}: {e.strerror or e}") from None
        os.close(fd)
        return Path(tmp)

    def write(self, name: str, save, replace: bool = False) -> str | None:
        """``save(path)`` writes ``out/name``; returns None, or why it was not written (the name is taken).
        ``replace``: replace an existing file (not one of this run) even without ``force``."""
        path = self.out / name
        self._folder(path.parent)
        if path.exists():
            if _file_id(path) in self.ours:
                return f"{name} is another output of this run"
            if not (self.force or replace):
                return f"{name} exists"
        tmp, claimed = self._tmp(path.parent), False
        try:
            save(tmp)
            if not (self.force or replace):  # claim the name: fails if a file of that name appeared meanwhile
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
                claimed = True
            os.replace(tmp, path)
        except FileExistsError:
            return f"{name} exists"
        except OSError as e:
            if claimed:
                path.unlink(missing_ok=True)
            raise OSError(f"cannot write into the output folder {path.parent}: {e.strerror or e}") from None
        finally:
            tmp.unlink(missing_ok=True)
        self.ours.add(_file_id(path))
        self.count += 1
        return None


def _file_id(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def plan_alignment(src: Path, out: Path, all_faces: bool = False, force: bool = False, skip: Path | None = None):
    """The checks of a run before anything is read or written (folders; without ``force``, none of its names
    already in ``out``) and its photos: (the files under ``src`` but those under ``skip``, default ``out``, then
    :func:`output_names`' three maps)."""
    _check_folders(src, out)
    files = files_under(src, skip or out)
    if not files:
        raise DatasetLayoutError(f"no files in {src}")
    names, renamed, left_out = output_names([p.relative_to(src) for p in files], all_faces)
    refuse_taken(out, [] if force else _existing(out, names.values(), all_faces))
    return files, names, renamed, left_out


def align_folder(src, out, preset: str, size: int | None = None, all_faces: bool = False,
                 progress: bool = True, force: bool = False, skip=None) -> tuple[int, int, list[str]]:
    """Align the photos of ``src`` into ``out``: (photos, failed photos, report lines). ``skip``: a folder
    inside ``src`` whose files are not photos (default ``out``; infer.py: its whole --out)."""
    from data.dlib_faces import detect, require

    src, out = Path(src), Path(out)
    files, names, renamed, left_out = plan_alignment(src, out, all_faces, force, skip and Path(skip))
    require("face alignment")
    writer = Writer(out, force)  # creates --out: after every check
    size = size or DEFAULT_SIZE[preset]
    lines, failed = [], 0
    if progress:
        from tqdm import tqdm

        files = tqdm(files, desc=f"align {preset}", unit="photo")
    for path in files:
        rel = path.relative_to(src)
        if rel in left_out:
            lines.append(f"{rel}: not written: its output name is also {left_out[rel]}'s; rename one of them")
            failed += 1
            continue
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
        base = names[rel].as_posix()
        outputs = [f"{base}_{k}.png" for k in range(len(keep))] if len(keep) > 1 else [f"{base}.png"]
        pim, written, problems = Image.fromarray(img), [], []
        for face, name in zip(keep, outputs):
            arr = align(pim, face.landmarks, preset, size)[0]
            problem = writer.write(name, lambda p, a=arr: Image.fromarray(a).save(p, format="PNG"))
            if problem:
                problems.append(problem)
            else:
                written.append(name)
        if rel in renamed and written:
            lines.append(f"{rel}: written as {', '.join(written)} (name shared with {renamed[rel]})")
        if problems:
            lines.append(f"{rel}: not written: {'; '.join(problems)}")
            failed += 1
    n = len(files)
    lines.append(f"{_plural(n, 'file')}: {n - failed} aligned ({preset}, {size} px), {failed} failed; "
                 f"{_plural(writer.count, 'image')} written")
    text = "\n".join(lines) + "\n"
    writer.write(REPORT, lambda p: p.write_text(text), replace=True)  # an earlier report: refused above or --force
    return n, failed, lines

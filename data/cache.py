"""Preprocessed image caches: one raw uint8 array per image list, memory-mapped at training time.

Files, for a cache named ``trainA_128_178`` (domain, size, crop; ``full`` when uncropped):

* ``trainA_128_178.u8``   ``count x 3 x size x size`` uint8 (NCHW, C-order), the images exactly as
  :func:`data.folders.load_image` (or a dataset's own loader) returns them, before flips;
* ``trainA_128_178.json`` the header: count, size, crop, resize filter, byte count, SHA-1 of the data, and a
  fingerprint of the source list (file names in order, each with its byte size and modification time, so
  a replaced image invalidates the cache), written LAST. A cache made with another filter (or before the
  filter was recorded) does not match.

A build writes the data to a ``.partial.<pid>`` file, fsyncs, renames it into place, and only then writes
the header (via a temporary file and an atomic rename). Before it starts it deletes the old header. So a
reader that finds a header also finds the complete data it describes; an interrupted build leaves no header
and the cache is ignored (and rebuilt). Readers also check the data file's length against the header.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from data.folders import DatasetLayoutError, load_image, to_tensor

CACHE_FORMAT, CACHE_VERSION = "uint8-image-cache", 1
CACHE_MODES = ("auto", "build", "require", "off")


def cache_name(domain: str, size: int, crop: int | None) -> str:
    """``<domain>_<size>_<crop>`` (``full`` when there is no crop)."""
    return f"{domain}_{size}_{crop if crop else 'full'}"


def fingerprint(keys) -> str:
    """SHA-1 of the ordered source keys (file names, or names plus crop boxes)."""
    h = hashlib.sha1()
    for k in keys:
        h.update(str(k).encode())
        h.update(b"\n")
    return h.hexdigest()


def file_key(path) -> str:
    """``name|bytes|mtime`` of an image file: a replaced image changes it; a copy that keeps modification
    times (``cp -p``, ``rsync -a``) to another folder does not (one ``os.stat``, no reading)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatasetLayoutError(f"image not found: {path}") from None
    return f"{Path(path).name}|{st.st_size}|{int(st.st_mtime)}"


def path_keys(paths) -> list[str]:
    """Fingerprint keys of an image list (:func:`file_key` of each file, in order)."""
    return [file_key(p) for p in paths]


def check_mode(mode) -> str:
    """``mode`` if it is a ``data.cache`` value, else an error listing them."""
    if mode not in CACHE_MODES:
        raise ValueError(f"data.cache must be {' | '.join(CACHE_MODES)}, got {mode!r}")
    return mode


class PathLoader:
    """Picklable ``i -> load_image(paths[i], size, crop, resample)`` for :func:`build_cache`."""

    def __init__(self, paths, size: int, crop: int | None, resample: str = "bicubic"):
        self.paths, self.size, self.crop, self.resample = [str(p) for p in paths], size, crop, resample

    def __call__(self, i: int) -> np.ndarray:
        return load_image(Path(self.paths[i]), self.size, self.crop, self.resample)


def _files(base: Path) -> tuple[Path, Path]:
    return base.with_name(base.name + ".u8"), base.with_name(base.name + ".json")


def check_cache(base: str | Path, count: int, size: int, crop: int | None, keys_fp: str,
                resample: str = "bicubic") -> str | None:
    """Why the cache at ``base`` (path without suffix) cannot be used, or ``None`` if it can."""
    data, header = _files(Path(base))
    if not header.is_file():
        return "no header (never built, or the build was interrupted)" if data.exists() else "not built"
    try:
        h = json.loads(header.read_text())
    except (OSError, ValueError) as e:
        return f"unreadable header {header}: {e}"
    if h.get("format") != CACHE_FORMAT or h.get("version") != CACHE_VERSION or not h.get("complete"):
        return f"{header} is not a complete version-{CACHE_VERSION} cache header"
    expected = {"count": count, "size": size, "crop": crop or None, "resample": resample, "fingerprint": keys_fp}
    for k, v in expected.items():
        if h.get(k) != v:
            what = "source list changed" if k == "fingerprint" else f"header {k}={h.get(k)!r}, wanted {v!r}"
            return f"{header}: {what}"
    nbytes = count * 3 * size * size
    if h.get("bytes") != nbytes:
        return f"{header}: header byte count {h.get('bytes')} != {nbytes}"
    if not data.is_file() or data.stat().st_size != nbytes:
        got = data.stat().st_size if data.is_file() else "missing"
        return f"{data}: {got} bytes, header says {nbytes} (truncated or partly written)"
    return None


def verify_cache(base: str | Path) -> bool:
    """Recompute the data's SHA-1 and compare it with the header (reads the whole file)."""
    data, header = _files(Path(base))
    h = json.loads(header.read_text())
    sha = hashlib.sha1()
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            sha.update(block)
    return sha.hexdigest() == h["sha1"]


def build_cache(base: str | Path, load, count: int, size: int, crop: int | None, keys_fp: str,
                workers: int = 0, progress: bool = False, resample: str = "bicubic") -> Path:
    """Write the cache: ``load(i)`` must return image ``i`` as uint8 ``(size, size, 3)``, resized with the
    filter ``resample`` (recorded in the header).

    ``load`` must be picklable when ``workers > 0`` (a module-level function, a ``functools.partial`` of
    one, or a bound method of a picklable dataset). Any loading error aborts the build, leaving no cache.
    """
    if count <= 0:
        raise DatasetLayoutError(f"cannot cache {base}: the image list is empty")
    data, header = _files(Path(base))
    data.parent.mkdir(parents=True, exist_ok=True)
    header.unlink(missing_ok=True)  # from here on, no reader trusts the old data
    tmp = data.with_name(f"{data.name}.partial.{os.getpid()}")
    sha = hashlib.sha1()
    pool = multiprocessing.Pool(workers) if workers > 0 else None
    try:
        images = pool.imap(load, range(count), chunksize=16) if pool else map(load, range(count))
        if progress:
            from tqdm import tqdm
            images = tqdm(images, total=count, desc=data.stem, unit="img")
        with open(tmp, "wb") as f:
            for i, img in enumerate(images):
                if img.shape != (size, size, 3) or img.dtype != np.uint8:
                    raise DatasetLayoutError(f"image {i} of {base}: got {img.dtype} {img.shape}, "
                                             f"expected uint8 {(size, size, 3)}")
                chw = np.ascontiguousarray(img.transpose(2, 0, 1))
                f.write(chw.data)
                sha.update(chw.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if pool:
            pool.terminate()
    meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "complete": True, "count": count, "size": size,
            "crop": crop or None, "resample": resample, "layout": "NCHW", "dtype": "uint8", "bytes": count * 3 * size * size,
            "fingerprint": keys_fp, "sha1": sha.hexdigest()}
    htmp = header.with_name(f"{header.name}.tmp.{os.getpid()}")
    htmp.write_text(json.dumps(meta, indent=1))
    os.replace(htmp, header)
    return data


class CachedImages(torch.utils.data.Dataset):
    """A cache as a domain dataset: the same ``{"image", "index"}`` items as ``ImageDomain``, no decoding.

    The memmap opens lazily in each process (DataLoader workers do not copy the array).
    """

    def __init__(self, base: str | Path, count: int, size: int):
        self.path, self.count, self.size = _files(Path(base))[0], count, size
        self._array = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.memmap(self.path, np.uint8, "r", shape=(self.count, 3, self.size, self.size))
        return self._array

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    def __len__(self):
        return self.count

    def uint8(self, i: int) -> np.ndarray:
        """Image ``i`` as a read-only uint8 (3, size, size) view."""
        return self.array[i]

    def __getitem__(self, item):
        i, flip = item if isinstance(item, tuple) else (item, False)
        a = self.array[i]
        return {"image": to_tensor(a[:, :, ::-1] if flip else a, chw=True), "index": torch.tensor(i)}


def open_domain_cache(cache_dir: str | Path, domain: str, paths, size: int, crop: int | None,
                      mode: str = "auto", workers: int = 0, resample: str = "bicubic"):
    """The cached dataset for an image list, following ``mode``.

    ``auto``: use a valid cache, else return ``None`` (the caller decodes images); ``require``: a valid
    cache or an error with the reason; ``build``: build it when missing or stale; ``off``: ``None``.
    """
    if check_mode(mode) == "off":
        return None
    base = Path(cache_dir) / cache_name(domain, size, crop)
    fp = fingerprint(path_keys(paths))
    reason = check_cache(base, len(paths), size, crop, fp, resample)
    if reason is not None:
        if mode == "auto":
            if reason != "not built":
                warnings.warn(f"ignoring cache {base}.u8 ({reason}); decoding images instead", stacklevel=2)
            return None
        if mode == "require":
            raise DatasetLayoutError(f"cache {base}.u8 unusable: {reason}; run preprocess.py to build it")
        build_cache(base, PathLoader(paths, size, crop, resample), len(paths), size, crop, fp, workers,
                    resample=resample)
    return CachedImages(base, len(paths), size)

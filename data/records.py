"""A dataset of face image records (path, crop, landmarks, box, labels), the base of the real-data loaders.

Crop: a square box per record (``left, top, side`` in source pixels; black outside the image) resized to
``size``, or without boxes the folder transform (centre crop ``crop`` px, short side to ``size``, centre
square); resizing uses the PIL filter ``resample``. Items: ``image`` (3, size, size) in [-1, 1], ``index``, every label array's row as a tensor,
``landmarks`` (K, 2) and ``bbox`` (x, y, w, h) mapped to output pixels. ``__getitem__`` takes ``i`` or
``(i, flip)``; a flip mirrors the image, landmarks (with left/right renaming) and box. With a cache
(``use_cache``) pixels come from the memmap; without crop boxes, mapping landmarks then reads only the
source image's header (its size), never its pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.cache import CachedImages, build_cache, cache_name, check_cache, check_mode, file_key, fingerprint
from data.folders import DatasetLayoutError, image_size, to_tensor
from data.geometry import box_crop_resize, centre_affine, centre_crop_resize, flip_points, map_points


class FaceRecords(torch.utils.data.Dataset):
    """Images plus per-record annotations; see the module docstring for the item layout."""

    def __init__(self, paths, size: int, crop: int | None = None, boxes=None, landmarks=None, bbox=None,
                 labels: dict | None = None, flip_perm=None, resample: str = "bicubic"):
        self.paths = [str(p) for p in paths]
        n = len(self.paths)
        if n == 0:
            raise DatasetLayoutError(f"{type(self).__name__}: no images selected")
        self.size, self.crop, self.flip_perm, self.resample = size, crop, flip_perm, resample
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.int64).reshape(n, 3)
        self.landmarks = None if landmarks is None else np.asarray(landmarks, dtype=np.float32)
        self.bbox = None if bbox is None else np.asarray(bbox, dtype=np.float32).reshape(n, 4)
        self.labels = {k: np.asarray(v) for k, v in (labels or {}).items()}
        for k, v in [("landmarks", self.landmarks), *self.labels.items()]:
            if v is not None and len(v) != n:
                raise DatasetLayoutError(f"{type(self).__name__}: {len(v)} {k} rows for {n} images")
        self.cache: CachedImages | None = None
        self._source_size: dict[int, tuple[int, int]] = {}

    def __len__(self):
        return len(self.paths)

    @property
    def identities(self) -> np.ndarray:
        """Identity label per image (what identity pairs and groups are drawn by)."""
        if "identity" not in self.labels:
            raise DatasetLayoutError(f"{type(self).__name__}: no identity labels (CelebA: identity_CelebA.txt)")
        return self.labels["identity"]

    # --- pixels -------------------------------------------------------------------------------------
    def decode(self, i: int) -> tuple[np.ndarray, tuple]:
        """Image ``i`` as uint8 (size, size, 3) and its source->output affine."""
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                self._source_size[i] = im.size
                if self.boxes is not None:
                    return box_crop_resize(im, tuple(int(v) for v in self.boxes[i]), self.size, self.resample)
                return centre_crop_resize(im, self.size, self.crop, self.resample)
        except FileNotFoundError:
            raise DatasetLayoutError(f"image not found: {path}") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise DatasetLayoutError(f"cannot read image {path}: {e}") from None

    def uint8(self, i: int) -> np.ndarray:
        """Image ``i`` (size, size, 3) uint8 -- what a cache stores (picklable for pool workers)."""
        return self.decode(i)[0]

    def affine(self, i: int) -> tuple:
        if self.boxes is not None:
            left, top, side = (int(v) for v in self.boxes[i])
            s = self.size / side
            return (s, s, (0.5 - left) * s - 0.5, (0.5 - top) * s - 0.5)
        if i not in self._source_size:  # header only, no decoding
            self._source_size[i] = image_size(self.paths[i])
        return centre_affine(*self._source_size[i], self.size, self.crop)

    # --- cache --------------------------------------------------------------------------------------
    def cache_keys(self) -> list[str]:
        boxes = self.boxes if self.boxes is not None else [None] * len(self)
        return [f"{file_key(p)}|{None if b is None else tuple(int(v) for v in b)}" for p, b in zip(self.paths, boxes)]

    def use_cache(self, cache_dir, name: str, mode: str = "auto", workers: int = 0) -> "FaceRecords":
        """Serve pixels from ``cache_dir/<name>_<size>_<crop>.u8``; ``mode`` as in :func:`open_domain_cache`."""
        if check_mode(mode) == "off":
            return self
        base = Path(cache_dir) / cache_name(name, self.size, self.crop)
        fp = fingerprint(self.cache_keys())
        reason = check_cache(base, len(self), self.size, self.crop, fp, self.resample)
        if reason is not None:
            if mode == "auto":
                return self
            if mode == "require":
                raise DatasetLayoutError(f"cache {base}.u8 unusable: {reason}")
            build_cache(base, self.uint8, len(self), self.size, self.crop, fp, workers, resample=self.resample)
        self.cache = CachedImages(base, len(self), self.size)
        return self

    # --- items --------------------------------------------------------------------------------------
    def __getitem__(self, item):
        i, flip = item if isinstance(item, tuple) else (item, False)
        if self.cache is not None:
            chw, affine = self.cache.uint8(i), None
        else:
            hwc, affine = self.decode(i)
            chw = hwc.transpose(2, 0, 1)
        if flip:
            chw = chw[:, :, ::-1]
        out = {"image": to_tensor(chw, chw=True), "index": torch.tensor(i)}
        if self.landmarks is not None or self.bbox is not None:
            affine = affine or self.affine(i)
        if self.landmarks is not None:
            pts = map_points(self.landmarks[i], affine)
            out["landmarks"] = torch.from_numpy(flip_points(pts, self.size, self.flip_perm) if flip else pts)
        if self.bbox is not None:
            x, y, w, h = self.bbox[i]
            (x0, y0), (x1, y1) = map_points(np.array([[x, y], [x + w, y + h]]) - 0.5, affine) + 0.5
            if flip:
                x0, x1 = self.size - x1, self.size - x0
            out["bbox"] = torch.tensor([x0, y0, x1 - x0, y1 - y0], dtype=torch.float32)
        for k, v in self.labels.items():
            out[k] = torch.as_tensor(v[i])
        return out

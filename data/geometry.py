"""Crops, resizes and the point maps that go with them (landmarks, boxes), plus left/right flip tables.

Point convention: pixel centres sit on integer coordinates, so a point ``x`` in the source maps to
``(x + 0.5 - left) * scale - 0.5`` in the output, and a horizontal flip of a ``size``-wide image maps
``x`` to ``size - 1 - x``. An affine is ``(sx, sy, ox, oy)`` with ``out = (x * sx + ox, y * sy + oy)``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# 68-point iBUG/300-W order (0-based): mirror partner of each point.
FLIP_68 = np.array(
    list(range(16, -1, -1))                      # jaw 0..16
    + list(range(26, 21, -1)) + list(range(21, 16, -1))  # brows 17..21 <-> 22..26
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]     # nose bridge, nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]   # eyes 36..41 <-> 42..47
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]   # outer lips 48..59
    + [64, 63, 62, 61, 60, 67, 66, 65])           # inner lips 60..67
# 5-point order of CelebA and VGGFace2: left eye, right eye, nose, left mouth, right mouth.
FLIP_5 = np.array([1, 0, 2, 4, 3])


# PIL filters by name (``data.resize_filter``); torchvision's Resize on PIL images applies PIL's own filter
RESIZE_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def resize_filter(name: str) -> int:
    """The PIL filter called ``name`` (bilinear | bicubic)."""
    try:
        return RESIZE_FILTERS[name]
    except KeyError:
        raise ValueError(f"resize filter must be one of {sorted(RESIZE_FILTERS)}, got {name!r}") from None


def _resize_affine(x0: float, y0: float, w: int, h: int, W: int, H: int, x1: int, y1: int):
    """Affine of: crop at (x0, y0) of a w x h region, resize to W x H, crop at (x1, y1)."""
    sx, sy = W / w, H / h
    return (sx, sy, (0.5 - x0) * sx - 0.5 - x1, (0.5 - y0) * sy - 0.5 - y1)


def _centre_offset(outer: int, inner: int) -> int:
    """torchvision's CenterCrop offset (round half to even)."""
    return int(round((outer - inner) / 2.0))


def _centre_geometry(w: int, h: int, size: int, crop: int | None):
    """``(x0, y0, cw, ch, W, H, x1, y1)``: centre crop ``crop`` (torchvision CenterCrop), short side to
    ``size`` (torchvision Resize(int): the long side truncated), centre ``size`` square."""
    x0 = y0 = 0
    if crop:
        c = min(crop, w, h)
        x0, y0, w, h = _centre_offset(w, c), _centre_offset(h, c), c, c
    W, H = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    return x0, y0, w, h, W, H, _centre_offset(W, size), _centre_offset(H, size)


def centre_crop_resize(im: Image.Image, size: int, crop: int | None, resample: str = "bicubic"):
    """Centre-crop ``crop`` px (if given), resize the short side to ``size`` with the PIL filter
    ``resample``, centre square: torchvision's CenterCrop(crop), Resize(size), CenterCrop(size) on a PIL
    image, pixel for pixel. Returns ``(uint8 array (size, size, 3), affine)``.
    """
    im = im.convert("RGB")
    x0, y0, cw, ch, W, H, x1, y1 = _centre_geometry(*im.size, size, crop)
    if crop:
        im = im.crop((x0, y0, x0 + cw, y0 + ch))
    im = im.resize((W, H), resize_filter(resample))
    im = im.crop((x1, y1, x1 + size, y1 + size))
    return np.asarray(im, dtype=np.uint8), _resize_affine(x0, y0, cw, ch, W, H, x1, y1)


def centre_affine(w: int, h: int, size: int, crop: int | None):
    """The affine of :func:`centre_crop_resize` for a ``w x h`` source, without decoding it."""
    return _resize_affine(*_centre_geometry(w, h, size, crop))


def square_box(x: float, y: float, w: float, h: float, top: float = 0.0, bottom: float = 0.0,
               scale: float = 1.0) -> tuple[int, int, int]:
    """A square ``(left, top, side)`` around box ``(x, y, w, h)``.

    The top edge moves down by ``top * h`` and the bottom edge by ``bottom * h``; the side is the new
    height times ``scale``, centred on the box's horizontal centre and the new vertical centre.
    """
    t, b = y + top * h, y + h + bottom * h
    side = max(1, round((b - t) * scale))
    cx, cy = x + w / 2.0, (t + b) / 2.0
    return round(cx - side / 2.0), round(cy - side / 2.0), side


def box_crop_resize(im: Image.Image, box: tuple[int, int, int], size: int, resample: str = "bicubic"):
    """Crop the square ``(left, top, side)`` (black outside the image), resize to ``size`` (PIL filter)."""
    left, top, side = box
    im = im.convert("RGB").crop((left, top, left + side, top + side)).resize((size, size), resize_filter(resample))
    return np.asarray(im, dtype=np.uint8), _resize_affine(left, top, side, side, size, size, 0, 0)


def map_points(points: np.ndarray, affine) -> np.ndarray:
    """Apply an affine to ``(..., 2)`` points (float32)."""
    sx, sy, ox, oy = affine
    out = np.asarray(points, dtype=np.float32).copy()
    out[..., 0] = out[..., 0] * sx + ox
    out[..., 1] = out[..., 1] * sy + oy
    return out


def flip_points(points: np.ndarray, size: int, perm: np.ndarray | None) -> np.ndarray:
    """Mirror ``(K, 2)`` points in a ``size``-wide image; ``perm`` swaps left/right names."""
    out = points.copy()
    out[..., 0] = size - 1 - out[..., 0]
    return out[perm] if perm is not None else out

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


def _resize_affine(x0: float, y0: float, w: int, h: int, W: int, H: int, x1: int, y1: int):
    """Affine of: crop at (x0, y0) of a w x h region, resize to W x H, crop at (x1, y1)."""
    sx, sy = W / w, H / h
    return (sx, sy, (0.5 - x0) * sx - 0.5 - x1, (0.5 - y0) * sy - 0.5 - y1)


def centre_crop_resize(im: Image.Image, size: int, crop: int | None):
    """Centre-crop ``crop`` px (if given), bicubic-resize the short side to ``size``, centre square.

    Returns ``(uint8 array (size, size, 3), affine)``.
    """
    im = im.convert("RGB")
    w, h = im.size
    x0 = y0 = 0
    if crop:
        c = min(crop, w, h)
        x0, y0 = (w - c) // 2, (h - c) // 2
        im = im.crop((x0, y0, x0 + c, y0 + c))
    cw, ch = im.size
    s = size / min(cw, ch)
    W, H = max(size, round(cw * s)), max(size, round(ch * s))
    im = im.resize((W, H), Image.BICUBIC)
    x1, y1 = (W - size) // 2, (H - size) // 2
    im = im.crop((x1, y1, x1 + size, y1 + size))
    return np.asarray(im, dtype=np.uint8), _resize_affine(x0, y0, cw, ch, W, H, x1, y1)


def centre_affine(w: int, h: int, size: int, crop: int | None):
    """The affine of :func:`centre_crop_resize` for a ``w x h`` source, without decoding it."""
    x0 = y0 = 0
    if crop:
        c = min(crop, w, h)
        x0, y0, w, h = (w - c) // 2, (h - c) // 2, c, c
    s = size / min(w, h)
    W, H = max(size, round(w * s)), max(size, round(h * s))
    return _resize_affine(x0, y0, w, h, W, H, (W - size) // 2, (H - size) // 2)


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


def box_crop_resize(im: Image.Image, box: tuple[int, int, int], size: int):
    """Crop the square ``(left, top, side)`` (black outside the image), bicubic-resize to ``size``."""
    left, top, side = box
    im = im.convert("RGB").crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
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

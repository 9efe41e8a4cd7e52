"""Image grids, mask overlays and PNG writing for qualitative figures.

Images are float tensors in [-1, 1] and are mapped to uint8 with a *fixed* mapping
``round((clamp(x, -1, 1) + 1) * 127.5)`` (-1 -> 0, 0 -> 128, 1 -> 255). There is deliberately no
per-image or per-grid min-max normalisation, so contrast stays comparable across cells and grids.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

BLANK = None  # use as a cell in ``image_grid`` rows to leave that cell in the pad colour


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) float tensor in [-1, 1] (C = 1 or 3) -> uint8 (H, W, 3) array, clamped."""
    t = image.detach().float().cpu()
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with C in (1, 3), got {tuple(image.shape)}")
    t = t.expand(3, -1, -1)
    u = torch.floor((t.clamp(-1.0, 1.0) + 1.0) * 127.5 + 0.5).to(torch.uint8)
    return u.permute(1, 2, 0).contiguous().numpy()


def _pad_rgb(pad_value: float | Sequence[float]) -> np.ndarray:
    v = torch.as_tensor(pad_value, dtype=torch.float32).reshape(-1)
    if v.numel() not in (1, 3):
        raise ValueError("pad_value must be a float or an RGB triple in [-1, 1]")
    return to_uint8(v.expand(3).reshape(3, 1, 1))[0, 0]


def image_grid(
    rows: Sequence[Sequence[torch.Tensor | None]] | torch.Tensor,
    pad: int = 2,
    pad_value: float | Sequence[float] = 1.0,
) -> np.ndarray:
    """Tile images into one uint8 (H, W, 3) array.

    ``rows`` is a list of rows, each a list of (C, H, W) tensors in [-1, 1] (C = 1 or 3) or
    ``None``/``BLANK`` for an empty cell; or a tensor (R, N, C, H, W). Rows may have different
    lengths (missing cells are blank). All images must share H and W. ``pad`` pixels separate
    the cells and frame the grid; ``pad_value`` is in image space [-1, 1] (1.0 = white), a float
    or an RGB triple. No min-max normalisation is applied (see module docstring).
    """
    if isinstance(rows, torch.Tensor):
        if rows.dim() != 5:
            raise ValueError(f"tensor grids must be (R, N, C, H, W), got {tuple(rows.shape)}")
        rows = [list(r) for r in rows]
    rows = [list(r) for r in rows]
    cells = [c for r in rows for c in r if c is not None]
    if not cells:
        raise ValueError("image_grid needs at least one image")
    h, w = cells[0].shape[-2:]
    for c in cells:
        if tuple(c.shape[-2:]) != (h, w):
            raise ValueError(f"all images must share H, W; got {tuple(c.shape[-2:])} and {(h, w)}")
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    out = np.empty((n_rows * h + (n_rows + 1) * pad, n_cols * w + (n_cols + 1) * pad, 3), np.uint8)
    out[:] = _pad_rgb(pad_value)
    for i, r in enumerate(rows):
        for j, c in enumerate(r):
            if c is None:
                continue
            y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
            out[y0:y0 + h, x0:x0 + w] = to_uint8(c)
    return out


def overlay_mask(
    image: torch.Tensor,
    mask: torch.Tensor,
    color: Sequence[float] = (1.0, 0.0, 0.0),
    alpha: float = 0.5,
) -> torch.Tensor:
    """Blend ``color`` over ``image`` where ``mask`` is on; returns an RGB image in [-1, 1].

    ``image`` is (C, H, W) or (B, C, H, W) in [-1, 1] (C = 1 or 3); ``mask`` is (H, W), (1, H, W),
    (B, H, W) or (B, 1, H, W) with values in [0, 1] (soft masks blend proportionally). ``color`` is
    RGB in [0, 1]. Per pixel: ``out = (1 - alpha * m) * image + alpha * m * color``.
    """
    batched = image.dim() == 4
    img = image if batched else image[None]
    if img.dim() != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"image must be (C, H, W) or (B, C, H, W) with C in (1, 3), got {tuple(image.shape)}")
    img = img.float().expand(-1, 3, -1, -1)
    m = mask.to(img.device).float()
    while m.dim() < 4:
        m = m[None]
    if m.shape[1] != 1 or m.shape[-2:] != img.shape[-2:]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not fit image shape {tuple(image.shape)}")
    m = m.clamp(0.0, 1.0) * alpha
    col = torch.as_tensor(color, dtype=torch.float32, device=img.device).reshape(1, 3, 1, 1) * 2.0 - 1.0
    out = (1.0 - m) * img + m * col
    return out if batched else out[0]


def save_png(image: np.ndarray | torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a PNG atomically (temp file in the same directory, then ``os.replace``).

    Accepts a uint8 numpy array (H, W), (H, W, 3) or (H, W, 4) as produced by ``image_grid``,
    a uint8 tensor of the same layout, or a float tensor (C, H, W)/(H, W) in [-1, 1] (mapped with
    ``to_uint8``). Parent directories are created. Returns the path.
    """
    if isinstance(image, torch.Tensor):
        image = to_uint8(image) if image.is_floating_point() else image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"numpy images must be uint8 (use image_grid/to_uint8 first), got {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(arr).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def heatmap_png(mat, rows, cols, path, cell: int = 56) -> Path:
    """A labelled heatmap (values clipped to [0, 1], white -> blue) as PNG."""
    mat = np.asarray(mat, np.float64)
    left, top = 90, 24
    img = Image.new("RGB", (left + cell * mat.shape[1], top + cell * mat.shape[0]), "white")
    draw = ImageDraw.Draw(img)
    for j, c in enumerate(cols):
        draw.text((left + j * cell + 3, 6), c[:9], fill="black")
    for i, r in enumerate(rows):
        draw.text((4, top + i * cell + cell // 2 - 5), r[:14], fill="black")
        for j in range(mat.shape[1]):
            v = float(np.clip(mat[i, j], 0, 1))
            colour = tuple(int(255 - v * (255 - c)) for c in (30, 80, 200))
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 2, top + (i + 1) * cell - 2)
            draw.rectangle(box, fill=colour)
            draw.text((box[0] + 8, box[1] + cell // 2 - 6), f"{mat[i, j]:.2f}", fill="black" if v < 0.6 else "white")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path

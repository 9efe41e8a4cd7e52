"""Image domains on disk: ``root/{trainA,trainB,testA,testB}`` as image folders or as ``.txt`` path lists.

The ``.txt`` lists are what ``preprocess.py`` writes for CelebA attribute splits (one image path per line).
Transform: optional centre crop to ``crop`` px, resize to ``size`` px (the short side, with the PIL filter
``resample``; then a centre square), values in [-1, 1]; flips are chosen by the sampler, not here.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from data.errors import DatasetLayoutError
from data.geometry import centre_crop_resize
from data.tables import read_lines

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_domain(root: str | Path, name: str) -> list[Path]:
    """Image paths of domain ``name`` (e.g. ``trainA``): folder ``root/name/`` or list ``root/name.txt``."""
    root = Path(root)
    folder, listing = root / name, root / f"{name}.txt"
    if folder.is_dir():
        with os.scandir(folder):  # an unreadable folder is an error (rglob would skip it silently)
            pass
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        where = folder
    elif listing.is_file():
        lines = read_lines(listing)
        paths = [p if p.is_absolute() else (root / p if not p.exists() else p) for p in (Path(t) for _, t in lines)]
        where = listing
        missing = [(n, p) for (n, _), p in zip(lines, paths) if not p.is_file()]
        if missing:
            raise DatasetLayoutError(f"{listing}:{missing[0][0]}: image {missing[0][1]} does not exist "
                                     f"({len(missing)} of {len(paths)} listed images are missing)")
    else:
        raise DatasetLayoutError(
            f"{root} has neither a folder {name}/ nor a list {name}.txt; expected the layout "
            "root/{trainA,trainB,testA,testB} (folders of images or .txt lists from preprocess.py)")
    if not paths:
        raise DatasetLayoutError(f"domain {name} is empty ({where})")
    return paths


def load_image(path: Path, size: int, crop: int | None, resample: str = "bicubic") -> np.ndarray:
    """Decode, centre-crop, resize: uint8 (size, size, 3). Corrupt files raise an error naming the file."""
    try:
        with Image.open(path) as im:
            return centre_crop_resize(im, size, crop, resample)[0]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetLayoutError(f"cannot read image {path}: {e}") from None


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image's header (no decoding); errors name the file."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise DatasetLayoutError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetLayoutError(f"cannot read image {path}: {e}") from None


def to_tensor(img: np.ndarray, chw: bool = False) -> torch.Tensor:
    """uint8 HWC (or CHW) -> float32 CHW in [-1, 1], C-contiguous.

    The arithmetic is NumPy's (bit-identical to ``tensor.float().div_(127.5).sub_(1)``): on small images
    torch's intra-op threads cost far more than the work when loading in the main process.
    """
    x = np.ascontiguousarray(img if chw else img.transpose(2, 0, 1), dtype=np.float32)
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return torch.from_numpy(x)


class ImageDomain(torch.utils.data.Dataset):
    """One domain of images; items are ``{"image", "index"}``; index may be ``(i, flip)``."""

    def __init__(self, paths: list[Path], size: int, crop: int | None = None, resample: str = "bicubic"):
        self.paths, self.size, self.crop, self.resample = list(paths), size, crop, resample

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, item):
        i, flip = item if isinstance(item, tuple) else (item, False)
        img = load_image(self.paths[i], self.size, self.crop, self.resample)
        if flip:
            img = img[:, ::-1]
        return {"image": to_tensor(img), "index": torch.tensor(i)}

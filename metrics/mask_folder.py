"""Ground-truth segmentation masks from a folder of binary mask images, matched to test images by file stem."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.folders import IMAGE_EXTENSIONS, load_image


def read_mask_folder(mask_dir, image_paths, size: int, crop: int | None = None,
                     resample: str = "bicubic") -> tuple[list[int], torch.Tensor]:
    """Masks for the images in ``image_paths`` that have one: ``mask_dir/<image stem>.<png|jpg|...>``.

    Masks go through the images' geometry (``data.folders.load_image``: crop, resize, centre square) and
    are binarised at half the "on" value (1 for 0/1 files, else 255; any channel counts). Returns the
    indices into ``image_paths`` that were found and a bool tensor (N, 1, size, size). Raises
    FileNotFoundError if the folder is missing or matches no image.
    """
    mask_dir = Path(mask_dir)
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"mask folder {mask_dir} does not exist")
    by_stem = {}
    for p in sorted(mask_dir.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            if p.stem in by_stem:
                raise ValueError(f"{mask_dir}: two masks for image stem {p.stem!r}: {by_stem[p.stem].name}, {p.name}")
            by_stem[p.stem] = p
    found, masks = [], []
    for i, path in enumerate(image_paths):
        mp = by_stem.get(Path(path).stem)
        if mp is None:
            continue
        arr = load_image(mp, size, crop, resample).max(axis=2)  # first: names the file if it is not an image
        with Image.open(mp) as im:
            on = 1 if int(np.asarray(im.convert("L")).max()) <= 1 else 255  # 0/1 or 0/255 file
        masks.append(torch.from_numpy(arr.astype(np.int32) * 2 >= on)[None])
        found.append(i)
    if not found:
        raise FileNotFoundError(f"no mask in {mask_dir} matches a test image's file stem "
                                f"(e.g. {Path(image_paths[0]).stem if len(image_paths) else '?'}.png)")
    return found, torch.stack(masks)

"""Writes a small aligned-CelebA fixture in the public file formats (spacing as in the real files)."""
from pathlib import Path

import numpy as np
from PIL import Image

from data.celeba import CELEBA_ATTRIBUTES

LANDMARK_NAMES = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
                  "rightmouth_x rightmouth_y")


def random_attributes(n: int, seed: int = 0) -> np.ndarray:
    """(n, 40) in {-1, 1}; every preset of data.attributes gets members in A and B for n >= 200."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, len(CELEBA_ATTRIBUTES))) < 0.4, 1, -1).astype(np.int64)


def write_celeba(root, n: int = 240, seed: int = 0, image_size=(178, 218)) -> Path:
    """``root/celeba/`` (torchvision's layout) with n images; returns that folder."""
    base = Path(root) / "celeba"
    imgs = base / "img_align_celeba"
    imgs.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    attrs = random_attributes(n, seed)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    w, h = image_size
    for i, name in enumerate(names):
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        Image.fromarray(np.broadcast_to(colour, (h, w, 3)).copy()).save(imgs / name, quality=90)
    attr_lines = [str(n), " ".join(CELEBA_ATTRIBUTES) + " "]
    attr_lines += [f"{nm} " + " ".join(f"{v:2d}" for v in row) for nm, row in zip(names, attrs)]
    (base / "list_attr_celeba.txt").write_text("\r\n".join(attr_lines) + "\r\n")
    parts = np.where(np.arange(n) < 0.6 * n, 0, np.where(np.arange(n) < 0.8 * n, 1, 2))
    (base / "list_eval_partition.txt").write_text("".join(f"{nm} {p}\n" for nm, p in zip(names, parts)))
    ids = rng.integers(1, 40, n)
    (base / "identity_CelebA.txt").write_text("".join(f"{nm} {v}\n" for nm, v in zip(names, ids)))
    lms = np.stack([rng.integers(60, 80, n), rng.integers(105, 115, n), rng.integers(100, 115, n),
                    rng.integers(105, 115, n), rng.integers(80, 95, n), rng.integers(125, 140, n),
                    rng.integers(65, 80, n), rng.integers(145, 155, n), rng.integers(100, 112, n),
                    rng.integers(145, 155, n)], 1)
    lm_lines = [str(n), LANDMARK_NAMES] + [f"{nm}" + "".join(f"{v:5d}" for v in row) for nm, row in zip(names, lms)]
    (base / "list_landmarks_align_celeba.txt").write_text("\n".join(lm_lines) + "\n")
    boxes = rng.integers(10, 300, (n, 4))
    bb_lines = [str(n), "image_id x_1 y_1 width height"] + [
        f"{nm}" + "".join(f"{v:4d}" for v in row) for nm, row in zip(names, boxes)]
    (base / "list_bbox_celeba.txt").write_text("\n".join(bb_lines) + "\n")
    return base

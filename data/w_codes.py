"""Generator samples with their latent codes, as written by ``scripts/generate_w_dataset.py``.

Layout::

    root/images/00000/000000.png ...   image i at images/{i // 1000:05d}/{i:06d}.png (uint8 RGB)
    root/w.npy                         float32 (count, style_dim): the w that synthesised image i
    root/meta.json                     count, size, style_dim, n_latent, truncation, seed, generator;
                                       written last, so a folder without it is an interrupted run

Split: "train" = samples 0 .. count - val_count - 1, "test" = the last ``val_count`` samples.
Items: ``image`` float32 (3, H, W) in [-1, 1], ``w`` float32 (style_dim,), ``index`` int64 (the sample number
i, i.e. the row of w.npy). ``ds[(i, flip)]`` mirrors the image only: a flipped image no longer matches its w,
so train on this data with ``data.hflip: false``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from data.folders import DatasetLayoutError, to_tensor

META_KEYS = ("count", "size", "style_dim", "n_latent", "truncation", "seed", "generator")


def image_path(root: str | Path, i: int) -> Path:
    return Path(root) / "images" / f"{i // 1000:05d}" / f"{i:06d}.png"


def z_codes(seed: int, count: int, style_dim: int, batch: int):
    """Consecutive float32 blocks of the seeded standard-normal sequence (independent of ``batch``)."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, batch):
        n = min(batch, count - start)
        yield start, torch.from_numpy(rng.standard_normal((n, style_dim)).astype(np.float32))


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), the mapping of core.figures: round((x + 1) * 127.5)."""
    u = torch.floor((img.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)
    return u.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def synthesize(g, w_avg, z: torch.Tensor, truncation: float, size: int | None):
    """(w after truncation (B, style_dim), images uint8 (B, H, W, 3))."""
    w = g.truncate(g.mapping(z), truncation, w_avg)
    img = g.synthesis(w, noise_mode="const")
    if size is not None and size != img.shape[-1]:
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return w, to_uint8(img)


def write_w_dataset(g, w_avg, out, count: int, seed: int = 0, truncation: float = 0.7, size: int | None = None,
                    batch: int = 64, generator: str = "", progress: bool = False) -> Path:
    """Sample ``count`` (w, image) pairs of generator ``g`` into ``out`` (the layout above; ``meta.json`` last).
    z_i is row i of ``default_rng(seed).standard_normal((count, style_dim))`` as float32 (the same z for any
    ``batch``), w_i = w_avg + truncation * (mapping(z_i) - w_avg), image_i = synthesis(w_i) with constant noise,
    resized to ``size`` if given (bilinear, antialiased)."""
    out = Path(out)
    device = next(g.parameters()).device
    ws = np.empty((count, g.style_dim), np.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, unit="img", desc="w dataset")
    for start, z in z_codes(seed, count, g.style_dim, batch):
        w, imgs = synthesize(g, w_avg, z.to(device), truncation, size)
        ws[start:start + len(z)] = w.float().cpu().numpy()
        for k, im in enumerate(imgs):
            path = image_path(out, start + k)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(path)
        if bar is not None:
            bar.update(len(z))
    if bar is not None:
        bar.close()
    np.save(out / "w.npy", ws)
    meta = {"count": count, "size": size or g.size, "style_dim": g.style_dim, "n_latent": g.n_latent,
            "truncation": truncation, "seed": seed, "generator": generator, "generator_size": g.size,
            "noise_mode": "const", "z": "numpy default_rng(seed).standard_normal((count, style_dim)) as float32"}
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "meta.json")
    return out


def read_meta(root: str | Path) -> dict:
    """``root/meta.json`` with a clear error if it is missing (an unfinished dataset) or malformed."""
    path = Path(root) / "meta.json"
    if not Path(root).is_dir():
        raise DatasetLayoutError(f"w-code dataset folder {root} does not exist "
                                 "(make one with scripts/generate_w_dataset.py)")
    if not path.is_file():
        raise DatasetLayoutError(f"{path} is missing: {root} is not a finished w-code dataset "
                                 "(scripts/generate_w_dataset.py writes meta.json last; re-run it with --force)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetLayoutError(f"{path}: unreadable ({e})") from None
    lacking = [k for k in META_KEYS if k not in meta] if isinstance(meta, dict) else list(META_KEYS)
    if lacking:
        raise DatasetLayoutError(f"{path}: missing keys {lacking}")
    return meta


class WCodeDataset(torch.utils.data.Dataset):
    """(image, w) pairs of a generated dataset; images are decoded lazily (resized to ``size`` if given)."""

    def __init__(self, root: str | Path, size: int | None = None, split: str = "train", val_count: int = 256):
        self.root = Path(root)
        self.meta = meta = read_meta(root)
        count = int(meta["count"])
        if split not in ("train", "test"):
            raise ValueError(f"split must be train|test, got {split!r}")
        if not 0 <= val_count < count:
            raise DatasetLayoutError(f"{root}: val_count {val_count} must be in [0, count={count})")
        self.size = int(size or meta["size"])
        self.w = self._load_w(count, int(meta["style_dim"]))
        start, stop = (0, count - val_count) if split == "train" else (count - val_count, count)
        self.indices = np.arange(start, stop)
        missing = [image_path(root, int(i)) for i in self.indices if not image_path(root, int(i)).is_file()]
        if missing:
            raise DatasetLayoutError(f"{root}: {len(missing)} of {len(self.indices)} {split} images are missing, "
                                     f"e.g. {missing[0]}")

    def _load_w(self, count: int, style_dim: int) -> np.ndarray:
        path = self.root / "w.npy"
        if not path.is_file():
            raise DatasetLayoutError(f"{path} is missing")
        try:
            w = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetLayoutError(f"{path}: unreadable ({e})") from None
        if w.shape != (count, style_dim) or w.dtype != np.float32:
            raise DatasetLayoutError(f"{path} holds {w.dtype} {w.shape}, but meta.json says float32 "
                                     f"({count}, {style_dim})")
        return np.ascontiguousarray(w)

    def __len__(self) -> int:
        return len(self.indices)

    def load_image(self, i: int) -> np.ndarray:
        """uint8 (H, W, 3) of sample number ``i`` at ``self.size``."""
        path = image_path(self.root, i)
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (self.size, self.size):
                    im = im.resize((self.size, self.size), Image.BICUBIC)
                return np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DatasetLayoutError(f"cannot read image {path}: {e}") from None

    def __getitem__(self, item):
        k, flip = item if isinstance(item, tuple) else (item, False)
        k = int(k)
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(f"index {k} out of range for {len(self)} samples")
        i = int(self.indices[k])
        img = self.load_image(i)
        if flip:
            img = img[:, ::-1]
        return {"image": to_tensor(img), "w": torch.from_numpy(self.w[i].copy()),
                "index": torch.tensor(i, dtype=torch.int64)}

"""``SyntheticFaces``: pre-rendered synthetic faces in memory, cached as .npz."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from data.synthetic.factors import (
    CONTENT_ATTRIBUTES, FLIP_PERM, N_LANDMARKS, RENDER_VERSION, _attribute_probs, sample_factors,
)
from data.synthetic.painter import _check_size, render


def _cache_key(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:20]


try:
    import torch
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover - the renderer itself does not need torch
    torch = None
    _TorchDataset = object


WORLD_KEYS = ("pose_range", "expression_scale")  # the data keys that change the synthetic world's renders


def world_args(d) -> dict:
    """The :class:`SyntheticFaces` arguments of data config ``d``'s world beyond seed and identities."""
    return {k: d[k] for k in WORLD_KEYS}


class SyntheticFaces(_TorchDataset):
    """Pre-rendered in-memory synthetic faces (optionally cached as an .npz under ``cache_dir``).

    Items: ``image`` float32 (3,H,W) in [-1,1], ``mask`` float32 (len(CONTENT_ATTRIBUTES),H,W),
    ``landmarks`` float32 (N_LANDMARKS,2) pixel (x,y), ``identity`` / ``index`` int64 scalars,
    ``attrs`` float32 presence. Index with ``(i, flip)`` for a deterministic horizontal mirror.
    Raw arrays: ``images`` (N,H,W,3) uint8, ``masks`` (N,A,H,W) uint8 (x255), ``landmarks``,
    ``identities`` int64, ``attrs`` uint8.
    """

    def __init__(self, size: int = 64, length: int = 10000, seed: int = 0, split: str = "train",
                 n_identities: int = 1000, attributes: dict | None = None, cache_dir: str | None = None,
                 progress: bool = False, pose_range: float = 1.0, expression_scale: float = 1.0):
        self.size = _check_size(size)
        if length < 0:
            raise ValueError("length must be >= 0")
        self.length, self.seed, self.split = int(length), int(seed), split
        self.n_identities = int(n_identities)
        self.pose_range = float(pose_range)
        self.expression_scale = float(expression_scale)
        self.attributes = attributes
        self._probs = _attribute_probs(attributes)
        params = {"version": RENDER_VERSION, "size": self.size, "length": self.length,
                  "seed": self.seed, "split": split, "n_identities": self.n_identities,
                  "attributes": self._probs}
        if self.pose_range != 1.0:  # the world's own range keeps the keys (and caches) it always had
            params["pose_range"] = self.pose_range
        if self.expression_scale != 1.0:
            params["expression_scale"] = self.expression_scale
        self.cache_key = _cache_key(params)
        self.cache_path = None
        data = None
        if cache_dir is not None:
            os.makedirs(cache_dir, exist_ok=True)
            self.cache_path = os.path.join(cache_dir, f"synthetic_{self.cache_key}.npz")
            data = self._load(self.cache_path)
        if data is None:
            data = self._generate(progress)
            if self.cache_path is not None:
                self._save(self.cache_path, data)
        self.images, self.masks = data["images"], data["masks"]
        self.landmarks, self.identities, self.attrs = data["landmarks"], data["identities"], data["attrs"]

    # -- generation / cache
    def _generate(self, progress: bool) -> dict:
        n, s, A = self.length, self.size, len(CONTENT_ATTRIBUTES)
        out = {"images": np.empty((n, s, s, 3), np.uint8),
               "masks": np.empty((n, A, s, s), np.uint8),
               "landmarks": np.empty((n, N_LANDMARKS, 2), np.float32),
               "identities": np.empty((n,), np.int64),
               "attrs": np.empty((n, A), np.uint8)}
        it = range(n)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc=f"synthetic faces {self.split} {s}px", unit="img")
        for k in it:
            f = self.factors(k)
            r = render(f, s)
            out["images"][k] = r["image"]
            for j, name in enumerate(CONTENT_ATTRIBUTES):
                m = r["masks"][name] * 255.0 + 0.5
                out["masks"][k, j] = m.astype(np.uint8)
                out["attrs"][k, j] = f[name] is not None
            out["landmarks"][k] = r["landmarks"]
            out["identities"][k] = f["identity_id"]
        return out

    def _expected_shapes(self) -> dict:
        n, s, A = self.length, self.size, len(CONTENT_ATTRIBUTES)
        return {"images": ((n, s, s, 3), np.uint8), "masks": ((n, A, s, s), np.uint8),
                "landmarks": ((n, N_LANDMARKS, 2), np.float32), "identities": ((n,), np.int64),
                "attrs": ((n, A), np.uint8)}

    def _load(self, path: str):
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != self.cache_key:
                    return None
                data = {}
                for k, (shape, dtype) in self._expected_shapes().items():
                    arr = z[k]  # zip CRC is verified on read
                    if arr.shape != shape or arr.dtype != dtype:
                        return None
                    data[k] = arr
            return data
        except Exception:  # corrupt / truncated / foreign file: regenerate
            return None

    def _save(self, path: str, data: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".synthetic_", suffix=".tmp", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, key=np.array(self.cache_key), **data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    # -- access
    def __len__(self) -> int:
        return self.length

    def factors(self, i: int) -> dict:
        return sample_factors(self.seed, int(i), self.n_identities, self._probs, split=self.split,
                              pose_range=self.pose_range, expression_scale=self.expression_scale)

    def __getitem__(self, i):
        flip = False
        if isinstance(i, tuple):
            i, flip = i
        i = int(i)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} samples")
        img, mask, lm = self.images[i], self.masks[i], self.landmarks[i]
        if flip:
            img, mask = img[:, ::-1], mask[:, :, ::-1]
            lm = lm[FLIP_PERM].copy()
            lm[:, 0] = (self.size - 1) - lm[:, 0]
        image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)
        mask_t = torch.from_numpy(np.ascontiguousarray(mask)).float().div_(255.0)
        return {
            "image": image,
            "mask": mask_t,
            "landmarks": torch.from_numpy(np.array(lm, dtype=np.float32)),
            "identity": torch.tensor(int(self.identities[i]), dtype=torch.int64),
            "attrs": torch.from_numpy(self.attrs[i].astype(np.float32)),
            "index": torch.tensor(i, dtype=torch.int64),
        }

"""Synthetic faces with their pose and expression ground truth per item (flip-aware).

:class:`FaceFactors` wraps a :class:`data.synthetic.SyntheticFaces` and adds ``pose`` (tx, ty, roll,
scale) and ``expression`` (smile, mouth_open, brow_raise) vectors, the order of
:func:`data.synthetic.factor_vectors`, precomputed from ``ds.factors(i)``. A mirrored item ``(i, True)``
gets the factors of the mirrored scene (:func:`data.synthetic.mirror`): tx and roll negated; its image
and landmarks are flipped by ``SyntheticFaces`` itself.
"""
from __future__ import annotations

import numpy as np
import torch

from data.synthetic import factor_vectors

# signs applied to (tx, ty, roll, scale) by a horizontal mirror
POSE_FLIP_SIGN = np.array([-1.0, 1.0, -1.0, 1.0], np.float32)


def pose_expression_arrays(ds, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) pose and (N, 3) expression float32 arrays of the first ``n`` (default all) items of ``ds``."""
    n = len(ds) if n is None else min(n, len(ds))
    pose = np.empty((n, 4), np.float32)
    expr = np.empty((n, 3), np.float32)
    for i in range(n):
        v = factor_vectors(ds.factors(i))
        pose[i], expr[i] = v["pose"], v["expression"]
    return pose, expr


class FaceFactors(torch.utils.data.Dataset):
    """``SyntheticFaces`` items plus ``pose`` (4,) and ``expression`` (3,) float32 tensors."""

    def __init__(self, faces):
        self.faces = faces
        self.pose, self.expression = pose_expression_arrays(faces)

    def __len__(self) -> int:
        return len(self.faces)

    def __getattr__(self, name):
        # raw arrays and attributes of the wrapped dataset (size, landmarks, identities, n_identities, ...)
        if name == "faces":
            raise AttributeError(name)
        return getattr(self.faces, name)

    def __getitem__(self, item):
        i, flip = item if isinstance(item, tuple) else (item, False)
        out = self.faces[(i, flip)]
        k = int(out["index"])
        pose = self.pose[k] * POSE_FLIP_SIGN if flip else self.pose[k]
        out["pose"] = torch.from_numpy(np.array(pose, dtype=np.float32))
        out["expression"] = torch.from_numpy(self.expression[k].copy())
        return out

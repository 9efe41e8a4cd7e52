"""Identity-grouped synthetic items: every batch REALLY holds identity positives.

The loop's :class:`data.sampler.StepBatchSampler` draws dataset *indices*; here one index is a whole
group of ``group_size`` images of one identity, so a batch of ``data.batch_size`` indices holds
``batch_size`` identities x ``group_size`` images and every image has ``group_size - 1`` positives.
Group ``j`` is identity ``ids[j % n_ids]`` with images picked by a generator seeded by
``(seed, j)``: a pure function of the index, hence of (seed, step) under the step-deterministic sampler.
(MAD's default plain shuffling left most anchors without a same-identity positive; spec B.9.)

Each image carries flip-aware ground truth from :func:`data.synthetic.factor_vectors`: ``pose`` (4),
``identity`` vector (24), ``expression`` (3), ``style`` (15); a flipped group uses the mirrored scene.
:class:`IdentityGroups` works on any dataset exposing ``identities`` whose items (``ds[(i, flip)]``) are dicts
of tensors (e.g. :class:`data.vggface2.VGGFace2`); :class:`ImageChunks` gives unlabelled-by-identity data
(e.g. AffectNet) the same batch shape.
"""
from __future__ import annotations

import numpy as np
import torch

from data.synthetic import FACTOR_DIMS, SyntheticFaces, factor_vectors, mirror, world_args

FACTOR_KEYS = ("pose", "identity", "expression", "style")


def factor_table(faces, flip: bool) -> dict[str, np.ndarray]:
    """(N, FACTOR_DIMS[k]) float32 arrays of every item's factor vectors (of the mirrored scene if ``flip``)."""
    out = {k: np.empty((len(faces), FACTOR_DIMS[k]), np.float32) for k in FACTOR_KEYS}
    for i in range(len(faces)):
        f = faces.factors(i)
        v = factor_vectors(mirror(f) if flip else f)
        for k in FACTOR_KEYS:
            out[k][i] = v[k]
    return out


class FactorFaces(torch.utils.data.Dataset):
    """``SyntheticFaces`` items plus float32 ``f_<group>`` factor vectors (flip-aware)."""

    def __init__(self, faces):
        self.faces = faces
        self.tables = {False: factor_table(faces, False), True: factor_table(faces, True)}

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def identities(self):
        return self.faces.identities

    def __getitem__(self, item):
        i, flip = item if isinstance(item, tuple) else (item, False)
        out = self.faces[(i, flip)]
        for k in FACTOR_KEYS:
            out[f"f_{k}"] = torch.from_numpy(self.tables[bool(flip)][k][int(out["index"])].copy())
        return out


class _StackedGroups(torch.utils.data.Dataset):
    """Index ``j`` (or ``(j, flip)``) -> the items ``self.indices(j)`` of ``self.items``, stacked per key."""

    def __getitem__(self, item):
        j, flip = item if isinstance(item, tuple) else (item, False)
        rows = [self.items[(int(i), flip)] for i in self.indices(int(j))]
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


class IdentityGroups(_StackedGroups):
    """Index ``j`` -> ``group_size`` images of one identity, stacked: ``image`` (m, 3, H, W) etc.

    ``faces``: any dataset with ``identities`` (one per item) and dict items for ``(i, flip)``. Only
    identities with at least ``group_size`` images are used. ``repeats`` groups per identity per epoch
    (different image subsets when an identity has more than ``group_size`` images).
    """

    def __init__(self, faces, group_size: int = 4, seed: int = 0, repeats: int = 1):
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 to give positives, got {group_size}")
        self.items, self.group_size, self.seed, self.repeats = faces, int(group_size), int(seed), int(repeats)
        ids = np.asarray(faces.identities)
        by_id: dict[int, list[int]] = {}
        for i, k in enumerate(ids.tolist()):
            by_id.setdefault(k, []).append(i)
        self.members = [np.array(v) for k, v in sorted(by_id.items()) if len(v) >= group_size]
        if not self.members:
            raise ValueError(f"no identity has {group_size} images; lower model.group_size (synthetic: raise "
                             f"data.train_length or lower data.n_identities)")

    def __len__(self) -> int:
        return len(self.members) * self.repeats

    def indices(self, j: int) -> np.ndarray:
        """The dataset indices of group ``j`` (deterministic in ``(seed, j)``)."""
        pool = self.members[j % len(self.members)]
        rng = np.random.default_rng([self.seed, 7919, int(j)])
        return rng.choice(pool, self.group_size, replace=False)



class ImageChunks(_StackedGroups):
    """Index ``j`` -> the ``size`` images ``perm[j*size:(j+1)*size]`` of a fixed seeded permutation, stacked like
    :class:`IdentityGroups` (so every source of a step gives ``batch_size * size`` images). A remainder of
    fewer than ``size`` images is left out."""

    def __init__(self, dataset, size: int, seed: int = 0):
        if len(dataset) < size:
            raise ValueError(f"{type(dataset).__name__} has {len(dataset)} images, fewer than one group of {size}")
        self.items, self.size = dataset, int(size)
        self.perm = np.random.default_rng([int(seed), 4099]).permutation(len(dataset))

    def __len__(self) -> int:
        return len(self.items) // self.size

    def indices(self, j: int) -> np.ndarray:
        return self.perm[j * self.size:(j + 1) * self.size]



def flatten_groups(batch: dict) -> dict:
    """Collated groups (B, m, ...) -> flat (B*m, ...) tensors, group members adjacent."""
    return {k: v.reshape(v.shape[0] * v.shape[1], *v.shape[2:]) for k, v in batch.items()}


def build_identity_groups(cfg, split: str):
    """Training: :class:`IdentityGroups`; test: flat :class:`FactorFaces` (for grids and eval)."""
    d = cfg.data
    length = d.train_length if split == "train" else d.test_length
    faces = SyntheticFaces(d.size, length, d.seed, split, d.n_identities, cache_dir=d.cache_dir,
                           **world_args(d))
    items = FactorFaces(faces)
    if split != "train":
        return items
    return IdentityGroups(items, cfg.model.group_size, cfg.seed)

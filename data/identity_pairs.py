"""Pairs of images of DIFFERENT identities over a labelled dataset (e.g. :class:`data.synthetic.SyntheticFaces`).

Item ``k`` of a dataset of ``n`` images and ``partners`` partners per image is image ``i = k % n`` paired with
a partner drawn uniformly among the images whose identity differs from ``i``'s, by an RNG seeded with
``(seed, k)``. The pair is a pure function of ``k``, so the loop's step-deterministic sampler
(``data/sampler.py``) stays in charge of which pairs a step sees and a resumed run replays them exactly.
``(k, flip)`` mirrors both images. The G2G original pairs random halves of a batch (possibly one person
twice); here the partner never shares the identity.
"""
from __future__ import annotations

import numpy as np
import torch


class IdentityPairs(torch.utils.data.Dataset):
    """Items: ``image``/``identity``/``index`` of image i and ``image2``/``identity2``/``index2`` of its partner."""

    MAX_TRIES = 64

    def __init__(self, dataset, seed: int = 0, partners: int = 8):
        self.dataset, self.seed, self.partners = dataset, int(seed), int(partners)
        self.identities = np.asarray(dataset.identities)
        self.n = len(self.identities)
        if self.partners < 1:
            raise ValueError(f"partners must be >= 1, got {partners}")
        if self.n and len(np.unique(self.identities)) < 2:
            raise ValueError("identity pairs need at least two identities in the dataset")

    def __len__(self):
        return self.n * self.partners

    def partner(self, k: int) -> int:
        """Index of item ``k``'s partner: uniform over the images of another identity."""
        i = k % self.n
        rng = np.random.default_rng([self.seed, 0x6267, int(k)])
        for _ in range(self.MAX_TRIES):  # rejection sampling keeps the draw uniform
            j = int(rng.integers(self.n))
            if self.identities[j] != self.identities[i]:
                return j
        others = np.flatnonzero(self.identities != self.identities[i])
        return int(others[rng.integers(len(others))])

    def __getitem__(self, item):
        k, flip = item if isinstance(item, tuple) else (item, False)
        k = int(k)
        if not 0 <= k < len(self):
            raise IndexError(f"index {k} out of range for {len(self)} pairs")
        a, b = self.dataset[(k % self.n, flip)], self.dataset[(self.partner(k), flip)]
        return {"image": a["image"], "identity": a["identity"], "index": a["index"],
                "image2": b["image"], "identity2": b["identity"], "index2": b["index"]}


def labelled_faces(d, split: str):
    """The identity-labelled images pairs are drawn from: synthetic renders, or aligned CelebA with its
    ``identity_CelebA.txt`` (official partition: train -> train, test -> test; served from the uint8 cache
    when ``data.cache`` allows)."""
    if d.name == "synthetic":
        from data.synthetic import SyntheticFaces, world_args

        n = d.train_length if split == "train" else d.test_length
        return SyntheticFaces(size=d.size, length=n, seed=d.seed, split=split, n_identities=d.n_identities,
                              cache_dir=d.cache_dir, **world_args(d))
    if d.name == "celeba":
        from data import _cache_dir
        from data.celeba import CelebA, find_root, locate
        from data.errors import DatasetLayoutError

        if not d.root:
            raise DatasetLayoutError("data.root must point to the CelebA folder (img_align_celeba/, "
                                     "list_attr_celeba.txt, list_eval_partition.txt, identity_CelebA.txt)")
        root = find_root(d.root)
        faces = CelebA(root, split, d.size, d.crop, resample=d.resize_filter)
        if "identity" not in faces.labels:
            raise DatasetLayoutError(f"identity pairs need CelebA's identity labels: {locate(root, 'identity')}")
        return faces.use_cache(_cache_dir(d, root), f"celeba_{split}", d.cache, d.workers)
    raise ValueError(f"identity pairs need data.name synthetic | celeba, got {d.name!r}")

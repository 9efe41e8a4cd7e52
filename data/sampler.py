"""Step-deterministic batch streams.

The batch a rank sees at a step is a pure function of (seed, stream name, step, rank, world size):
global sample position p = (step * world + rank) * batch + k walks through a fresh seeded permutation
per epoch, and the horizontal flip of each sample is a seeded coin of p. Resuming at step s therefore
replays exactly the data an uninterrupted run would have seen, and a 2-process run sees the same
samples as a 1-process run with twice the batch.
"""
from __future__ import annotations

import zlib

import torch


def _stream_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**62)


class StepBatchSampler(torch.utils.data.Sampler):
    """Infinite sampler yielding lists of ``(index, flip)`` for steps ``start_step, start_step+1, ...``."""

    def __init__(self, length: int, batch_size: int, seed: int, name: str, rank: int = 0, world: int = 1,
                 start_step: int = 0, flip: bool = True, shuffle: bool = True):
        if length <= 0:
            raise ValueError(f"stream {name!r} has no samples")
        self.length, self.batch_size, self.rank, self.world = length, batch_size, rank, world
        self.seed, self.start_step, self.flip, self.shuffle = _stream_seed(seed, name), start_step, flip, shuffle
        self._perm_epoch, self._perm = None, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm_epoch != epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(self.seed + epoch)
                self._perm = torch.randperm(self.length, generator=g)
            else:
                self._perm = torch.arange(self.length)
            self._perm_epoch = epoch
        return self._perm

    def batch_at(self, step: int) -> list[tuple[int, bool]]:
        start = (step * self.world + self.rank) * self.batch_size
        out = []
        for p in range(start, start + self.batch_size):
            idx = int(self._permutation(p // self.length)[p % self.length])
            flip = self.flip and (zlib.crc32(f"{self.seed}:{p}".encode()) & 1) == 1
            out.append((idx, flip))
        return out

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.batch_at(step)
            step += 1

    def __len__(self):  # infinite; DataLoader only needs this for progress heuristics
        return 2**62


class Uint8Images(torch.utils.data.Dataset):
    """Wraps a dataset so worker processes send ``image`` as uint8 (4x fewer bytes between processes).

    Our images all come from 8-bit sources, so [-1, 1] floats map back to the same uint8 values exactly;
    :func:`images_to_float` undoes it in the main process (or on the GPU, after the copy).
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        out = dict(self.dataset[item])
        out["image"] = out["image"].add(1.0).mul_(127.5).round_().to(torch.uint8)
        return out


def images_to_float(batch: dict) -> dict:
    """uint8 ``image`` entries (from :class:`Uint8Images`) back to float in [-1, 1]; others unchanged."""
    img = batch.get("image")
    if img is not None and img.dtype == torch.uint8:
        batch = {**batch, "image": img.float().div_(127.5).sub_(1.0)}
    return batch


def make_stream(dataset, batch_size: int, seed: int, name: str, rank: int, world: int, start_step: int,
                flip: bool, workers: int = 0, pin_memory: bool = False):
    """An endless iterator of collated batches starting at ``start_step``.

    With worker processes, images travel as uint8; call :func:`images_to_float` on each batch
    (``core.runtime.to_device`` does).
    """
    sampler = StepBatchSampler(len(dataset), batch_size, seed, name, rank, world, start_step, flip)
    loader = torch.utils.data.DataLoader(Uint8Images(dataset) if workers > 0 else dataset, batch_sampler=sampler,
                                         num_workers=workers, pin_memory=pin_memory,
                                         persistent_workers=workers > 0)
    return iter(loader)

"""Process-level helpers shared by the entry points: device choice, seeding, RNG snapshots, memory format."""
from __future__ import annotations

import contextlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from data.sampler import images_to_float


def pick_device(kind: str, local_rank: int = 0) -> torch.device:
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            from core.cli import RunError

            raise RunError("device=cuda was requested but CUDA is not available; use device=cpu or auto")
        return torch.device("cuda", local_rank)
    if kind != "cpu":
        raise ValueError(f"device must be auto|cpu|cuda, got {kind!r}")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def preserved_rng():
    """Run a block (e.g. an evaluation during training) without moving the Python / NumPy / torch RNGs."""
    from core.checkpoint import rng_state, set_rng_state

    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def to_channels_last(method) -> None:
    """channels_last for every 4-d parameter and buffer of ``method`` (``Module.to(memory_format=...)`` refuses
    modules that also hold 5-d weights, such as StyleGAN2's modulated convs)."""
    for t in list(method.parameters()) + list(method.buffers()):
        if t.dim() == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)


def compile_nets(method, setting) -> None:
    """``torch.compile`` every network's forward in place (``Module.compile``): parameter names, state_dict
    keys and checkpoints stay those of the uncompiled nets. ``setting``: true (inductor) or a backend name."""
    if setting is not True and not isinstance(setting, str):
        raise ValueError(f"train.compile must be false, true or a torch.compile backend name, got {setting!r}")
    for net in method.nets.values():
        net.compile(backend="inductor" if setting is True else setting)


def to_device(batch, device, channels_last=False):
    """A (nested) batch on ``device``; uint8 images become floats in [-1, 1]."""
    if isinstance(batch, dict):
        return images_to_float({k: to_device(v, device, channels_last) for k, v in batch.items()})
    if torch.is_tensor(batch):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def run_metadata() -> dict:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return {"argv": sys.argv, "git": rev, "torch": torch.__version__, "python": sys.version.split()[0]}

"""Self-contained checkpoint files: networks, optimizers, EMA, counters, RNG states and the resolved config.

Files are written to a temporary name and renamed into place, so a crash mid-write never leaves a
half-written checkpoint under the real name.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FORMAT = "facedis-checkpoint-v1"
LATEST = "checkpoint-latest.pt"
BEST = "checkpoint-best.pt"  # written by the evaluation-during-training hook (core/hooks.PeriodicEval)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or not one of ours."""


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(payload: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path.tmp``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read one of our checkpoints with a clear error for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated zip, pickle garbage, ...
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this project (format key missing)")
    return payload


def find_latest(run_dir: str | os.PathLike) -> Path | None:
    p = Path(run_dir) / LATEST
    return p if p.is_file() else None

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

from core.torch_files import torch_load

FORMAT = "facedis-checkpoint-v1"
CHECKPOINT_FILE = "a training checkpoint of this project (train.py's checkpoint-*.pt)"
# checkpoints are renamed into place whole (save_atomic): a broken one was cut short on its way here
COPY_AGAIN = "copy it again from the run folder that wrote it"
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


def load(path: str | os.PathLike, map_location="cpu", what: str = CHECKPOINT_FILE) -> dict:
    """Read one of our checkpoints with a clear error for missing, corrupt or foreign files (``what``: the
    checkpoint the caller expects, for the message)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    payload = torch_load(path, what, weights_only=False, advice=COPY_AGAIN, error=CheckpointError,
                         map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by this project (format key missing)")
    return payload


def find_latest(run_dir: str | os.PathLike) -> Path | None:
    p = Path(run_dir) / LATEST
    return p if p.is_file() else None


def snapshots(run_dir: str | os.PathLike) -> list[Path]:
    """A run's numbered snapshots (``checkpoint-NNNNNNN.pt``) in step order, plus ``checkpoint-latest.pt`` where
    it is newer than the last one; [] for a folder without checkpoints."""
    run_dir = Path(run_dir)
    paths = sorted(run_dir.glob("checkpoint-[0-9]*.pt"))
    latest = run_dir / LATEST
    if latest.is_file() and (not paths or load(latest)["step"] > int(paths[-1].stem.split("-")[1])):
        paths.append(latest)
    return paths

"""Learning-rate schedules: a pure function of the step, so a resumed run sets the same rates."""
from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "cosine")


def cosine_lr(base: float, step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1.0 + math.cos(math.pi * t))


def check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise ValueError(f"model.lr_schedule must be one of {'|'.join(SCHEDULES)}, got {name!r}")


def set_lr(opt: torch.optim.Optimizer, base: float, schedule: str, step: int, total: int, warmup: int) -> float:
    """Set every group of ``opt`` to ``schedule``'s rate at ``step`` (``constant``: ``base``); returns it."""
    lr = base if schedule == "constant" else cosine_lr(base, step, total, warmup)
    for g in opt.param_groups:
        g["lr"] = lr
    return lr

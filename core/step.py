"""What a method's train step gets from the loop: autocast, loss scaling, cross-rank gradient averaging."""
from __future__ import annotations

import contextlib

import torch

from core import dist


class StepContext:
    """What a train step needs from the loop: autocast, loss scaling, cross-rank gradient averaging."""

    def __init__(self, device: torch.device, amp: str = "none"):
        self.device = device
        self.amp = amp if device.type == "cuda" else "none"
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be none|bf16|fp16, got {amp!r}")
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        self.scalers: dict[str, torch.amp.GradScaler] = {}

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _scaler(self, name: str):
        if self.amp != "fp16":
            return None
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler(self.device.type)
        return self.scalers[name]

    def scale(self, loss: torch.Tensor, opt_name: str) -> torch.Tensor:
        """``loss`` scaled for ``opt_name``'s fp16 GradScaler (unchanged without one)."""
        scaler = self._scaler(opt_name)
        return scaler.scale(loss) if scaler else loss

    def backward(self, loss: torch.Tensor, opt_name: str) -> None:
        self.scale(loss, opt_name).backward()

    def step(self, opt: torch.optim.Optimizer, opt_name: str, clip_norm: float | None = None) -> None:
        """Average gradients over ranks, unscale, clip to ``clip_norm`` (if given), then step."""
        params = [p for g in opt.param_groups for p in g["params"]]
        dist.average_gradients(params)
        scaler = self._scaler(opt_name)
        if scaler:
            scaler.unscale_(opt)
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    def state_dict(self) -> dict:
        return {k: s.state_dict() for k, s in self.scalers.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, s in state.items():
            if self._scaler(k) is not None:
                self.scalers[k].load_state_dict(s)

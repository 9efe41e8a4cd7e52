"""What a method's train step gets from the loop: autocast, loss scaling, cross-rank gradient averaging."""
from __future__ import annotations

import contextlib
import functools
import sys

import torch

from core import dist


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16) and oneDNN uses it; elsewhere bf16
    autocast on CPU is emulated and slower than fp32."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    if not sys.platform.startswith("linux"):
        return True  # oneDNN's own check above is all there is to go on
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(device: torch.device, amp: str, cpu_amp: str = "none") -> str:
    """The autocast actually used: CUDA takes ``amp``; a CPU takes ``cpu_amp``, bf16 only where the CPU computes
    bf16 natively (``cpu_has_native_bf16``; elsewhere fp32)."""
    if amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be none|bf16|fp16, got {amp!r}")
    if cpu_amp not in ("none", "bf16"):
        raise ValueError(f"cpu_amp must be none|bf16, got {cpu_amp!r}")
    if device.type == "cuda":
        return amp
    return "bf16" if cpu_amp == "bf16" and device.type == "cpu" and cpu_has_native_bf16() else "none"


class StepContext:
    """What a train step needs from the loop: autocast, loss scaling, cross-rank gradient averaging."""

    def __init__(self, device: torch.device, amp: str = "none", cpu_amp: str = "none"):
        self.device = device
        self.amp = resolve_amp(device, amp, cpu_amp)
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

"""The Method interface: a method owns its networks, optimizers and update order."""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

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


class Method(nn.Module):
    """Base class. Subclasses fill ``self.nets`` and ``self.optims`` and implement ``train_step``.

    ``ema_nets`` names the networks that get an exponential moving average copy when
    ``train.ema_kimg > 0`` (half-life in thousands of images, as in StyleGAN2-ADA).
    """

    ema_nets: tuple[str, ...] = ()
    # ``--weights [NAME=]PATH`` of train.py / eval.py: NAME -> the config key of a pretrained weight file; the
    # first entry is the default NAME
    weight_keys: dict[str, str] = {}

    def __init__(self, cfg, device: torch.device):
        super().__init__()
        self.cfg, self.device = cfg, device
        self.nets = nn.ModuleDict()
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.ema: nn.ModuleDict | None = None

    # --- data ------------------------------------------------------------------------------------
    @staticmethod
    def datasets(cfg, split: str) -> dict:
        """Named datasets; the loop draws ``data.batch_size`` samples from each per step."""
        raise NotImplementedError

    # --- training --------------------------------------------------------------------------------
    def train_step(self, batch: dict, step: int, ctx: StepContext) -> dict[str, float]:
        raise NotImplementedError

    def _copy_for_ema(self) -> nn.ModuleDict:
        return nn.ModuleDict({k: copy.deepcopy(self.nets[k]).eval().requires_grad_(False) for k in self.ema_nets})

    def init_ema(self) -> None:
        if self.cfg.train.ema_kimg > 0 and self.ema_nets:
            self.ema = self._copy_for_ema()

    @torch.no_grad()
    def update_ema(self, batch_images: int) -> None:
        if self.ema is None:
            return
        beta = 0.5 ** (batch_images / (self.cfg.train.ema_kimg * 1000.0))
        for k, ema_net in self.ema.items():
            for pe, p in zip(ema_net.parameters(), self.nets[k].parameters()):
                pe.lerp_(p.detach(), 1.0 - beta)
            for be, b in zip(ema_net.buffers(), self.nets[k].buffers()):
                be.copy_(b)

    def eval_nets(self, use_ema: bool = True) -> dict[str, nn.Module]:
        """Networks for inference: EMA copies where they exist (if ``use_ema``), all in eval mode."""
        nets = {k: v for k, v in self.nets.items()}
        if use_ema and self.ema is not None:
            nets.update(self.ema.items())
        for n in nets.values():
            n.eval()
        return nets

    # --- inspection ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grids(self, fixed: dict) -> dict[str, torch.Tensor]:
        """Image grids (name -> (R, C, 3, H, W) in [-1, 1]) from a fixed batch, for TensorBoard/PNGs."""
        return {}

    # --- state -----------------------------------------------------------------------------------
    def training_state(self) -> dict:
        return {
            "nets": self.nets.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
        }

    def load_training_state(self, state: dict, weights_only: bool = False) -> None:
        self.nets.load_state_dict(state["nets"])
        if state.get("ema") is not None:
            if self.ema is None:  # e.g. eval.py, which never calls init_ema
                self.ema = self._copy_for_ema()
            self.ema.load_state_dict(state["ema"])
        if not weights_only:
            for k, o in self.optims.items():
                o.load_state_dict(state["optims"][k])

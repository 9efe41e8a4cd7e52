"""The Method interface: a method owns its networks, optimizers and update order."""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from core.step import StepContext


class Method(nn.Module):
    """Base class. Subclasses fill ``self.nets`` and ``self.optims`` and implement ``train_step``.

    ``ema_nets`` names the networks that get an exponential moving average copy when
    ``train.ema_kimg > 0`` (half-life in thousands of images, as in StyleGAN2-ADA).
    """

    ema_nets: tuple[str, ...] = ()
    # task interfaces this method implements (models/tasks.py); each is scored by its protocol in evaluation/
    tasks: tuple[str, ...] = ()
    # evaluation protocols eval.py runs, in order (evaluation.PROTOCOLS); empty = the tasks' protocols
    evaluations: tuple[str, ...] = ()
    # ``--weights [NAME=]PATH`` of train.py / eval.py: NAME -> the config key of a pretrained weight file; the
    # first entry is the default NAME
    weight_keys: dict[str, str] = {}

    def __init__(self, cfg, device: torch.device):
        super().__init__()
        self.cfg, self.device = cfg, device
        self.nets = nn.ModuleDict()
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.ema: nn.ModuleDict | None = None

    @property
    def image_size(self) -> int:
        """The resolution the networks take and give (``data.size`` unless a method says otherwise)."""
        return self.cfg.data.size

    # --- benchmarks and tests ---------------------------------------------------------------------
    @classmethod
    def stub_weights(cls, cfg, stub) -> None:
        """Ask ``stub`` (models/stub_weights.StubWeights) for a random file of every pretrained network ``cfg``
        needs and leaves null: ``stub.need(config key, kind, writer)``. Methods without weight files: nothing."""

    @classmethod
    def tiny(cls, tmp) -> tuple[str, list[str]]:
        """(experiment config, overrides) of a seconds-long CPU run of this method, writing any files it needs
        (random pretrained weights, data) under ``tmp``: what the contract tests train, resume and evaluate."""
        raise NotImplementedError(f"{cls.__name__} gives no tiny settings")

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

    @contextlib.contextmanager
    def inference(self, use_ema: bool = True):
        """Inside: every net in eval mode, no autograd, EMA weights in place of the raw ones (where they exist
        and ``use_ema``). On exit the raw nets and each net's previous train/eval mode are back. Nested calls
        keep the outermost choice (an evaluator entered with ``use_ema=False`` stays on the raw weights)."""
        if getattr(self, "_in_inference", False):
            with torch.no_grad():
                yield self
            return
        swapped = dict(self.ema.items()) if use_ema and self.ema is not None else {}
        raw = {k: self.nets[k] for k in swapped}
        modes = {k: n.training for k, n in self.nets.items()}
        try:
            self._in_inference = True
            for k, n in swapped.items():
                self.nets[k] = n
            for n in self.nets.values():
                n.eval()
            with torch.no_grad():
                yield self
        finally:
            self._in_inference = False
            for k, n in raw.items():
                self.nets[k] = n
            for k, n in self.nets.items():
                n.train(modes[k])

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

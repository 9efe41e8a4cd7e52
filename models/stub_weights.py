"""Random weights in the public formats the loaders check strictly, for benchmarks and tests (no download).

``StubWeights(cfg, folder)`` is handed to ``Method.stub_weights``: ``need(key, kind, write)`` writes the file
``folder/<kind>.pt`` once (kept if it is already there, e.g. ``scripts/benchmark.py --out``) and records the
override ``key=<file>`` unless the config already names a file for ``key``.
"""
from __future__ import annotations

from pathlib import Path

import torch

FACE_NETS_CONFIG = "face_nets_synth"  # the landmark / small identity net the repo trains (no public format)


class StubWeights:
    def __init__(self, cfg, folder, width: float = 1.0):
        self.cfg, self.folder, self.width = cfg, Path(folder), width
        self.overrides: list[str] = []
        self._made: dict[str, str] = {}

    def need(self, key: str, kind: str, write) -> None:
        section, name = key.split(".", 1)
        if self.cfg[section].get(name):
            return
        if kind not in self._made:
            path = self.folder / f"{kind}.pt"
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made[kind] = str(path) if path.is_file() else str(write(path))
        self.overrides.append(f"{key}={self._made[kind]}")


def state_file(net: torch.nn.Module, path: Path) -> Path:
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, path)
    return path


def vgg16_file(path: Path) -> Path:
    """torchvision vgg16 state_dict: random conv features; the unused 124M-parameter classifier as zeros."""
    from torchvision.models import vgg16
    from torchvision.models.vgg import cfgs, make_layers

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vgg16().state_dict().items()}
    state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    state.update({k: torch.zeros(shape) for k, shape in shapes.items() if k not in state})
    torch.save(state, path)
    return path


def face_nets_file(path: Path, overrides=()) -> Path:
    """A face_nets checkpoint (this repo's format; the only one the landmark net reads), random weights."""
    from core import checkpoint as ckpt
    from core.config import CONFIG_DIR, load_config
    from models.nets.face_small import build_small_nets

    cfg = load_config(CONFIG_DIR / f"{FACE_NETS_CONFIG}.yaml", list(overrides))
    nets = torch.nn.ModuleDict(build_small_nets(cfg.model, cfg.data.size))
    ckpt.save_atomic({"format": ckpt.FORMAT, "method": "face_nets", "config": cfg.to_dict(),
                      "nets": nets.state_dict()}, path)
    return path


def stylegan2_file(path: Path, size: int, width: float, style_dim: int = 512, n_mlp: int = 8) -> Path:
    """Public StyleGAN2 layout (g_ema, latent_avg, args); config F by default (style 512, 8 mapping layers)."""
    from models.nets.stylegan2 import Generator, save_public_format

    return Path(save_public_format(path, Generator(size, style_dim, n_mlp, 2, width)))


def inception_v3_file(path: Path) -> Path:
    """torchvision inception_v3 state_dict (AuxLogits included), random weights whose BN running statistics are
    those of its own activations on noise images: a network that, like ImageNet weights, stays in range with BN
    in eval mode (the running stats of a fresh init, 0 and 1, let the features grow to ~1e10)."""
    from torchvision.models import inception_v3

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = inception_v3(weights=None, aux_logits=True, init_weights=True)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # running stats = the mean over the calibration batches
        with torch.no_grad():
            net.train()(torch.rand(2, 3, 299, 299) * 2 - 1)
    return state_file(net, path)

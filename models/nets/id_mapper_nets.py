"""Trainable networks of method 3: attribute encoder, latent mapper M and the W-space discriminator.

Paper sizes (Nitzan et al. 2020): E_attr is InceptionV3 (2048-d pooled features, ImageNet-initialised);
M maps concat(z_id 512, z_attr 2048) = 2560 -> 2048 -> 1024 -> 512 -> 512 with LeakyReLU(0.2) between
layers; D_W is 512 -> 256 -> 128 -> 64 -> 1 with LeakyReLU(0.2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.weights import load_checked, read_state_dict


def mlp(dims: list[int], slope: float = 0.2) -> nn.Sequential:
    """Linear layers ``dims[0] -> ... -> dims[-1]`` with LeakyReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        if i:
            layers.append(nn.LeakyReLU(slope))
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


class LatentMapper(nn.Module):
    """M: concat(z_id, z_attr) -> w (one style vector, broadcast to every synthesis layer)."""

    def __init__(self, id_dim: int, attr_dim: int, style_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp([id_dim + attr_dim, *hidden, style_dim])

    def forward(self, z_id: torch.Tensor, z_attr: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z_id, z_attr], dim=1))


class WDiscriminator(nn.Module):
    """D_W: a w vector -> real/fake logit (B, 1)."""

    def __init__(self, style_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp([style_dim, *hidden, 1])

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w)


class SmallAttrEncoder(nn.Module):
    """A CPU-sized attribute encoder: strided 3x3 convs, global average pool, linear to ``dim``."""

    def __init__(self, size: int, dim: int = 256, width: float = 1.0):
        super().__init__()
        chans = [max(8, round(c * width)) for c in (32, 64, 128, 256)]
        layers, cin = [], 3
        for c in chans:
            layers += [nn.Conv2d(cin, c, 3, 2, 1), nn.LeakyReLU(0.2)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, dim)
        self.dim, self.size = dim, size

    def forward(self, x):
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.fc(self.features(x).mean((2, 3)))


class InceptionAttrEncoder(nn.Module):
    """The paper's E_attr: torchvision's InceptionV3 up to the 2048-d pooled features.

    Images in [-1, 1] are resized to 299 px (bilinear, as ``tf.image.resize``) and fed as they are: the
    range the ImageNet weights expect (torchvision builds them with ``transform_input=True``, which maps
    ImageNet-normalised input back to [-1, 1]; the original applies Keras' ``preprocess_input``, x/127.5 - 1).
    ``weights`` (optional) is a torchvision ``inception_v3`` ImageNet state_dict (the paper initialises from
    ImageNet); without it the network starts from random init, since nothing is downloaded here.

    BatchNorm as the original's Keras InceptionV3 (called without ``training=``, so in inference mode, and
    built with ``scale=False``): ``bn_stats='running'`` keeps every BN layer in eval mode whatever
    ``train()`` / ``eval()`` set, so it normalises with its running (ImageNet) statistics and never updates
    them, while beta trains; ``'batch'`` is PyTorch's usual train-mode BN. The BN scale (gamma) is frozen at
    its initial value either way: 1 at random init, the file's values with ``weights``.
    """

    def __init__(self, weights: str | None = None, bn_stats: str = "running"):
        super().__init__()
        from torchvision.models import inception_v3

        if bn_stats not in ("running", "batch"):
            raise ValueError(f"bn_stats must be running or batch, got {bn_stats!r}")
        what = "inception_v3 weights (torchvision's ImageNet state_dict)"
        state = read_state_dict(weights, what) if weights else None  # an unreadable file fails before the build
        net = inception_v3(weights=None, aux_logits=False, init_weights=not weights)
        # Keras' InceptionV3(include_top=False, pooling='avg') ends at the global average pool: no dropout
        net.dropout, net.fc = nn.Identity(), nn.Identity()
        if state is not None:
            state = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
            load_checked(net, state, f"{weights} (torchvision's inception_v3 state_dict)")
        self.net, self.dim, self.bn_stats = net, 2048, bn_stats
        for bn in self.batch_norms():
            bn.weight.requires_grad_(False)
        self.train()

    def batch_norms(self) -> list[nn.BatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.bn_stats == "running":
            for bn in self.batch_norms():
                bn.eval()
        return self

    def forward(self, x):
        return self.net(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))


def attr_bn_stats(m) -> str:
    """``model.attr_bn``: running | batch | auto (running with ImageNet weights, batch from a random init)."""
    if m.attr_bn == "auto":
        return "running" if m.attr_weights else "batch"
    if m.attr_bn not in ("running", "batch"):
        raise ValueError(f"model.attr_bn must be auto, running or batch, got {m.attr_bn!r}")
    return m.attr_bn


def build_attr_encoder(m, size: int) -> nn.Module:
    """``model.attr_encoder``: inception_v3 (paper) | small."""
    if m.attr_encoder == "inception_v3":
        return InceptionAttrEncoder(m.attr_weights, attr_bn_stats(m))
    if m.attr_encoder == "small":
        if m.attr_weights:
            raise ValueError("model.attr_weights is only for attr_encoder=inception_v3")
        return SmallAttrEncoder(size, m.attr_dim, m.attr_width)
    raise ValueError(f"unknown model.attr_encoder {m.attr_encoder!r}; choose inception_v3 or small")

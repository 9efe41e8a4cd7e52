"""MAD networks (Browatzki & Wallraven, ICCVW 2019), scaled by ``width`` and the image size.

Q: ResNet-18-like encoder -> z (99). P: inverse ResNet decoder z -> image (tanh). D_z: latent MLP
discriminator. D: DCGAN-like image discriminator. E: z -> [pose | id | style | expression] with the
three 32-d parts L2-normalised. G: parts -> z. All discriminators return logits (sigmoid in the loss).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _ch(c: int, width: float) -> int:
    return max(8, round(c * width))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs + BN), optional stride-2 downsampling."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


class InvBlock(nn.Module):
    """Upsampling residual block: ConvT4 s2 + BN + ReLU + Conv3 + BN, ConvT4 s2 + BN skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


def _stages(size: int) -> int:
    """Number of x2 stages between 4 px and ``size`` px."""
    n = int(math.log2(size)) - 2
    if size < 16 or 2 ** (n + 2) != size:
        raise ValueError(f"MAD nets need a power-of-two size >= 16, got {size}")
    return n


class Encoder(nn.Module):
    """Q: conv stem (/2), stride-2 basic blocks down to 4x4, global average pool, linear to z."""

    def __init__(self, size: int, z_dim: int = 99, width: float = 1.0):
        super().__init__()
        chans = [_ch(c, width) for c in (64, 64, 128, 256, 512, 512, 512)][:_stages(size)]
        layers = [nn.Conv2d(3, chans[0], 7, 2, 3, bias=False), nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True)]
        for cin, cout in zip(chans, chans[1:]):
            layers.append(BasicBlock(cin, cout, 2))
        layers.append(BasicBlock(chans[-1], chans[-1]))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(chans[-1], z_dim)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class Decoder(nn.Module):
    """P: linear z -> 1x1, ConvT4 to 4x4, upsampling inverse blocks, ConvT4 s2 to RGB, tanh."""

    def __init__(self, size: int, z_dim: int = 99, width: float = 1.0):
        super().__init__()
        n = _stages(size)
        chans = [_ch(c, width) for c in (512, 256, 128, 64, 64, 64, 64)][:n]
        self.fc = nn.Linear(z_dim, chans[0])
        self.stem = nn.Sequential(nn.ConvTranspose2d(chans[0], chans[0], 4, 1, 0, bias=False),
                                  nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[InvBlock(a, b) for a, b in zip(chans, chans[1:])])
        self.out = nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1)

    def forward(self, z):
        h = self.fc(z)[:, :, None, None]
        return torch.tanh(self.out(self.blocks(self.stem(h))))


class LatentDisc(nn.Module):
    """D_z: z -> 1000 -> 1000 -> 1 logit (dropout 0.2, ReLU)."""

    def __init__(self, z_dim: int = 99, hidden: int = 1000):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.Dropout(0.2), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, hidden), nn.Dropout(0.2), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, 1))

    def forward(self, z):
        return self.net(z).squeeze(1)


class ImageDisc(nn.Module):
    """D: Conv4 s2 + LReLU (no BN), then Conv4 s2 + BN + LReLU to 8x8, Conv4 s1 p0, average -> logit."""

    def __init__(self, size: int, width: float = 1.0):
        super().__init__()
        n = _stages(size) - 1  # stride-2 convs: size -> 8 px
        chans = [_ch(c, width) for c in (32, 64, 128, 256, 256, 256, 256)][:n]
        layers = [nn.Conv2d(3, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(chans[-1], 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).mean((1, 2, 3))


class Splitter(nn.Module):
    """E: z -> hidden (LeakyReLU 0.01) -> heads; pose raw, the other parts L2-normalised."""

    def __init__(self, z_dim: int, dims: dict[str, int], hidden: int = 1000):
        super().__init__()
        self.dims = dict(dims)
        self.trunk = nn.Sequential(nn.Linear(z_dim, hidden), nn.LeakyReLU(0.01))
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, d) for k, d in self.dims.items()})

    def forward(self, z) -> dict[str, torch.Tensor]:
        h = self.trunk(z)
        return {k: (head(h) if k == "pose" else F.normalize(head(h), dim=1)) for k, head in self.heads.items()}


class Merger(nn.Module):
    """G: concatenated parts -> hidden (LeakyReLU 0.01) -> z."""

    def __init__(self, dims: dict[str, int], z_dim: int, hidden: int = 1000):
        super().__init__()
        self.keys = list(dims)
        self.net = nn.Sequential(nn.Linear(sum(dims.values()), hidden), nn.LeakyReLU(0.01), nn.Linear(hidden, z_dim))

    def forward(self, parts: dict[str, torch.Tensor]):
        return self.net(torch.cat([parts[k] for k in self.keys], 1))

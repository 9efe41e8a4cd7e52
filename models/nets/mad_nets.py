"""MAD networks (Browatzki & Wallraven, ICCVW 2019), scaled by ``width`` and the image size.

Q: the original's ResNet-18 variant (:class:`ResNetEncoder`, torchvision tensor names, so ImageNet ResNet-18
weights load by name) or the older compact encoder (:class:`CompactEncoder`). P: inverse ResNet decoder z ->
image (tanh). D_z: latent MLP discriminator. D: DCGAN-like image discriminator. E: z -> [pose | id | style |
expression] with the three 32-d parts L2-normalised. G: parts -> z. All discriminators return logits (sigmoid
in the loss).
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


def _he_init(net: nn.Module) -> None:
    """The original's (and torchvision's) init: Conv2d weights N(0, 2 / (k*k*out)), BatchNorm weight 1, bias 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with its tensor names (conv1, bn1, conv2, bn2, downsample.0/1)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (None if stride == 1 and cin == cout else
                           nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _stage(cin: int, cout: int, stride: int, blocks: int = 2) -> nn.Sequential:
    return nn.Sequential(ResBlock(cin, cout, stride), *[ResBlock(cout, cout) for _ in range(blocks - 1)])


class ResNetEncoder(nn.Module):
    """Q as in the original: ResNet-18 (conv7 s2, BN, ReLU, max-pool, stages of two basic blocks), global average
    pool, linear to z. Up to 128 px it is torchvision's ResNet-18 layout (layer1 at stride 1); at 256 px a
    ``layer0`` (2 x 64, stride 1) comes first and ``layer1`` downsamples, at 512 px also ``layer01`` (64, stride
    2), so the last map stays 4 x 4 (the original's rule; below 128 px it shrinks with the input: 2 x 2 at 64 px).
    Tensor names follow torchvision, so an ImageNet ``resnet18`` state_dict loads by name and shape."""

    def __init__(self, size: int, z_dim: int = 99, width: float = 1.0):
        super().__init__()
        if size > 512 or size & (size - 1):
            raise ValueError(f"model.encoder=resnet18 takes power-of-two sizes up to 512 (the original's), got {size}")
        c64, c128, c256, c512 = (_ch(c, width) for c in (64, 128, 256, 512))
        self.conv1 = nn.Conv2d(3, c64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.extra = [n for n, s in (("layer0", 256), ("layer01", 512)) if size >= s]
        for i, name in enumerate(self.extra):
            setattr(self, name, _stage(c64, c64, 1 if i == 0 else 2))
        self.layer1 = _stage(c64, c64, 2 if self.extra else 1)
        self.layer2 = _stage(c64, c128, 2)
        self.layer3 = _stage(c128, c256, 2)
        self.layer4 = _stage(c256, c512, 2)
        self.fc = nn.Linear(c512, z_dim)
        _he_init(self)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for name in (*self.extra, "layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return self.fc(x.mean((2, 3)))


class CompactEncoder(nn.Module):
    """The earlier Q (``model.encoder: compact``): conv stem (/2), one stride-2 basic block per stage down to
    4x4 (an extra 512 stage at 256 px), no max-pool, global average pool, linear to z."""

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


ENCODERS = {"resnet18": ResNetEncoder, "compact": CompactEncoder}


def build_encoder(name: str, size: int, z_dim: int, width: float) -> nn.Module:
    """``model.encoder``: resnet18 (the original's Q) | compact."""
    if name not in ENCODERS:
        raise ValueError(f"model.encoder must be one of {' | '.join(ENCODERS)}, got {name!r}")
    return ENCODERS[name](size, z_dim, width)


class Decoder(nn.Module):
    """P: linear z -> 1x1, ConvT4 to 4x4, upsampling inverse blocks, ConvT4 s2 to RGB (no bias), tanh."""

    def __init__(self, size: int, z_dim: int = 99, width: float = 1.0):
        super().__init__()
        n = _stages(size)
        chans = [_ch(c, width) for c in (512, 256, 128, 64, 64, 64, 64)][:n]
        self.fc = nn.Linear(z_dim, chans[0])
        self.stem = nn.Sequential(nn.ConvTranspose2d(chans[0], chans[0], 4, 1, 0, bias=False),
                                  nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[InvBlock(a, b) for a, b in zip(chans, chans[1:])])
        self.out = nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1, bias=False)
        _he_init(self)  # the original re-initialises P's Conv2d and BatchNorm layers (ConvT keep PyTorch's init)

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
    """D: Conv4 s2 + LReLU (no BN), then Conv4 s2 + BN + LReLU: five stride-2 convs in all (the original's, at
    any size), fewer only where five would leave less than 4x4 (4 at 64 px); then Conv4 s1 p0, average -> logit.
    No conv has a bias, as in the original."""

    def __init__(self, size: int, width: float = 1.0):
        super().__init__()
        n = min(5, _stages(size))  # stride-2 convs: stop at 4x4 at the latest (the last conv is 4x4, no padding)
        chans = [_ch(c, width) for c in (32, 64, 128, 256, 256)][:n]
        layers = [nn.Conv2d(3, chans[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(chans[-1], 1, 4, 1, 0, bias=False))
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

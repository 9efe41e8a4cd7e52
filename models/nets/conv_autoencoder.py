"""Strided-conv encoders, transposed-conv decoders (plain or mask-blend) and the latent domain discriminator.

Every conv / deconv is kernel 4, stride 2, padding 1 with a bias (Press et al. 2019; Mokady et al. 2020).
The paper nets have 6 stages at 128 px, ending on (128/64)^2 = 2x2 codes. Below 128 px we drop the
highest-resolution stages instead, so the code is always at least 2x2 (at 64 px the paper plan would end
on 1x1 maps, where instance norm is undefined).
"""
from __future__ import annotations

import math

import torch
from torch import nn

NORMS = {
    "instance": lambda c: nn.InstanceNorm2d(c, affine=False),
    "batch": lambda c: nn.BatchNorm2d(c),
    "none": lambda c: nn.Identity(),
}
ACTS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
}


def num_stages(size: int) -> int:
    """Number of stride-2 stages: 6 at >= 128 px (paper), fewer below so codes stay >= 2x2."""
    if size < 8 or size & (size - 1):
        raise ValueError(f"image size must be a power of two >= 8, got {size}")
    return min(6, int(math.log2(size)) - 1)


def code_hw(size: int) -> int:
    return size >> num_stages(size)


def scaled(channels: list[int], width: float) -> list[int]:
    return [max(1, round(c * width)) for c in channels]


class ConvEncoder(nn.Sequential):
    """[Conv4s2 -> norm -> LeakyReLU(0.2)] x stages; output flattened to a vector."""

    def __init__(self, channels: list[int], size: int, norm: str = "instance", in_ch: int = 3):
        n = num_stages(size)
        chans = channels[len(channels) - n:]
        layers, c_in = [], in_ch
        for c in chans:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), NORMS[norm](c), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c
        layers.append(nn.Flatten())
        super().__init__(*layers)
        self.out_channels, self.code_hw = c_in, code_hw(size)
        self.dim = c_in * self.code_hw ** 2


class ConvDecoder(nn.Module):
    """Reshape a code to (in_ch, hw, hw), then [Deconv4s2 -> norm -> act] x (stages-1), Deconv4s2 -> out_ch."""

    def __init__(self, hidden: list[int], size: int, in_ch: int, out_ch: int = 3, norm: str = "instance",
                 act: str = "relu", final: str = "tanh"):
        super().__init__()
        n = num_stages(size)
        chans = hidden[:n - 1]
        self.in_ch, self.hw = in_ch, code_hw(size)
        layers, c_in = [], in_ch
        for c in chans:
            layers += [nn.ConvTranspose2d(c_in, c, 4, 2, 1), NORMS[norm](c), ACTS[act]()]
            c_in = c
        layers.append(nn.ConvTranspose2d(c_in, out_ch, 4, 2, 1))
        if final == "tanh":
            layers.append(nn.Tanh())
        elif final != "none":
            raise ValueError(f"final activation must be tanh|none, got {final!r}")
        self.net = nn.Sequential(*layers)

    def forward(self, code):
        return self.net(code.view(code.shape[0], self.in_ch, self.hw, self.hw))


def mask_blend(raw, background):
    """4-channel decoder output -> (sigmoid(raw[:, :1]) blend, mask): ``z * m + background * (1 - m)``.

    ``z = tanh(raw[:, 1:])`` is the content image, ``m`` the (B, 1, H, W) mask in [0, 1]; where m = 0 the
    output is exactly the background (Mokady et al. 2020, D_B).
    """
    mask = torch.sigmoid(raw[:, :1])
    return torch.tanh(raw[:, 1:]) * mask + background * (1 - mask), mask


class MaskBlendDecoder(ConvDecoder):
    """A ConvDecoder with 4 raw output channels (mask + image) blended over a background image."""

    def __init__(self, hidden: list[int], size: int, in_ch: int, norm: str = "batch", act: str = "lrelu"):
        super().__init__(hidden, size, in_ch, out_ch=4, norm=norm, act=act, final="none")

    def forward(self, code, background):
        """-> (blended image (B, 3, H, W), mask (B, 1, H, W))."""
        return mask_blend(super().forward(code), background)


class LatentDiscriminator(nn.Sequential):
    """[BatchNorm1d without affine] -> Linear(dim, hidden) -> LeakyReLU(0.2) -> Linear(hidden, 1); logits (B,).

    The papers end in a Sigmoid + BCE; we return logits and use BCE-with-logits, the same function
    computed stably (and allowed under autocast). ``standardize`` (not in the papers) adds the first layer:
    each code feature is standardised with batch statistics, so a feature that separates the domains counts
    however small its scale (what a linear probe on standardised codes sees). Call it on both domains' codes
    as one batch (``disc_logits``), or the batch statistics would remove the gap between the domains.
    """

    def __init__(self, dim: int, hidden: int = 512, standardize: bool = False):
        first = [nn.BatchNorm1d(dim, eps=1e-8, affine=False)] if standardize else []
        super().__init__(*first, nn.Linear(dim, hidden), nn.LeakyReLU(0.2, inplace=True), nn.Linear(hidden, 1),
                         nn.Flatten(0))
        self.standardize = standardize


def disc_logits(disc: LatentDiscriminator, c_a: torch.Tensor, c_b: torch.Tensor):
    """The discriminator's logits for both domains' codes; a standardising one sees them as one batch."""
    if not disc.standardize:
        return disc(c_a), disc(c_b)
    out = disc(torch.cat([c_a, c_b]))
    return out[:c_a.shape[0]], out[c_a.shape[0]:]

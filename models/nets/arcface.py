"""ArcFace IR-SE50 identity encoder, state_dict-compatible with the public ``model_ir_se50.pth``.

That checkpoint (InsightFace_Pytorch, also the identity loss of pSp / e4e / Nitzan et al.) is a plain
state_dict of ``Backbone(num_layers=50, mode="ir_se")``: an input stem, 24 ``bottleneck_IR_SE`` units in
four stages (3, 4, 14, 3 units; 64, 128, 256, 512 channels; the first unit of each stage has stride 2)
and an output head to a 512-d embedding, L2-normalised. Input: 112x112 RGB in [-1, 1].
Module names below are the checkpoint's key names, so ``load_state_dict`` works without renaming.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.weights import check_state_dict, read_state_dict

# (in_channels, depth, num_units) of the four stages of the 50-layer net; first unit stride 2
IR50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))
EMBED_DIM = 512
INPUT_SIZE = 112
# pSp/e4e identity-loss crop (top, bottom, left, right) of an FFHQ-aligned 256 px StyleGAN image
FFHQ256_CROP = (35, 223, 32, 220)


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from global average pooling (two 1x1 convs, no bias)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        w = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * w


class BottleneckIRSE(nn.Module):
    """IR-SE unit: BN-conv3x3-PReLU-conv3x3(stride)-BN-SE, plus a max-pool or conv1x1+BN shortcut."""

    def __init__(self, in_ch: int, depth: int, stride: int):
        super().__init__()
        if in_ch == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_ch, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_units(stages=IR50_STAGES) -> list[nn.Module]:
    units = []
    for in_ch, depth, n in stages:
        units.append(BottleneckIRSE(in_ch, depth, 2))
        units += [BottleneckIRSE(depth, depth, 1) for _ in range(n - 1)]
    return units


class IRSE50(nn.Module):
    """ArcFace IR-SE50 backbone: (B, 3, 112, 112) in [-1, 1] -> (B, 512) L2-normalised embedding."""

    def __init__(self, drop_ratio: float = 0.6):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.body = nn.Sequential(*ir_units())
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, EMBED_DIM),
            nn.BatchNorm1d(EMBED_DIM),
        )

    def forward(self, x):
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"IRSE50 expects {INPUT_SIZE}x{INPUT_SIZE} inputs, got {tuple(x.shape[-2:])}; "
                             "wrap it in ArcFaceIdentity to crop and resize")
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)


# --------------------------------------------------------------------------------------- loading

def load_arcface(path, device="cpu") -> IRSE50:
    """IR-SE50 with the weights of ``path`` (strict), in eval mode with frozen parameters."""
    what = "ArcFace IR-SE50 weights (model_ir_se50.pth, the InsightFace_Pytorch state_dict used by pSp/e4e)"
    state = read_state_dict(path, what)
    with torch.device("meta"):  # shapes only: validates before allocating 44M parameters
        expected = IRSE50().state_dict()
    check_state_dict(expected, state, str(path))
    net = IRSE50()
    net.load_state_dict(state, strict=False)  # checked above; only BN batch counters may be absent
    return net.to(device).eval().requires_grad_(False)


# --------------------------------------------------------------------------------------- wrapper

def crop_box(crop, height: int, width: int, ref: int = 256) -> tuple[int, int, int, int]:
    """``crop`` = (top, bottom, left, right) given at ``ref`` px, scaled to (height, width), rounded."""
    top, bottom, left, right = crop
    sy, sx = height / ref, width / ref
    return round(top * sy), round(bottom * sy), round(left * sx), round(right * sx)


class ArcFaceIdentity(nn.Module):
    """Any (B, 3, H, W) image in [-1, 1] -> L2-normalised embedding of ``backbone``.

    Crops ``crop`` = (top, bottom, left, right), given in pixels of a ``crop_ref`` px image and scaled to
    the input size, then area-resizes to ``out`` px: the pSp / e4e identity loss (crop, then
    ``AdaptiveAvgPool2d(112)``), exactly so at 256 px. The default crop is theirs for FFHQ-aligned 256 px
    StyleGAN images: it keeps the inner face the way ArcFace's 112 px alignment framed it. Other
    alignments need their own crop; ``crop=None`` uses the whole image.
    """

    def __init__(self, backbone: nn.Module, crop=FFHQ256_CROP, out: int = INPUT_SIZE, crop_ref: int = 256):
        super().__init__()
        self.backbone, self.crop, self.out, self.crop_ref = backbone, crop, out, crop_ref

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The cropped, resized (B, 3, out, out) backbone input."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(x.shape)}")
        if self.crop is not None:
            t, b, l, r = crop_box(self.crop, x.shape[2], x.shape[3], self.crop_ref)
            x = x[:, :, t:b, l:r]
        if tuple(x.shape[-2:]) != (self.out, self.out):
            x = F.adaptive_avg_pool2d(x, self.out)
        return x

    def forward(self, x):
        return self.backbone(self.prepare(x))

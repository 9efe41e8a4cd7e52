"""Networks of G2G cross-training (method 4), after the FUNIT / CycleGAN layouts described in the spec
(``/work/shared/specs/spec_g2g_mad.md``, A.2):

- :class:`ContentEncoder`: Conv7 -> ``n_down`` Conv4 s2 (channels doubling) -> ``n_res`` ResBlocks; IN, ReLU,
  reflect padding. 224 px, nf 64, 3 downs -> 512 x 28 x 28.
- :class:`ClassEncoder`: the FUNIT class encoder (trained jointly; ``model.class_encoder: small``).
- :class:`ResNet50VGGFace2`: the frozen VGGFace2 ``resnet50_ft`` (MatConvNet / Caffe layer names), 2048-d pool5.
- :class:`AdaINDecoder`: MLP(class code) -> AdaIN parameters of ``n_res`` AdaIN ResBlocks, then ``n_down``
  [Upsample x2, Conv5, IN, ReLU], Conv7 -> 3, tanh.
- :class:`PatchDiscriminator`: CycleGAN ``basic`` PatchGAN with non-affine IN, N(0, 0.02) init.
- :class:`VGG16Relu22`: frozen ImageNet VGG16 up to relu2_2 for the perceptual loss.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.nets.weights import load_checked, read_state_dict

VGGFACE2_MEAN = (131.0912, 103.8827, 91.4953)  # RGB, 0..255 (the VGGFace2 MatConvNet models, std 1)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VGGFACE2_CLASSES = 8631


def conv_block(c_in, c_out, k, stride=1, norm=True, act="relu"):
    """Reflect-padded conv -> [InstanceNorm] -> [ReLU | LeakyReLU(0.2) | none]."""
    pad = 1 if k % 2 == 0 else k // 2  # even kernels (Conv4 s2): FUNIT pads 1 on each side
    layers = [nn.ReflectionPad2d(pad), nn.Conv2d(c_in, c_out, k, stride)]
    if norm:
        layers.append(nn.InstanceNorm2d(c_out))
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "lrelu":
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """[Conv3, IN, ReLU, Conv3, IN] + skip (``norm=False``: no IN)."""

    def __init__(self, c, norm: bool = True):
        super().__init__()
        self.body = nn.Sequential(conv_block(c, c, 3, norm=norm), conv_block(c, c, 3, norm=norm, act="none"))

    def forward(self, x):
        return x + self.body(x)


class ContentEncoder(nn.Module):
    """``norm``: ``"in"`` (FUNIT, the original) or ``"none"``. Instance norm after the first conv removes each
    image's per-channel mean and scale, i.e. global colour and brightness, from the content code."""

    def __init__(self, nf: int = 64, n_down: int = 3, n_res: int = 2, norm: str = "in"):
        super().__init__()
        if norm not in ("in", "none"):
            raise ValueError(f"content encoder norm must be in|none, got {norm!r}")
        use = norm == "in"
        layers, c = [conv_block(3, nf, 7, norm=use)], nf
        for _ in range(n_down):
            layers.append(conv_block(c, 2 * c, 4, stride=2, norm=use))
            c *= 2
        layers += [ResBlock(c, use) for _ in range(n_res)]
        self.net, self.out_channels = nn.Sequential(*layers), c

    def forward(self, x):
        return self.net(x)


class ClassEncoder(nn.Module):
    """FUNIT class encoder: Conv7 -> 2 Conv4 s2 (x2 channels) -> (n_down - 2) Conv4 s2 -> GAP -> 1x1 conv."""

    def __init__(self, nf: int = 64, n_down: int = 4, latent_dim: int = 64):
        super().__init__()
        layers, c = [conv_block(3, nf, 7, norm=False)], nf
        for i in range(n_down):
            c_out = 2 * c if i < 2 else c
            layers.append(conv_block(c, c_out, 4, stride=2, norm=False))
            c = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, latent_dim, 1)]
        self.net, self.dim = nn.Sequential(*layers), latent_dim

    def forward(self, x):
        return self.net(x).flatten(1)


class AdaIN(nn.Module):
    """Instance norm whose per-sample affine (``bias`` = mean, ``weight`` = std) is set by the MLP."""

    def __init__(self, c):
        super().__init__()
        self.num_features = c
        self.weight = self.bias = None

    def forward(self, x):
        if self.weight is None:
            raise RuntimeError("AdaIN parameters are not set; call AdaINDecoder(content, class_code)")
        x = F.instance_norm(x, eps=1e-5)
        return x * self.weight[:, :, None, None] + self.bias[:, :, None, None]


class AdaINResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.pad1, self.conv1, self.norm1 = nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), AdaIN(c)
        self.pad2, self.conv2, self.norm2 = nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), AdaIN(c)

    def forward(self, x):
        h = F.relu(self.norm1(self.conv1(self.pad1(x))))
        return x + self.norm2(self.conv2(self.pad2(h)))


class AdaINDecoder(nn.Module):
    """G(content, class code). The MLP's output is consumed in module order: for each AdaIN layer the next
    C values are its bias (mean), the C after them its weight (std), as in FUNIT's ``assign_adain_params``."""

    def __init__(self, c: int, class_dim: int, n_up: int = 3, n_res: int = 2, nf_mlp: int = 256, n_mlp: int = 3):
        super().__init__()
        self.res = nn.Sequential(*[AdaINResBlock(c) for _ in range(n_res)])
        ups = []
        for _ in range(n_up):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), conv_block(c, c // 2, 5)]
            c //= 2
        ups += [nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7), nn.Tanh()]
        self.up = nn.Sequential(*ups)
        self.adains = [m for m in self.res.modules() if isinstance(m, AdaIN)]
        n_params = sum(2 * m.num_features for m in self.adains)
        dims = [class_dim] + [nf_mlp] * (n_mlp - 1)
        mlp = []
        for a, b in zip(dims[:-1], dims[1:]):
            mlp += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.mlp = nn.Sequential(*mlp, nn.Linear(dims[-1], n_params))

    def assign(self, code):
        p = self.mlp(code)
        for m in self.adains:
            c = m.num_features
            m.bias, m.weight, p = p[:, :c], p[:, c:2 * c], p[:, 2 * c:]

    def forward(self, content, code):
        self.assign(code)
        return self.up(self.res(content))


class PatchDiscriminator(nn.Module):
    """CycleGAN ``basic`` PatchGAN (``n_layers`` stride-2 convs after the first), non-affine IN, logits map."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, init_gain: float = 0.02):
        super().__init__()
        layers, mult = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)], 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, init_gain)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.net(x)


# ----------------------------------------------------------------------------- VGGFace2 ResNet-50

STAGES = ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512))  # (stage, blocks, bottleneck width)


class Bottleneck:
    """Registers one bottleneck's bias-free convs + BNs on ``parent`` under Caffe names; keeps the names."""

    def __init__(self, parent: nn.Module, prefix: str, c_in: int, width: int, stride: int, proj: bool):
        self.names = []
        for suffix, (a, b, k, s) in {"1x1_reduce": (c_in, width, 1, stride), "3x3": (width, width, 3, 1),
                                     "1x1_increase": (width, 4 * width, 1, 1)}.items():
            self._add(parent, f"{prefix}_{suffix}", a, b, k, s)
        self.proj = f"{prefix}_1x1_proj" if proj else None
        if proj:
            self._add(parent, self.proj, c_in, 4 * width, 1, stride)

    def _add(self, parent, name, a, b, k, s):
        parent.add_module(name, nn.Conv2d(a, b, k, s, padding=k // 2, bias=False))
        parent.add_module(name + "_bn", nn.BatchNorm2d(b))
        self.names.append(name)


class ResNet50VGGFace2(nn.Module):
    """VGGFace2 ``resnet50_ft`` with the MatConvNet conversion's (Caffe) layer names: ``conv1_7x7_s2``,
    ``conv{2..5}_{i}_{1x1_reduce,3x3,1x1_increase,1x1_proj}`` (each + ``_bn``), ``classifier`` (1x1 conv
    2048 -> 8631). Stride 2 sits on the 1x1 reduce / proj convs (Caffe). ``forward`` returns the 2048-d pool5
    vector (no L2 norm; the classifier is kept only so that the public file loads strictly)."""

    def __init__(self, n_classes: int = VGGFACE2_CLASSES):
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(64)
        self.blocks, c = [], 64
        for stage, n, width in STAGES:
            for i in range(1, n + 1):
                stride = 2 if (i == 1 and stage > 2) else 1
                self.blocks.append(Bottleneck(self, f"conv{stage}_{i}", c, width, stride, proj=i == 1))
                c = 4 * width
        self.classifier = nn.Conv2d(2048, n_classes, 1)
        self.dim = 2048

    def _cbn(self, name, x):
        return getattr(self, name + "_bn")(getattr(self, name)(x))

    def forward(self, x):
        x = F.relu(self._cbn("conv1_7x7_s2", x))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for b in self.blocks:
            r, (n1, n2, n3) = x, b.names[:3]
            h = F.relu(self._cbn(n1, x))
            h = F.relu(self._cbn(n2, h))
            h = self._cbn(n3, h)
            x = F.relu(h + (self._cbn(b.proj, r) if b.proj else r))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # pool5 (7x7 at 224 px)


_TV_BLOCK = re.compile(r"layer(\d)\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.(\w+)$")
_TV_SUFFIX = {"conv1": "1x1_reduce", "conv2": "3x3", "conv3": "1x1_increase", "downsample.0": "1x1_proj"}


def from_torchvision_names(state: dict) -> dict:
    """The VGGFace2-pytorch release of ``resnet50_ft`` (``resnet50_ft_weight.pkl``: torchvision ResNet names,
    converted from the same Caffe model) in the layout above. Its first conv reads BGR input, as Caffe did,
    so its input channels are reversed to take RGB; ``fc`` becomes the 1x1 ``classifier``. Other key
    layouts are returned unchanged (the strict check then names what does not fit)."""
    if "layer1.0.conv1.weight" not in state:
        return state
    out = {}
    for k, v in state.items():
        block = _TV_BLOCK.match(k)
        if block:
            stage, i, mod, leaf = block.groups()
            bn = mod.startswith("bn") or mod == "downsample.1"
            base = _TV_SUFFIX[mod.replace("bn", "conv") if mod.startswith("bn") else mod.replace(".1", ".0")]
            k = f"conv{int(stage) + 1}_{int(i) + 1}_{base}{'_bn' if bn else ''}.{leaf}"
        elif k == "conv1.weight":
            k, v = "conv1_7x7_s2.weight", v.flip(1)
        elif k.startswith("bn1."):
            k = "conv1_7x7_s2_bn." + k[len("bn1."):]
        elif k.startswith("fc."):
            k, v = "classifier." + k[len("fc."):], (v[:, :, None, None] if v.dim() == 2 else v)
        out[k] = v
    return out


def load_resnet50_vggface2(path, device="cpu") -> ResNet50VGGFace2:
    """The frozen (eval, no grad) VGGFace2 ResNet-50 from a state_dict file in the layout above (e.g. the
    public ``resnet50_ft_dag.pth``) or the VGGFace2-pytorch ``resnet50_ft_weight.pkl`` (a pickle of numpy
    arrays, see :func:`from_torchvision_names`). Keys must match exactly (BN ``num_batches_tracked`` may be
    absent)."""
    path = Path(path) if path else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"VGGFace2 ResNet-50 weights not found: {path} (model.class_weights must name the "
                                "resnet50_ft state_dict, 8631-way classifier included)")
    what = "VGGFace2 resnet50_ft weights (resnet50_ft_dag.pth state_dict or resnet50_ft_weight.pkl)"
    state = from_torchvision_names(read_state_dict(path, what))  # an unreadable file fails before the build
    net = load_checked(ResNet50VGGFace2(), state, f"{path} ({what})")
    return net.to(device).eval().requires_grad_(False)


class VGGFace2Input(nn.Module):
    """[-1, 1] RGB -> 0..255 minus the VGGFace2 mean, resized to ``size`` (None: unchanged), then ``net``."""

    def __init__(self, net: nn.Module, size: int | None = 224):
        super().__init__()
        self.net, self.size = net, size
        self.register_buffer("mean", torch.tensor(VGGFACE2_MEAN).view(1, 3, 1, 1), persistent=False)
        self.dim = net.dim

    def forward(self, x):
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net((x + 1) * 127.5 - self.mean)


# ----------------------------------------------------------------------------- perceptual net

class VGG16Relu22(nn.Module):
    """Frozen torchvision VGG16 ``features[:9]`` (relu2_2); input [-1, 1] -> ImageNet normalisation."""

    def __init__(self, weights):
        super().__init__()
        from torchvision.models import vgg16

        path = Path(weights) if weights else None
        if path is None or not path.is_file():
            raise FileNotFoundError(f"VGG16 weights not found: {path} (model.vgg_weights must name torchvision's "
                                    "vgg16 ImageNet state_dict, e.g. vgg16-397923af.pth; or set model.perceptual=l1)")
        state = read_state_dict(path, "VGG16 weights (torchvision's vgg16 ImageNet state_dict)")
        net = load_checked(vgg16(), state, f"{path} (torchvision's vgg16 state_dict)")
        self.features = net.features[:9].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return self.features(((x + 1) / 2 - self.mean) / self.std)

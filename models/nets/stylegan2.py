"""StyleGAN2 generator and discriminator (Karras et al., CVPR 2020, config E/F) in plain PyTorch.

No custom CUDA ops: the FIR filtering of up/down-sampling ("upfirdn2d") is a depthwise ``F.conv2d`` with the
[1, 3, 3, 1] kernel after zero insertion. ``state_dict()`` keys and shapes match the widely used PyTorch
StyleGAN2 checkpoint layout (a ``torch.save``'d dict with ``g_ema``, ``g``, ``d``, ``latent_avg``, ... as in
rosinality/stylegan2-pytorch), so public generators load strictly with :func:`load_generator`.

Conventions of that layout, followed here:
- equalized learning rate everywhere: weights ~ N(0, 1) (divided by ``lr_mul``), scaled at run time by
  ``lr_mul / sqrt(fan_in)``; biases multiplied by ``lr_mul``. The mapping network uses ``lr_mul = 0.01``.
- "fused leaky ReLU" = add bias, leaky ReLU (slope 0.2), times sqrt(2); its bias is the ``activate.bias`` key.
- modulated conv: w' = scale * W * style, demodulated w'' = w' / sqrt(sum_{in,k,k} w'^2 + 1e-8), run as one
  grouped conv over the batch. ``to_rgb`` convs are modulated but not demodulated.
- up-sampling conv: stride-2 transposed conv, then a blur with the 4x4 kernel x4 (gain of the zero insertion),
  padding (1, 1); the skip path of the RGB outputs is up-sampled by zero insertion + blur x4, padding (2, 1).
- discriminator: blur (padding chosen so the stride-2 conv halves the size exactly) before each stride-2
  conv, residual blocks scaled by 1/sqrt(2), minibatch standard deviation (group 4, 1 feature).
Mapping-network weights in the public format assume ``lr_mlp = 0.01``; :func:`save_public_format` rescales
them when a generator was trained with another value.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.torch_files import torch_load

BLUR_KERNEL = (1, 3, 3, 1)
PUBLIC_LR_MLP = 0.01
NOISE_MODES = ("const", "random", "none")
GENERATOR_FILE = ("a StyleGAN2 generator (a rosinality stylegan2-pytorch .pt with g_ema, or a stylegan2 training "
                  "checkpoint of this project)")


# ----------------------------------------------------------------------------- primitives

def channel_table(channel_multiplier: float = 2, width: float = 1.0) -> dict[int, int]:
    """Feature maps per resolution (the paper's table, times ``width``)."""
    cm = channel_multiplier
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
            1024: 16 * cm}
    return {r: max(1, int(round(c * width))) for r, c in base.items()}


def log2_size(size: int) -> int:
    """log2 of a supported resolution (8..1024, power of two)."""
    if size not in {2 ** k for k in range(3, 11)}:
        raise ValueError(f"StyleGAN2 size must be a power of two in [8, 1024], got {size}")
    return int(size).bit_length() - 1


def fir_kernel(k=BLUR_KERNEL, gain: float = 1.0) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum ``gain``."""
    k = torch.tensor(k, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Per channel: insert ``up - 1`` zeros after each sample, pad (before, after), convolve with ``kernel``."""
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, k, groups=c)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, gain: float = math.sqrt(2)):
    """leaky_relu(x + bias) * gain, bias broadcast over dim 1."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return F.leaky_relu(x + bias.to(x.dtype).view(shape), slope) * gain


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    """FIR blur with a fixed padding; ``kernel`` is a state_dict buffer."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", fir_kernel(gain=gain))
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x up-sampling: zero insertion + blur (kernel x4), output exactly twice the size."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", fir_kernel(gain=factor ** 2))
        p = len(BLUR_KERNEL) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate; ``activate`` = fused leaky ReLU on the biased output."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x):
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale, self.stride, self.padding = 1 / math.sqrt(in_ch * k * k), stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


# ----------------------------------------------------------------------------- generator

class ModulatedConv2d(nn.Module):
    """Style-modulated (and optionally demodulated) conv; ``upsample`` = transposed conv stride 2 + blur."""

    def __init__(self, in_ch, out_ch, k, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.in_ch, self.out_ch, self.k = in_ch, out_ch, k
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, k, k))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale, self.demodulate, self.upsample = 1 / math.sqrt(in_ch * k * k), demodulate, upsample
        if upsample:
            p = (len(BLUR_KERNEL) - 2) - (k - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4)

    def forward(self, x, style):
        s = self.modulation(style)
        return self._separate(x, s) if self.training else self._grouped(x, s)

    def _grouped(self, x, s):
        """Per-sample weights, one grouped conv over the batch (the public code's path)."""
        b, _, h, w = x.shape
        weight = self.scale * self.weight * s.view(b, 1, self.in_ch, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4], keepdim=True) + 1e-8)
        x = x.reshape(1, b * self.in_ch, h, w)
        weight = weight.to(x.dtype)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, self.k, self.k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
            return self.blur(out.view(b, self.out_ch, *out.shape[2:]))
        weight = weight.reshape(b * self.out_ch, self.in_ch, self.k, self.k)
        out = F.conv2d(x, weight, padding=self.k // 2, groups=b)
        return out.view(b, self.out_ch, *out.shape[2:])

    def _separate(self, x, s):
        """The same function with one shared weight: scale the input by the style, convolve, scale the
        output by the demodulation coefficients (faster for training; equal up to rounding)."""
        weight = self.scale * self.weight[0]
        x = x * s.to(x.dtype)[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
        else:
            out = F.conv2d(x, weight.to(x.dtype), padding=self.k // 2)
        if self.demodulate:
            d = torch.rsqrt(s.pow(2) @ weight.pow(2).sum([2, 3]).t() + 1e-8)  # sum_i,k (W_oik s_i)^2
            out = out * d.to(out.dtype)[:, :, None, None]
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x if noise is None else x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int):
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(self, in_ch, out_ch, k, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, k, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise=None):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch, style_dim, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class Generator(nn.Module):
    """Mapping network (z -> w) + synthesis network (w per layer -> image in about [-1, 1])."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2,
                 width: float = 1.0, lr_mlp: float = 0.01):
        super().__init__()
        self.log_size = log2_size(size)
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.channel_multiplier, self.width, self.lr_mlp = channel_multiplier, width, lr_mlp
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        ch = self.channels = channel_table(channel_multiplier, width)

        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True)
                                                  for _ in range(n_mlp)])
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))

    def hparams(self) -> dict:
        return {"size": self.size, "style_dim": self.style_dim, "n_mlp": self.n_mlp,
                "channel_multiplier": self.channel_multiplier, "width": self.width, "lr_mlp": self.lr_mlp}

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, style_dim) -> w (B, style_dim); z is pixel-normalised first."""
        return self.style(z)

    def _layer_noise(self, batch: int, mode: str, device, dtype) -> list:
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        out = []
        for i in range(self.num_layers):
            buf = getattr(self.noises, f"noise_{i}")
            if mode == "const":
                out.append(buf.to(dtype))
            elif mode == "random":
                out.append(torch.randn(batch, 1, *buf.shape[2:], device=device, dtype=dtype))
            else:
                out.append(None)
        return out

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """(B, style_dim) -> (B, n_latent, style_dim); (B, n_latent, style_dim) is returned as is."""
        if w.dim() == 2:
            w = w[:, None].expand(-1, self.n_latent, -1)
        if w.dim() != 3 or w.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(f"w must be (B, {self.style_dim}) or (B, {self.n_latent}, {self.style_dim}), "
                             f"got {tuple(w.shape)}")
        return w

    def synthesis(self, w: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """w (B, style_dim) or (B, n_latent, style_dim) -> image (B, 3, size, size)."""
        ws = self.broadcast(w)
        noise = self._layer_noise(ws.shape[0], noise_mode, ws.device, ws.dtype)
        out = self.conv1(self.input(ws.shape[0]), ws[:, 0], noise[0])
        skip = self.to_rgb1(out, ws[:, 1])
        for k, to_rgb in enumerate(self.to_rgbs):
            i = 2 * k + 1
            out = self.convs[2 * k](out, ws[:, i], noise[i])
            out = self.convs[2 * k + 1](out, ws[:, i + 1], noise[i + 1])
            skip = to_rgb(out, ws[:, i + 2], skip)
        return skip

    @staticmethod
    def truncate(w: torch.Tensor, truncation: float, w_avg: torch.Tensor | None) -> torch.Tensor:
        """w_avg + truncation * (w - w_avg)."""
        if truncation == 1.0:
            return w
        if w_avg is None:
            raise ValueError("truncation != 1 needs w_avg (e.g. G.mean_w() or load_generator's w_avg)")
        return torch.lerp(w_avg.to(w), w, truncation)

    def forward(self, z, truncation: float = 1.0, w_avg=None, noise_mode: str = "random", mix_z=None,
                mix_prob: float = 0.0):
        """z -> (image, ws (B, n_latent, style_dim)). With probability ``mix_prob`` (one draw per batch),
        layers from a random cutoff in [1, n_latent) on take their w from ``mix_z`` (style mixing)."""
        ws = self.broadcast(self.truncate(self.mapping(z), truncation, w_avg))
        if mix_z is not None and mix_prob > 0 and torch.rand(()).item() < mix_prob:
            cutoff = int(torch.randint(1, self.n_latent, ()).item())
            ws2 = self.broadcast(self.truncate(self.mapping(mix_z), truncation, w_avg))
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return self.synthesis(ws, noise_mode), ws

    @torch.no_grad()
    def mean_w(self, n: int = 4096, seed: int = 0, batch: int = 1024) -> torch.Tensor:
        """Mean of mapping(z) over ``n`` seeded z (the global RNG is untouched): (style_dim,)."""
        g = torch.Generator().manual_seed(seed)
        device = self.input.input.device
        total = torch.zeros(self.style_dim, dtype=torch.float64, device=device)
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), self.style_dim, generator=g).to(device)
            total += self.mapping(z).double().sum(0)
        return (total / n).float()


# ----------------------------------------------------------------------------- discriminator

def conv_layer(in_ch, out_ch, k, downsample=False, bias=True, activate=True) -> nn.Sequential:
    """[Blur] + EqualConv2d + [FusedLeakyReLU], indexed as in the public layout (bias sits in the activation)."""
    layers = []
    if downsample:
        p = (len(BLUR_KERNEL) - 2) + (k - 1)
        layers.append(Blur(pad=((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_ch, out_ch, k, stride=2, padding=0, bias=bias and not activate))
    else:
        layers.append(EqualConv2d(in_ch, out_ch, k, padding=k // 2, bias=bias and not activate))
    if activate:
        layers.append(FusedLeakyReLU(out_ch))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv1 = conv_layer(in_ch, in_ch, 3)
        self.conv2 = conv_layer(in_ch, out_ch, 3, downsample=True)
        self.skip = conv_layer(in_ch, out_ch, 1, downsample=True, bias=False, activate=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one feature map: the std over groups of samples, averaged over channels and pixels.

    The group is the largest divisor of the batch that is <= ``group_size`` (the public code requires the
    batch to be divisible by min(batch, 4)); sample n is grouped with samples n +- k * batch / group.
    """
    b, c, h, w = x.shape
    g = next(d for d in range(min(group_size, b), 0, -1) if b % d == 0)
    y = x.float().view(g, -1, 1, c, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    return torch.cat([x, y.to(x.dtype).repeat(g, 1, h, w)], 1)


class Discriminator(nn.Module):
    """Residual discriminator: image (B, 3, size, size) -> logits (B, 1)."""

    def __init__(self, size: int, channel_multiplier: float = 2, width: float = 1.0):
        super().__init__()
        log_size = log2_size(size)
        ch = channel_table(channel_multiplier, width)
        convs = [conv_layer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            convs.append(ResBlock(in_ch, ch[2 ** (i - 1)]))
            in_ch = ch[2 ** (i - 1)]
        self.convs = nn.Sequential(*convs)
        self.final_conv = conv_layer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activate=True), EqualLinear(ch[4], 1))

    def forward(self, img):
        out = self.final_conv(minibatch_stddev(self.convs(img)))
        return self.final_linear(out.flatten(1))


# ----------------------------------------------------------------------------- checkpoints

def _first(keys, n=5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def infer_generator_hparams(sd: dict) -> dict:
    """size, style_dim, n_mlp, channel_multiplier, width of a public-format generator state_dict."""
    mlp = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    rgbs = [k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)]
    needed = ["style.1.weight", "conv1.conv.weight"]
    lacking = [k for k in needed if k not in sd]
    if lacking or not rgbs:
        raise ValueError(f"not a StyleGAN2 generator state_dict: missing {_first(lacking or ['to_rgbs.*'])} "
                         f"(has {_first(sorted(sd))})")
    n_convs = len([k for k in sd if re.fullmatch(r"convs\.\d+\.conv\.weight", k)])
    if n_convs != 2 * len(rgbs):
        raise ValueError(f"generator has {n_convs} convs.* but {len(rgbs)} to_rgbs.* (expected twice as many)")
    size = 2 ** (len(rgbs) + 2)
    width = sd["conv1.conv.weight"].shape[1] / 512
    cm = 2
    if size >= 64:
        cm = sd["to_rgbs.3.conv.weight"].shape[2] / (256 * width)
        cm = int(round(cm)) if abs(cm - round(cm)) < 1e-6 else cm
    return {"size": size, "style_dim": sd["style.1.weight"].shape[1], "n_mlp": len(mlp),
            "channel_multiplier": cm, "width": int(width) if width == 1 else width}


def load_state_strict(module: nn.Module, sd: dict, where: str) -> None:
    """``load_state_dict(strict=True)`` after :func:`models.nets.weights.check_state_dict` (one-line errors
    naming renamed, missing and unexpected keys and shape mismatches)."""
    from models.nets.weights import check_state_dict

    check_state_dict(module.state_dict(), sd, f"{where}: the state_dict")
    module.load_state_dict(sd, strict=True)


def _w_avg(value, g: Generator, where: str) -> torch.Tensor:
    """A stored latent_avg of shape (D,), (1, D) or (n_latent, D) -> (D,); None -> g.mean_w()."""
    if value is None:
        return g.mean_w()
    t = torch.as_tensor(value).float()
    if t.shape[-1] != g.style_dim or t.dim() > 2:
        raise ValueError(f"{where}: latent_avg has shape {tuple(t.shape)}, expected ({g.style_dim},)")
    return t.reshape(-1, g.style_dim).mean(0)


def _from_training_checkpoint(payload: dict, where: str) -> tuple[Generator, torch.Tensor]:
    if payload.get("method") != "stylegan2":
        raise ValueError(f"{where} is a {payload.get('method')!r} checkpoint, not a stylegan2 one")
    m, size = payload["config"]["model"], payload["config"]["data"]["size"]
    g = Generator(size, m["style_dim"], m["n_mlp"], m["channel_multiplier"], m["width"], m["lr_mlp"])
    source = payload.get("ema") or payload["nets"]
    load_state_strict(g, {k[2:]: v for k, v in source.items() if k.startswith("g.")}, where)
    return g, g.mean_w()


def _from_public(payload: dict, where: str) -> tuple[Generator, torch.Tensor]:
    if "g_ema" not in payload:
        raise ValueError(f"{where} has no 'g_ema' entry (top-level keys: {_first(sorted(map(str, payload)))}); "
                         "expected a StyleGAN2 checkpoint (g_ema, latent_avg, ...) or one of this project's "
                         "stylegan2 training checkpoints")
    sd = payload["g_ema"]
    try:
        hp = infer_generator_hparams(sd)
    except ValueError as e:
        raise ValueError(f"{where}: g_ema: {e}") from None
    g = Generator(**hp, lr_mlp=PUBLIC_LR_MLP)
    load_state_strict(g, sd, f"{where} (g_ema, inferred {hp})")
    return g, _w_avg(payload.get("latent_avg"), g, where)


def load_generator(path, device="cpu") -> tuple[Generator, torch.Tensor]:
    """(G in eval mode without gradients, w_avg (style_dim,)) from a public-format StyleGAN2 checkpoint
    (``g_ema`` + ``latent_avg``; mean_w() if latent_avg is absent) or from one of this project's stylegan2
    training checkpoints (EMA generator if present, w_avg = mean_w()). Files are fully unpickled: load
    trusted files only (as core.checkpoint does)."""
    from core.checkpoint import FORMAT

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"StyleGAN2 checkpoint not found: {path}")
    payload = torch_load(path, GENERATOR_FILE, weights_only=False)
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a dict with 'g_ema', got a {type(payload).__name__}")
    if payload.get("format") == FORMAT:
        g, w_avg = _from_training_checkpoint(payload, str(path))
    else:
        g, w_avg = _from_public(payload, str(path))
    g.eval().requires_grad_(False).to(device)
    return g, w_avg.to(device)


def _public_state(g: Generator) -> dict:
    """Generator state_dict with the mapping weights rescaled to the public lr_mlp (0.01)."""
    sd = {k: v.detach().cpu().clone() for k, v in g.state_dict().items()}
    ratio = g.lr_mlp / PUBLIC_LR_MLP
    if ratio != 1:
        for i in range(1, g.n_mlp + 1):
            sd[f"style.{i}.weight"] *= ratio
            sd[f"style.{i}.bias"] *= ratio
    return sd


def save_public_format(path, g_ema: Generator, g: Generator | None = None, d: Discriminator | None = None,
                       w_avg: torch.Tensor | None = None) -> Path:
    """Write ``{g_ema, latent_avg, [g], [d], args}`` (the public PyTorch StyleGAN2 layout), atomically.

    ``latent_avg`` defaults to ``g_ema.mean_w()``. ``args`` is a plain dict of the hyper-parameters.
    """
    from core.checkpoint import save_atomic

    payload = {"g_ema": _public_state(g_ema),
               "latent_avg": (g_ema.mean_w() if w_avg is None else w_avg).detach().float().cpu().reshape(-1),
               "args": {"size": g_ema.size, "latent": g_ema.style_dim, "n_mlp": g_ema.n_mlp,
                        "channel_multiplier": g_ema.channel_multiplier, "width": g_ema.width}}
    if g is not None:
        payload["g"] = _public_state(g)
    if d is not None:
        payload["d"] = {k: v.detach().cpu().clone() for k, v in d.state_dict().items()}
    return save_atomic(payload, path)

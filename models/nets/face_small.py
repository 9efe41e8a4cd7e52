"""Small face networks trainable on the synthetic faces (32-64 px): stand-ins for pretrained face nets.

- :class:`SmallIdentityNet`: image -> L2-normalised identity embedding (the ArcFace role; trained with an
  additive angular margin softmax by the ``face_nets`` method).
- :class:`FaceAnalysisNet`: image -> 12 landmarks, pose (tx, ty, roll, scale) and expression
  (smile, mouth_open, brow_raise), the ground-truth conventions of ``data/synthetic.py``.

Both accept images in [-1, 1] of any size and resize them to their training size first, so they apply to
generator outputs of another resolution. Landmarks are in normalised image coordinates
``u = (x + 0.5) * 2 / size - 1`` (x = pixel coordinate, pixel centres on integers), independent of size.

Loaders: :func:`load_face_nets` (a ``face_nets`` training checkpoint), :func:`build_identity_encoder`
(``"ir_se50"`` or ``"small"``) and :func:`build_landmark_net` return frozen networks in eval mode.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data.synthetic import N_LANDMARKS, WORLD_KEYS, world_args

FACE_NETS_FILE = "a face_nets training checkpoint (python train.py --config configs/face_nets_synth.yaml)"

# Output scaling of FaceAnalysisNet: centre and spread of the synthetic sampling ranges (data/synthetic.py,
# sample_factors), so the heads regress roughly unit-variance values. Order of factor_vectors().
POSE_MEAN = (0.0, -0.13, 0.0, 1.425)
POSE_STD = (0.069, 0.040, 0.144, 0.072)
EXPR_MEAN = (0.25, 0.35, 0.2)
EXPR_STD = (0.43, 0.33, 0.46)


def pixels_to_unit(xy: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates (x = 0 is the first pixel centre) -> normalised coordinates in [-1, 1]."""
    return (xy + 0.5) * (2.0 / size) - 1.0


def unit_to_pixels(uv: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised coordinates -> pixel coordinates of a ``size`` px image."""
    return (uv + 1.0) * (size / 2.0) - 0.5


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to ``size`` (antialiased when shrinking); no-op at that size."""
    if x.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got {tuple(x.shape)}")
    if tuple(x.shape[-2:]) == (size, size):
        return x
    shrink = x.shape[-2] > size or x.shape[-1] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def _stage_channels(size: int, width: float, base: int = 32, cap: int = 256) -> list[int]:
    """Channels of the stride-2 stages that take ``size`` px down to 4x4 (doubling from ``base``)."""
    if size < 8 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    n = int(math.log2(size)) - 2
    return [max(4, round(min(base * 2 ** i, cap) * width)) for i in range(n)]


class ResBlock(nn.Module):
    """conv3x3(stride) BN ReLU conv3x3 BN + (1x1 conv BN) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = (nn.Identity() if c_in == c_out and stride == 1 else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


class Trunk(nn.Sequential):
    """Stem conv3x3 + one stride-2 ResBlock per stage: (B, 3, size, size) -> (B, C, 4, 4)."""

    def __init__(self, size: int, width: float):
        chans = _stage_channels(size, width)
        layers = [nn.Conv2d(3, chans[0], 3, 1, 1, bias=False), nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True)]
        c_in = chans[0]
        for c in chans:
            layers.append(ResBlock(c_in, c, 2))
            c_in = c
        super().__init__(*layers)
        self.out_channels = c_in


class SmallIdentityNet(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, dim) L2-normalised identity embedding (ArcFace-style BN head)."""

    def __init__(self, size: int, dim: int = 128, width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        self.size, self.dim = size, dim
        self.trunk = Trunk(size, width)
        c = self.trunk.out_channels
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.Dropout(dropout), nn.Flatten(),
                                  nn.Linear(c * 16, dim), nn.BatchNorm1d(dim))

    def forward(self, x):
        return F.normalize(self.head(self.trunk(resize_to(x, self.size))), dim=1)


class FaceAnalysisNet(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> dict of ``landmarks`` (B, 12, 2) normalised (u, v), ``pose`` (B, 4)
    = (tx, ty, roll, scale) and ``expression`` (B, 3) = (smile, mouth_open, brow_raise), in the
    synthetic factors' units. ``forward(x, raw=True)`` also returns ``pose_z`` / ``expression_z``, the
    standardised outputs the training losses use."""

    def __init__(self, size: int, width: float = 1.0, hidden: int = 256):
        super().__init__()
        self.size = size
        self.trunk = Trunk(size, width)
        c = self.trunk.out_channels
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, N_LANDMARKS * 2 + 4 + 3))
        for name, v in (("pose_mean", POSE_MEAN), ("pose_std", POSE_STD),
                        ("expr_mean", EXPR_MEAN), ("expr_std", EXPR_STD)):
            self.register_buffer(name, torch.tensor(v), persistent=False)

    def forward(self, x, raw: bool = False) -> dict:
        out = self.head(self.trunk(resize_to(x, self.size)))
        k = N_LANDMARKS * 2
        pose_z, expr_z = out[:, k:k + 4], out[:, k + 4:]
        res = {"landmarks": out[:, :k].view(-1, N_LANDMARKS, 2),
               "pose": self.pose_mean + self.pose_std * pose_z,
               "expression": self.expr_mean + self.expr_std * expr_z}
        if raw:
            res.update(pose_z=pose_z, expression_z=expr_z)
        return res

    def standardise(self, pose: torch.Tensor, expression: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground-truth pose / expression in the units of ``pose_z`` / ``expression_z``."""
        return (pose - self.pose_mean) / self.pose_std, (expression - self.expr_mean) / self.expr_std


# --------------------------------------------------------------------------------------- loading

def build_small_nets(model_cfg, size: int) -> dict[str, nn.Module]:
    """The two nets of a ``face_nets`` run from its ``model`` config section (dict or Config)."""
    m = dict(model_cfg)
    return {"identity": SmallIdentityNet(size, dim=m["id_dim"], width=m["id_width"], dropout=m["id_dropout"]),
            "analysis": FaceAnalysisNet(size, width=m["analysis_width"], hidden=m["analysis_hidden"])}


def _sub_state(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def check_world(net, data, role: str, path) -> None:
    """Refuse a face net (judge or loss network) trained in another synthetic world than ``data``'s: it reads pose
    and expression as its own world draws them. Nets of real data, or runs on real data, are not checked."""
    world = getattr(net, "world", None)
    if not world or data.name not in ("synthetic", "w_codes"):
        return
    for key in WORLD_KEYS:
        if world[key] != data[key]:
            raise ValueError(f"the {role} {path} was trained with data.{key}={world[key]!r}, this run's data has "
                             f"{data[key]!r}: train one in this world (python train.py --config "
                             f"configs/face_nets_synth.yaml data.{key}={data[key]} run.name=...)")


def load_face_nets(path, device="cpu", use_ema: bool = True) -> dict[str, nn.Module]:
    """``{"identity": SmallIdentityNet, "analysis": FaceAnalysisNet}`` from a ``face_nets`` checkpoint,
    frozen (eval mode, no parameter gradients). EMA weights are used where the run kept them."""
    from core import checkpoint as ckpt
    from core.config import load_config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face_nets checkpoint not found: {path} "
                                "(train one with: python train.py --config configs/face_nets_synth.yaml)")
    state = ckpt.load(path, what=FACE_NETS_FILE)
    if state.get("method") != "face_nets":
        raise ValueError(f"{path} is a {state.get('method')!r} checkpoint, not a face_nets one")
    cfg = load_config(base=state["config"])  # keys added since the run was saved get their defaults
    nets = build_small_nets(cfg.model, cfg.data.size)
    for name, net in nets.items():
        sd = _sub_state(state["nets"], name + ".")
        if use_ema and state.get("ema"):
            sd.update(_sub_state(state["ema"], name + "."))
        net.load_state_dict(sd)
        net.to(device).eval().requires_grad_(False)
        # the synthetic world it learned (judges and loss nets serve runs of the same world: check_world)
        net.world = world_args(cfg.data) if cfg.data.name == "synthetic" else None
    return nets


def build_identity_encoder(kind: str, weights, device="cpu") -> nn.Module:
    """Frozen image -> normalised identity embedding: ``"ir_se50"`` (ArcFace weights file, FFHQ crop)
    or ``"small"`` (a ``face_nets`` checkpoint)."""
    if kind in ("ir_se50", "small") and not weights:
        raise ValueError(f"identity encoder {kind!r} needs a weights file (ir_se50: model_ir_se50.pth; "
                         "small: a face_nets checkpoint)")
    if kind == "ir_se50":
        from models.nets.arcface import ArcFaceIdentity, load_arcface

        return ArcFaceIdentity(load_arcface(weights, device)).eval().requires_grad_(False)
    if kind == "small":
        return load_face_nets(weights, device)["identity"]
    raise ValueError(f"identity encoder kind must be ir_se50|small, got {kind!r}")


def build_landmark_net(weights, device="cpu") -> FaceAnalysisNet:
    """Frozen :class:`FaceAnalysisNet` from a ``face_nets`` checkpoint."""
    if not weights:
        raise ValueError("the landmark net needs a face_nets checkpoint "
                         "(python train.py --config configs/face_nets_synth.yaml)")
    return load_face_nets(weights, device)["analysis"]

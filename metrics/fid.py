"""FID and KID with a pluggable feature extractor.

FID (Heusel et al. 2017): ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` over feature means / covariances
(covariance with the n - 1 normaliser). KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial
kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (mean and std reported).

Extractors map images in [-1, 1] to feature vectors:
- ``inception``: the FID InceptionV3 (the TF 2015-12-05 graph ported to PyTorch, file
  ``pt_inception-2015-12-05-6726825d.pth``), 2048-d pool features; weights from ``--weights``/config only,
  nothing is downloaded;
- ``face_identity``: the identity embedding of a ``face_nets`` run (a face-specific Frechet distance, the one
  meaningful on the synthetic faces here).
"""
from __future__ import annotations

import types
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got {feats.shape}")
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two feature sets have different dimensions")
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: offset the diagonals
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    return frechet_distance(*feature_stats(f1), *feature_stats(f2))


def kid_from_features(f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over ``subsets`` random subsets."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


# --- the FID InceptionV3 ---------------------------------------------------------------------------
# The TF graph differs from torchvision's InceptionV3 in four places: average pools exclude the padding in
# blocks A, C and E_1, and the last block (E_2) max-pools its pool branch; the classifier has 1008 classes.

def _inception_a(self, x):
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    return torch.cat([b1, b5, b3, bp], 1)


def _inception_c(self, x):
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = x
    for k in range(1, 6):
        bd = getattr(self, f"branch7x7dbl_{k}")(bd)
    bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
    return torch.cat([b1, b7, bd, bp], 1)


def _inception_e(pool):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(pool(x))
        return torch.cat([b1, b3, bd, bp], 1)
    return forward


class FIDInception(nn.Module):
    """InceptionV3 as in the FID reference: images in [-1, 1] resized to 299 (bilinear) -> 2048-d features."""

    def __init__(self):
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            blk = getattr(net, name)
            blk.forward = types.MethodType(_inception_a, blk)
        for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            blk = getattr(net, name)
            blk.forward = types.MethodType(_inception_c, blk)
        net.Mixed_7b.forward = types.MethodType(
            _inception_e(lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)), net.Mixed_7b)
        net.Mixed_7c.forward = types.MethodType(_inception_e(lambda x: F.max_pool2d(x, 3, 1, 1)), net.Mixed_7c)
        net.fc = nn.Identity()
        net.dropout = nn.Identity()
        self.net = net

    def forward(self, x):
        x = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x)


def load_fid_inception(path, device="cpu") -> FIDInception:
    """The FID Inception from ``pt_inception-2015-12-05-6726825d.pth`` (strict keys; the classifier is dropped)."""
    if not path:
        raise ValueError("FID with Inception features needs its weights: pass the file "
                         "pt_inception-2015-12-05-6726825d.pth (eval.feature_weights=PATH), or use "
                         "eval.features=face_identity with a face_nets checkpoint")
    from models.nets.weights import load_checked, read_state_dict

    state = read_state_dict(path, "FID Inception weights (pt_inception-2015-12-05-6726825d.pth)")
    model = FIDInception()
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    load_checked(model.net, state, f"{path} (the FID Inception state_dict)")
    return model.to(device).eval().requires_grad_(False)


def build_extractor(kind: str, weights, device="cpu") -> nn.Module:
    """``inception`` (FID reference network) or ``face_identity`` (a face_nets run's identity embedding)."""
    if kind == "inception":
        return load_fid_inception(weights, device)
    if kind == "face_identity":
        from models.nets.face_small import build_identity_encoder

        if not weights:
            raise ValueError("eval.features=face_identity needs eval.feature_weights=<face_nets checkpoint>")
        return build_identity_encoder("small", weights, device)
    raise ValueError(f"unknown feature extractor {kind!r}; choose inception or face_identity")


@torch.no_grad()
def extract(extractor: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    dev = next(extractor.parameters()).device
    out = [extractor(images[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()

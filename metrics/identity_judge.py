"""Identity judges for evaluation (``eval.identity_judge_kind``): a face_nets checkpoint (``small``), ArcFace
(``ir_se50``) or dlib's 128-d face descriptor (``dlib``: real faces, from the optional face extras).

The dlib judge takes aligned face crops (CelebA's frame centre-cropped as the configs do, FFHQ-aligned
images): it fits dlib's 68 landmarks inside a fixed central box, :data:`CROP_BOX`, lets dlib cut its own
150 px chip from them (``get_face_chip``) and returns the ResNet's descriptor. No detector runs, so every
image gets a descriptor (generated images included) and scores are deterministic. dlib runs on the CPU
(0.1-0.2 s per image on one busy 2-core machine); an image met again (the G2G table embeds each input
once per row) reuses its descriptor.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

# (left, top, right, bottom) as fractions of the crop. dlib's HOG detector boxes on real photos aligned here
# (data/align.py) were about (0.25, 0.36-0.41, 0.73, 0.83-0.89) on CelebA's 178 px centre crop and
# (0.24, 0.30, 0.81, 0.88) on FFHQ crops; descriptors from this box were 0.04-0.13 (L2) from the photo's own
# (dlib: same person below 0.6). Tight ArcFace 112 px crops fit worse (0.13-0.17).
CROP_BOX = (0.2, 0.3, 0.8, 0.9)


class DlibIdentity(nn.Module):
    """Images (N, 3, H, W) in [-1, 1] -> dlib descriptors (N, 128) on the images' device. Not differentiable:
    a judge only, never a loss network. Descriptor norms are ~1.4, so dlib's same-person threshold (L2 0.6)
    is a cosine similarity of ~0.9 (Obama's aligned photos: L2 0.31-0.40 apart; Obama-Biden 0.74-0.83)."""

    def __init__(self, box=CROP_BOX):
        super().__init__()
        from data.dlib_faces import require

        require("the dlib identity judge (eval.identity_judge_kind: dlib)")
        self.box = tuple(float(v) for v in box)
        self._seen: dict[bytes, np.ndarray] = {}

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from data.dlib_faces import descriptor

        imgs = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for img in imgs:
            key = hashlib.blake2b(img.tobytes(), digest_size=16, key=repr(img.shape).encode()).digest()
            if key not in self._seen:
                h, w = img.shape[:2]
                self._seen[key] = descriptor(img, (self.box[0] * w, self.box[1] * h, self.box[2] * w, self.box[3] * h))
            out.append(self._seen[key])
        return torch.from_numpy(np.stack(out)).float().to(x.device)


def build_identity_judge(kind: str, weights, device="cpu") -> nn.Module:
    """A frozen judge: ``dlib`` (no weights file: the face extras' model), else
    :func:`models.nets.face_small.build_identity_encoder` (``small``, ``ir_se50``)."""
    if kind == "dlib":
        return DlibIdentity()
    from models.nets.face_small import build_identity_encoder

    return build_identity_encoder(kind, weights, device)


def configured_judge(eval_cfg, device="cpu") -> nn.Module | None:
    """The judge of ``eval.identity_judge_kind`` / ``eval.identity_judge``, or None if none is set (a
    weights-file kind without a file)."""
    if eval_cfg.identity_judge_kind != "dlib" and not eval_cfg.identity_judge:
        return None
    return build_identity_judge(eval_cfg.identity_judge_kind, eval_cfg.identity_judge, device)


def judge_name(eval_cfg) -> str:
    """What scored identity, for the metrics tables."""
    if eval_cfg.identity_judge_kind == "dlib":
        return "dlib face descriptor"
    return eval_cfg.identity_judge or "none"

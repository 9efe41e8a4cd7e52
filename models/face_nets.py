"""Frozen face networks for method 3 (Nitzan et al. 2020), trained here on the synthetic faces.

Trains two small nets at once (``models/nets/face_small.py``):
- ``identity``: embedding net with an ArcFace additive-angular-margin softmax over the synthetic identity
  ids; the class-centre weights live in a separate ``margin`` module (not part of the embedding net).
- ``analysis``: landmarks (L1 in normalised coordinates), pose and expression (MSE on standardised values).

Data: ``{"faces": FaceFactors(SyntheticFaces(...))}`` with the default attribute probabilities (glasses
and facial hair appear sometimes). The test split renders other images of the same identities, so
identity verification on it measures generalisation to unseen renders of known people.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Method
from models.lr_schedule import set_lr
from models.nets.face_small import build_small_nets, pixels_to_unit, unit_to_pixels


class ArcMarginHead(nn.Module):
    """Class centres for the additive angular margin loss (ArcFace): logit_y = s*cos(theta_y + m)."""

    def __init__(self, dim: int, n_classes: int, scale: float = 30.0, margin: float = 0.3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        self.scale, self.margin = scale, margin

    def cosines(self, emb: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(emb, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Margin logits; where theta_y + m would pass pi, the usual linear fallback cos - m*sin(m) keeps
        the target logit decreasing in theta."""
        with torch.autocast(emb.device.type, enabled=False):  # the margin needs fp32 angles under AMP
            cos = self.cosines(emb.float()).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        cos_y = cos.gather(1, labels[:, None])
        m = self.margin
        phi = cos_y * math.cos(m) - torch.sqrt(1.0 - cos_y ** 2) * math.sin(m)
        phi = torch.where(cos_y > math.cos(math.pi - m), phi, cos_y - m * math.sin(m))
        return self.scale * cos.scatter(1, labels[:, None], phi)


class CrossCovarianceEMA(nn.Module):
    """Penalty that removes what a linear probe reads of standardised targets (B, K) from unit-norm embeddings
    (B, D). It keeps a running average ``c`` of the cross-covariance Cov(emb, target) (D, K; momentum per step,
    bias-corrected) and returns ``D * <C_batch, c> / K``, whose gradient is that of ``D * ||C||^2 / (2K)`` with the
    batch's noise only in ``C_batch``: a per-batch ``||C_batch||^2`` would carry a noise floor of ~D / B that the
    embedding could lower only by bunching its points (against the margin loss), and its gradients swamped the
    margin loss's at B = 64 (identity accuracy fell to chance). ``estimate()`` = ``D * ||c||^2 / K``, about the R^2
    of a linear probe (exact for isotropic embeddings). The average is kept per process (not all-reduced)."""

    def __init__(self, dim: int, n_targets: int, momentum: float = 0.99):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("c", torch.zeros(dim, n_targets))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @staticmethod
    def batch_cov(emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if emb.shape[0] < 2:
            raise ValueError(f"a cross-covariance needs at least 2 images, got {emb.shape[0]}")
        return (emb - emb.mean(0)).T @ (target - target.mean(0)) / (emb.shape[0] - 1)

    def running(self) -> torch.Tensor:
        return self.c / (1 - self.momentum ** self.steps.clamp(min=1).item())

    def estimate(self) -> float:
        return self.c.shape[0] * self.running().pow(2).sum().item() / self.c.shape[1]

    def forward(self, emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cb = self.batch_cov(emb.float(), target.float())
        if self.training:
            with torch.no_grad():
                self.c.mul_(self.momentum).add_(cb.detach(), alpha=1 - self.momentum)
                self.steps += 1
        return self.c.shape[0] * (cb * self.running()).sum() / self.c.shape[1]


def face_datasets(d, split: str) -> dict:
    """``{"faces": FaceFactors}`` of the synthetic stream ``split`` (default attribute probabilities)."""
    from data.synthetic import SyntheticFaces, world_args
    from data.synthetic.labels import FaceFactors

    if d.name != "synthetic":
        raise ValueError(f"face_nets trains on the synthetic faces only (needs landmark, pose and expression "
                         f"ground truth); got data.name={d.name!r}")
    length = d.train_length if split == "train" else d.test_length
    faces = SyntheticFaces(size=d.size, length=length, seed=d.seed, split=split, n_identities=d.n_identities,
                           cache_dir=d.cache_dir, **world_args(d))
    return {"faces": FaceFactors(faces)}


def draw_points(img: torch.Tensor, pts: torch.Tensor, color, radius: int = 1) -> torch.Tensor:
    """Copy of (3, H, W) ``img`` with square dots of RGB ``color`` (in [-1, 1]) at pixel ``pts`` (N, 2)."""
    out = img.clone()
    h, w = out.shape[-2:]
    col = torch.tensor(color, dtype=out.dtype)[:, None, None]
    for x, y in pts.round().long().tolist():
        x0, x1, y0, y1 = max(x - radius, 0), min(x + radius + 1, w), max(y - radius, 0), min(y + radius + 1, h)
        if x0 < x1 and y0 < y1:
            out[:, y0:y1, x0:x1] = col
    return out


class FaceNets(Method):
    evaluations = ("face_nets",)

    @classmethod
    def tiny(cls, tmp):
        return "configs/face_nets_synth.yaml", [
            "data.train_length=64", "data.test_length=16", "data.n_identities=4", "data.batch_size=8", "model.id_width=0.25",
            "model.analysis_width=0.25", "model.id_dim=16", "model.analysis_hidden=32", "model.warmup=2",
            "model.expression_decorrelation=1.0"]  # its running average is state: resumed bit for bit
    ema_nets = ("identity", "analysis")

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        m = cfg.model
        self.nets.update(build_small_nets(m, cfg.data.size))
        self.nets["margin"] = ArcMarginHead(m.id_dim, cfg.data.n_identities, m.arc_scale, m.arc_margin)
        if m.expression_decorrelation > 0:  # its running cross-covariance (buffers only) is saved with the nets
            self.nets["decor"] = CrossCovarianceEMA(m.id_dim, 3)
        self.to(device)
        id_params = list(self.nets["identity"].parameters()) + list(self.nets["margin"].parameters())
        self.optims["identity"] = torch.optim.AdamW(id_params, lr=m.lr, betas=tuple(m.betas),
                                                    weight_decay=m.weight_decay)
        self.optims["analysis"] = torch.optim.AdamW(self.nets["analysis"].parameters(), lr=m.lr,
                                                    betas=tuple(m.betas), weight_decay=m.weight_decay)
        self._grid_landmarks = None

    @staticmethod
    def datasets(cfg, split):
        return face_datasets(cfg.data, split)

    def _set_lr(self, step: int) -> float:
        m = self.cfg.model
        for opt in self.optims.values():
            lr = set_lr(opt, m.lr, m.lr_schedule, step, self.cfg.train.steps, m.warmup)
        return lr

    # --- training --------------------------------------------------------------------------------
    def identity_loss(self, x, labels):
        """(embedding, margin cross-entropy, training accuracy)."""
        emb = self.nets["identity"](x)
        logits = self.nets["margin"](emb.float(), labels)
        acc = (self.nets["margin"].cosines(emb.detach().float()).argmax(1) == labels).float().mean()
        return emb, F.cross_entropy(logits, labels), acc

    def analysis_losses(self, x, batch) -> dict:
        net = self.nets["analysis"]
        out = net(x, raw=True)
        lm_true = pixels_to_unit(batch["landmarks"], self.cfg.data.size)
        pose_z, expr_z = net.standardise(batch["pose"], batch["expression"])
        return {"landmarks": F.l1_loss(out["landmarks"].float(), lm_true),
                "pose": F.mse_loss(out["pose_z"].float(), pose_z),
                "expression": F.mse_loss(out["expression_z"].float(), expr_z)}

    def train_step(self, batch, step, ctx):
        m, faces = self.cfg.model, batch["faces"]
        x = faces["image"]
        logs = {"lr": self._set_lr(step)}

        # 1) identity net + class centres: additive angular margin softmax over identity ids (+ optionally the
        #    expression decorrelation of the embedding)
        opt = self.optims["identity"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            emb, loss_id, acc = self.identity_loss(x, faces["identity"])
            loss = loss_id
            if m.expression_decorrelation > 0:
                _, expr_z = self.nets["analysis"].standardise(faces["pose"], faces["expression"])
                loss = loss + m.expression_decorrelation * self.nets["decor"](emb, expr_z)
                logs["loss/expression_decorrelation"] = self.nets["decor"].estimate()
        ctx.backward(loss, "identity")
        ctx.step(opt, "identity", m.clip_norm)
        logs.update({"loss/identity": loss_id.item(), "train/id_acc": acc.item()})

        # 2) analysis net: landmarks (L1) + pose and expression (MSE, standardised)
        opt = self.optims["analysis"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            parts = self.analysis_losses(x, faces)
            loss = (m.landmark_weight * parts["landmarks"] + m.pose_weight * parts["pose"]
                    + m.expression_weight * parts["expression"])
        ctx.backward(loss, "analysis")
        ctx.step(opt, "analysis", m.clip_norm)
        logs.update({f"loss/{k}": v.item() for k, v in parts.items()})
        logs["loss/analysis"] = loss.item()
        return logs

    # --- inspection ------------------------------------------------------------------------------
    def _true_landmarks(self, n: int) -> torch.Tensor:
        """Pixel landmarks of the first ``n`` test faces (the loop's fixed grid images)."""
        if self._grid_landmarks is None or self._grid_landmarks.shape[0] < n:
            ds = self.datasets(self.cfg, "test")["faces"]
            self._grid_landmarks = torch.from_numpy(ds.landmarks[:n].copy())
        return self._grid_landmarks[:n]

    def sample_grids(self, fixed):
        """Test faces (upscaled to >= 128 px) with true landmarks in green and predictions in red."""
        x = fixed["faces"]
        size = x.shape[-1]
        k = max(1, 128 // size)
        with self.inference():
            pred = unit_to_pixels(self.nets["analysis"](x)["landmarks"].float().cpu(), size)
        true = self._true_landmarks(x.shape[0])
        big = F.interpolate(x.float().cpu(), scale_factor=k, mode="nearest")
        cells = []
        for img, t, p in zip(big, true, pred):
            img = draw_points(img, (t + 0.5) * k - 0.5, (-1.0, 1.0, -1.0))
            cells.append(draw_points(img, (p + 0.5) * k - 0.5, (1.0, -1.0, -1.0)))
        n_cols = max(1, math.ceil(math.sqrt(len(cells))))
        return {"landmarks": [cells[i:i + n_cols] for i in range(0, len(cells), n_cols)]}

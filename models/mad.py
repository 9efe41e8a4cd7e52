"""Method 5: MAD, multi-attribute adversarial auto-encoder (Browatzki & Wallraven, ICCVW 2019).

An adversarial auto-encoder Q/P learns z (99-d) with a latent GAN (D_z vs an N(0, I) prior) and an image
GAN (D). E splits z into [pose 3 | identity 32 | style 32 | expression 32] and G maps the parts back.
``model.phase`` picks what trains (spec B.0): ``ae`` (Q, P, D_z, D), ``disentangle`` (E, G on a frozen
AE), ``joint`` (all; the disentanglement loss reaches Q but not P). Chain the phases with ``--init``.

Data (``data.name``): ``synthetic`` (every image labels all four parts) or ``real``: the datasets of
``model.real_datasets``, one named stream each, every image feeding the AE losses and each dataset's feature,
cycle and augmentation losses using only the parts it labels (``REAL_PARTS``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from data.folders import DatasetLayoutError
from data.identity_batches import IdentityGroups, ImageChunks, build_identity_groups, flatten_groups
from losses import bce_logits
from models.base import Method
from models.nets.mad_nets import Decoder, Encoder, ImageDisc, LatentDisc, Merger, Splitter

PARTS = ("pose", "identity", "style", "expression")
PHASES = ("ae", "disentangle", "joint")
DATA = ("synthetic", "real")
# parts each real dataset labels (spec B.4 minus pose: neither public release has pose labels; the original
# regressed VGGFace2's all-zero pose). VoxCeleb1 (style by video) is not wired in yet.
REAL_PARTS = {"vggface2": ("identity",), "affectnet": ("expression",)}
LABEL_KEYS = {"pose": "f_pose", "identity": "identity", "style": "f_style", "expression": "f_expression"}


def adam(params, lr, betas):
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


# --- feature losses --------------------------------------------------------------------------------
def identity_triplets(emb, ids, n_hard):
    """Per anchor: a random same-identity positive and one of the ``n_hard`` nearest other-identity samples."""
    b = ids.shape[0]
    same = ids[:, None] == ids[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=ids.device)
    pos_mask = same & ~eye
    if not pos_mask.any(1).all():
        raise ValueError("an anchor has no same-identity positive in the batch (use identity groups)")
    pos = torch.multinomial(pos_mask.float(), 1).squeeze(1)
    dist = torch.cdist(emb.detach(), emb.detach()).masked_fill(same, float("inf"))
    k = min(n_hard, b - 1)
    hard = dist.topk(k, dim=1, largest=False).indices
    pick = torch.randint(0, k, (b,), device=ids.device)
    hard_ok = torch.isfinite(dist.gather(1, hard))
    neg = hard.gather(1, pick[:, None]).squeeze(1)
    valid = hard_ok.gather(1, pick[:, None]).squeeze(1)
    return pos, neg, valid


def label_triplets(labels, neg_rank_min, classes=None, class_distance=0.0):
    """Per anchor: the nearest other sample in label space as positive, a random rank >= neg_rank_min as negative.

    Label distance: L2 of ``labels``, plus ``class_distance`` where ``classes`` (if given) differ."""
    b = labels.shape[0]
    dist = torch.cdist(labels, labels)
    if classes is not None:
        dist = dist + class_distance * (classes[:, None] != classes[None, :])
    dist.fill_diagonal_(float("inf"))
    order = dist.argsort(1)  # self last
    lo = max(0, min(neg_rank_min, b - 2))
    rank = torch.randint(lo, max(lo + 1, b - 1), (b,), device=labels.device)
    return order[:, 0], order.gather(1, rank[:, None]).squeeze(1)


def feature_loss(part: str, emb, batch, m) -> torch.Tensor:
    """L_f of one part: pose regression (MSE), else a triplet loss (spec B.4)."""
    if part == "pose":
        return F.mse_loss(emb, batch["f_pose"][:, list(m.pose_targets)])
    if part == "identity":
        pos, neg, valid = identity_triplets(emb, batch["identity"], m.hard_negatives)
        return _triplet_idx(emb, pos, neg, valid, m)
    classes = batch.get("expression_class") if part == "expression" else None
    pos, neg = label_triplets(batch[f"f_{part}"], m.neg_rank_min, classes, m.expression_class_distance)
    return _triplet_idx(emb, pos, neg, torch.ones_like(pos, dtype=torch.bool), m)


def _triplet_idx(emb, pos, neg, valid, m):
    """Mean over valid anchors of clamp(|a-p| - |a-n| + margin, 0, clip), Euclidean distances."""
    d_p = (emb - emb[pos]).norm(dim=1)
    d_n = (emb - emb[neg]).norm(dim=1)
    h = (d_p - d_n + m.triplet_margin).clamp(0, m.triplet_clip)
    return h[valid].mean() if valid.any() else h.sum() * 0


def _frozen(net, x):
    """``net(x)`` with detached parameters: gradients reach ``x`` but not the weights."""
    return functional_call(net, {k: v.detach() for k, v in net.named_parameters()}, (x,))


def permute_labels(batch: dict, perm) -> dict:
    return {k: v[perm] for k, v in batch.items() if k.startswith("f_") or k in ("identity", "expression_class")}


def labelled_parts(labels: dict) -> tuple[str, ...]:
    """The parts whose labels ``labels`` holds, in ``PARTS`` order."""
    return tuple(k for k in PARTS if LABEL_KEYS[k] in labels)


def source_labels(name: str, batch: dict) -> dict:
    """A flat batch's labels in the feature losses' names: synthetic as is, VGGFace2 ``identity``, AffectNet
    ``f_expression`` = (valence, arousal) and ``expression_class``."""
    if name == "vggface2":
        return {"identity": batch["identity"]}
    if name == "affectnet":
        return {"f_expression": torch.stack([batch["valence"], batch["arousal"]], 1).float(),
                "expression_class": batch["expression"]}
    return batch


# --- real data -------------------------------------------------------------------------------------
def real_sources(cfg) -> list[str]:
    """``model.real_datasets``, checked: supported names, no repeats, each ``data.<name>_root`` a folder."""
    names = list(cfg.model.real_datasets or [])
    if not names:
        raise ValueError(f"data.name=real needs model.real_datasets (some of {list(REAL_PARTS)})")
    for name in names:
        if name not in REAL_PARTS:
            raise ValueError(f"model.real_datasets: {name!r} is not supported; choose from {list(REAL_PARTS)}")
        root = cfg.data[f"{name}_root"]
        if not root:
            raise DatasetLayoutError(f"model.real_datasets has {name}: set data.{name}_root to its folder")
        if not Path(root).is_dir():
            raise DatasetLayoutError(f"data.{name}_root {root} does not exist")
    if len(set(names)) != len(names):
        raise ValueError(f"model.real_datasets lists a dataset twice: {names}")
    return names


def build_real(cfg, split: str) -> dict:
    """``{name: dataset}`` of ``model.real_datasets``. Training: VGGFace2 as :class:`IdentityGroups` (positives
    in every batch), the others as :class:`ImageChunks`, both ``model.group_size`` images per index; test
    (VGGFace2 test, AffectNet validation): flat images."""
    from data import _cache_dir
    from data.affectnet import AffectNet
    from data.vggface2 import VGGFace2

    d, m = cfg.data, cfg.model
    out = {}
    for name in real_sources(cfg):
        root = Path(d[f"{name}_root"])
        if name == "vggface2":
            ds = VGGFace2(root, "train" if split == "train" else "test", d.size, min_height=d.vggface2_min_height)
        else:
            ds = AffectNet(root, "train" if split == "train" else "validation", d.size)
        part = "train" if split == "train" else "test"
        ds.use_cache(_cache_dir(d, root), f"{name}_{part}", d.cache, d.workers)
        if split == "train" and name == "vggface2":
            # about one group per group_size images and epoch (one per identity would use 4 of ~360 images)
            repeats = max(1, len(ds) // (len(np.unique(ds.identities)) * m.group_size))
            ds = IdentityGroups(ds, m.group_size, cfg.seed, repeats)
        elif split == "train":
            ds = ImageChunks(ds, m.group_size, cfg.seed)
        out[name] = ds
    return out


class MAD(Method):
    ema_nets = ("q", "p", "e", "g")

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        m, size = cfg.model, cfg.data.size
        if m.phase not in PHASES:
            raise ValueError(f"model.phase must be one of {PHASES}, got {m.phase!r}")
        if len(m.pose_targets) != m.dims.pose:
            raise ValueError(f"model.pose_targets has {len(m.pose_targets)} entries, model.dims.pose is {m.dims.pose}")
        if cfg.data.name not in DATA:  # dataset roots are checked when the datasets are built (not needed by eval)
            raise ValueError(f"MAD trains on data.name {' | '.join(DATA)}, got {cfg.data.name!r}")
        self.dims = {k: int(m.dims[k]) for k in PARTS}
        z = self.z_dim = sum(self.dims.values())
        self.nets["q"] = Encoder(size, z, m.width)
        self.nets["p"] = Decoder(size, z, m.width)
        self.nets["dz"] = LatentDisc(z, m.dz_hidden)
        self.nets["d"] = ImageDisc(size, m.width)
        self.nets["e"] = Splitter(z, self.dims, m.hidden)
        self.nets["g"] = Merger(self.dims, z, m.hidden)
        self.to(device)
        n = self.nets
        self.optims["ae"] = adam(list(n["q"].parameters()) + list(n["p"].parameters()), m.lr, m.betas)
        self.optims["dz"] = adam(n["dz"].parameters(), m.lr, m.betas)
        self.optims["d"] = adam(n["d"].parameters(), m.lr * m.d_lr_scale, m.betas)
        self.optims["disent"] = adam(list(n["e"].parameters()) + list(n["g"].parameters()), m.disent_lr,
                                     m.disent_betas)

    @staticmethod
    def datasets(cfg, split):
        if cfg.data.name == "real":
            return build_real(cfg, split)
        return {"faces": build_identity_groups(cfg, split)}

    # --- inference -------------------------------------------------------------------------------
    def encode(self, x, nets=None) -> dict:
        n = nets or self.nets
        return n["e"](n["q"](x))

    def decode(self, parts: dict, nets=None):
        n = nets or self.nets
        return n["p"](n["g"](parts))

    def reconstruct(self, x, nets=None):
        """P(Q(x)) after the AE phase, P(G(E(Q(x)))) after the others."""
        n = nets or self.nets
        z = n["q"](x)
        return n["p"](z if self.cfg.model.phase == "ae" else n["g"](n["e"](z)))

    # --- training --------------------------------------------------------------------------------
    def _set_modes(self, phase):
        for k, net in self.nets.items():
            net.train()
        if phase == "disentangle":  # frozen AE: BN running statistics must not drift either
            self.nets["q"].eval()
            self.nets["p"].eval()

    def _ae_losses(self, x, z, x_hat, logs):
        m, n = self.cfg.model, self.nets
        rec = F.l1_loss(x_hat, x) * m.recon_scale
        z_adv = bce_logits(n["dz"](z), 1.0)
        img_adv = bce_logits(n["d"](x_hat), 1.0)
        logs.update({"loss/rec": rec.item(), "loss/z_adv": z_adv.item(), "loss/img_adv": img_adv.item()})
        return m.w_recon * rec + m.w_zadv * z_adv + m.w_adv * img_adv

    def _disent_losses(self, z, parts, sources, step, logs):
        """L_I = w_disent [w_zrec |z - G(E(z))| + w_feat L_f + w_cycle L_cyc + w_aug L_aug] (spec B.4) per source,
        averaged over sources. ``sources``: name -> (slice of the batch, labels). L_f sums the parts a source
        labels; the cycled factor is its labelled parts in turn (synthetic: pose, identity, style, expression)."""
        m, n = self.cfg.model, self.nets
        z_rec = n["g"](parts)
        one = len(sources) == 1
        total, vals = None, {}
        for name, (sl, labels) in sources.items():
            own, zr, zs = (parts, z_rec, z) if one else ({k: v[sl] for k, v in parts.items()}, z_rec[sl], z[sl])
            todo = labelled_parts(labels)
            if not todo:
                raise ValueError(f"dataset {name!r} labels none of the parts {PARTS}")
            zrec = F.l1_loss(zr, zs.detach())
            feat = 0.0
            for k in todo:
                lf = feature_loss(k, own[k], labels, m)
                vals.setdefault(f"loss/f_{k}", []).append(lf.item())
                feat = feat + getattr(m, f"w_{k}") * lf
            cyc, aug = self._cycle(own, labels, todo[step % len(todo)])
            t = m.w_disent * (m.w_zrec * zrec + m.w_feat * feat + m.w_cycle * cyc + m.w_aug * aug)
            for k, v in (("zrec", zrec), ("feat", feat), ("cycle", cyc), ("aug", aug), ("disent", t)):
                vals.setdefault(f"loss/{k}", []).append(v.item())
            total = t if total is None else total + t
        logs.update({k: sum(v) / len(v) for k, v in vals.items()})
        return (total if one else total / len(sources)), z_rec

    def _cycle(self, parts, batch, factor):
        """Swap ``factor`` across the batch, run G->P->Q->E: L_cyc on the non-pose dims, L_aug on ``factor``."""
        n = self.nets
        perm = torch.randperm(parts[factor].shape[0], device=parts[factor].device)
        mixed = {k: (v.detach()[perm] if k == factor else v.detach()) for k, v in parts.items()}
        img = _frozen(n["p"], n["g"](mixed))  # P never gets a share of L_I (spec B.4)
        z2 = _frozen(n["q"], img) if self.cfg.model.phase == "disentangle" else n["q"](img)
        again = n["e"](z2)
        keys = [k for k in PARTS if k != "pose"]
        cyc = F.l1_loss(torch.cat([again[k] for k in keys], 1), torch.cat([mixed[k] for k in keys], 1))
        aug = feature_loss(factor, again[factor], permute_labels(batch, perm), self.cfg.model)
        return cyc, aug

    def train_step(self, batch, step, ctx):
        m, n, phase = self.cfg.model, self.nets, self.cfg.model.phase
        flat = {k: flatten_groups(v) for k, v in batch.items()}
        sources, start = {}, 0
        for k, b in flat.items():
            sources[k] = (slice(start, start + len(b["image"])), source_labels(k, b))
            start += len(b["image"])
        x = torch.cat([b["image"] for b in flat.values()]) if len(flat) > 1 else next(iter(flat.values()))["image"]
        self._set_modes(phase)
        logs = {}
        for o in self.optims.values():
            o.zero_grad(set_to_none=True)
        with ctx.autocast():
            z = n["q"](x)
            if phase == "disentangle":  # the AE is frozen
                z = z.detach()
            loss = 0.0
            if phase != "ae":
                loss, z_rec = self._disent_losses(z, n["e"](z), sources, step, logs)
            if phase != "disentangle":
                x_hat = n["p"](z if phase == "ae" else z_rec)
                loss = loss + self._ae_losses(x, z, x_hat, logs)
        main = "ae" if phase != "disentangle" else "disent"
        ctx.backward(loss, main)
        if phase != "ae":
            ctx.step(self.optims["disent"], main, m.clip_norm)
        if phase != "disentangle":
            ctx.step(self.optims["ae"], main, m.clip_norm)
            self._disc_steps(x, z.detach(), x_hat.detach(), step, ctx, logs)
        return logs

    def _disc_steps(self, x, z, x_hat, step, ctx, logs):
        """D_z on every ``dz_every``-th step (prior N(0, I) real), D on every ``d_every``-th step."""
        m, n = self.cfg.model, self.nets
        if step % m.dz_every == 0:
            with ctx.autocast():
                loss = bce_logits(n["dz"](torch.randn_like(z)), 1.0) + bce_logits(n["dz"](z), 0.0)
            self.optims["dz"].zero_grad(set_to_none=True)
            ctx.backward(loss, "dz")
            ctx.step(self.optims["dz"], "dz", m.clip_norm)
            logs["loss/dz"] = loss.item()
        if step % m.d_every == 0:
            with ctx.autocast():
                loss = bce_logits(n["d"](x), 1.0) + bce_logits(n["d"](x_hat), 0.0)
            self.optims["d"].zero_grad(set_to_none=True)
            ctx.backward(loss, "d")
            ctx.step(self.optims["d"], "d", m.clip_norm)
            logs["loss/d"] = loss.item()

    # --- inspection ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_grids(self, fixed):
        nets = self.eval_nets()
        x = torch.cat(list(fixed.values()))
        rows = {"reconstruction": [list(x), list(self.reconstruct(x, nets).float())]}
        for net in self.nets.values():
            net.train()
        return rows

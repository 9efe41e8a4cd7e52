"""Method 5: MAD, multi-attribute adversarial auto-encoder (Browatzki & Wallraven, ICCVW 2019).

An adversarial auto-encoder Q/P learns z (99-d) with a latent GAN (D_z vs an N(0, I) prior) and an image
GAN (D). E splits z into [pose 3 | identity 32 | style 32 | expression 32] and G maps the parts back.
``model.phase`` picks what trains (spec B.0): ``ae`` (Q, P, D_z, D), ``disentangle`` (E, G on a frozen
AE), ``joint`` (all; the disentanglement loss reaches Q but not P). Chain the phases with ``--init``.

Update order of one step (phases ae and joint), the original's:
  1. z = Q(x);
  2. D_z steps (every ``dz_every``-th step) on z.detach() against N(0, I) samples;
  3. the latent adversarial term -log D_z(z) uses the updated D_z;
  4. Q's first step (``model.q_zadv_step``), on that term alone;
  5. joint: the disentanglement loss L_I on E(z), z_rec = G(E(z)); its cycle G->P->Q->E runs the Q of step 4;
  6. x_hat = P(z) (ae) or P(z_rec) (joint), reconstruction loss;
  7. D steps (every ``d_every``-th step) on x against x_hat.detach();
  8. the image adversarial term -log D(x_hat) uses the updated D;
  9. Q's second step, on the sum of all its terms (the latent adversarial one included again); P, E and G step
     once on the sum.
With step 4, step 1 runs on differentiable copies of Q's weights, so step 9's gradient through z is the one at
the weights that made z, although step 4 has changed them (the original, on old PyTorch, read the stepped
weights there: a DIFF at q_zadv_step in configs/methods/mad.yaml).
Phase disentangle: z = Q(x) is detached, L_I trains E and G only.

Data (``data.name``): ``synthetic`` (every image labels all four parts) or ``real``: the datasets of
``model.real_datasets``, one named stream each, every image feeding the AE losses and each dataset's feature,
cycle and augmentation losses using only the parts it labels (``REAL_PARTS``).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from data.folders import DatasetLayoutError
from data.identity_batches import IdentityGroups, ImageChunks, build_identity_groups, flatten_groups
from losses import bce_logits
from models.base import Method
from models.nets.mad_nets import Decoder, ImageDisc, LatentDisc, Merger, ResNetEncoder, Splitter, build_encoder
from models.nets.weights import load_matching, read_resnet18

PARTS = ("pose", "identity", "style", "expression")
PHASES = ("ae", "disentangle", "joint")
DATA = ("synthetic", "real")
# parts each real dataset labels (spec B.4 minus pose: neither public release has pose labels; the original
# regressed VGGFace2's all-zero pose). VoxCeleb1 (style by video) is not wired in yet.
REAL_PARTS = {"vggface2": ("identity",), "affectnet": ("expression",)}
LABEL_KEYS = {"pose": "f_pose", "identity": "identity", "style": "f_style", "expression": "f_expression"}
TRIPLET_EPS = 1e-8  # inside the square root of the triplet distances, as the original


def adam(params, lr, betas):
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


# --- feature losses --------------------------------------------------------------------------------
def identity_triplets(emb, ids, n_hard):
    """Per anchor: a random same-identity positive and one of the ``n_hard`` nearest other-identity samples.
    ``valid`` is False where that draw falls past the batch's last other-identity sample (fewer than ``n_hard``);
    an anchor without a positive is a ValueError (both differ from the original: configs/methods/mad.yaml)."""
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
    """Per anchor: the nearest other sample in label space as positive; as negative, a random rank in
    [neg_rank_min, B) of the label-distance order in which the anchor itself is rank 0 (the original's ranks:
    rank 10 is the tenth-nearest other sample).

    Label distance: L2 of ``labels``, plus ``class_distance`` where ``classes`` (if given) differ."""
    b = labels.shape[0]
    dist = torch.cdist(labels, labels)
    if classes is not None:
        dist = dist + class_distance * (classes[:, None] != classes[None, :])
    dist.fill_diagonal_(float("inf"))
    order = dist.argsort(1)  # the other samples, nearest first (self last): rank r is order[:, r - 1]
    lo = max(0, min(neg_rank_min - 1, b - 2))
    rank = torch.randint(lo, max(lo + 1, b - 1), (b,), device=labels.device)
    return order[:, 0], order.gather(1, rank[:, None]).squeeze(1)


def feature_loss(part: str, emb, batch, m) -> torch.Tensor:
    """L_f of one part: pose regression (MSE), else a triplet loss (spec B.4)."""
    if part == "pose":
        return F.mse_loss(emb, batch["f_pose"][:, list(m.pose_targets)] * m.pose_target_scale)
    if part == "identity":
        pos, neg, valid = identity_triplets(emb, batch["identity"], m.hard_negatives)
        return _triplet_idx(emb, pos, neg, valid, m)
    classes = batch.get("expression_class") if part == "expression" else None
    pos, neg = label_triplets(batch[f"f_{part}"], m.neg_rank_min, classes, m.expression_class_distance)
    return _triplet_idx(emb, pos, neg, torch.ones_like(pos, dtype=torch.bool), m)


def _distance(a, b):
    """Euclidean distance with ``TRIPLET_EPS`` under the root (finite gradient at a == b), as the original."""
    return ((a - b) ** 2).sum(1).add(TRIPLET_EPS).sqrt()


def _triplet_idx(emb, pos, neg, valid, m):
    """Mean over valid anchors of clamp(d(a,p) - d(a,n) + margin, 0, clip), ``_distance``."""
    d_p = _distance(emb, emb[pos])
    d_n = _distance(emb, emb[neg])
    h = (d_p - d_n + m.triplet_margin).clamp(0, m.triplet_clip)
    return h[valid].mean() if valid.any() else h.sum() * 0


def _frozen(net, x):
    """``net(x)`` with detached parameters: gradients reach ``x`` but not the weights."""
    return functional_call(net, {k: v.detach() for k, v in net.named_parameters()}, (x,))


def _on_weight_copies(net, x):
    """``net(x)`` through differentiable copies of its parameters: gradients reach the weights as usual, but an
    optimiser step on ``net`` before the backward pass leaves this graph valid (it keeps the weights it ran on)."""
    return functional_call(net, {k: v.clone() for k, v in net.named_parameters()}, (x,))


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


def init_q_from_resnet18(q, path) -> str:
    """The original's Q init: the tensors of an ImageNet ResNet-18 file (torchvision format) whose name and shape
    match Q, the rest kept random. Returns a one-line report; ValueError if the file is no ResNet-18 state_dict
    or nothing matches (Q's widths differ from ResNet-18's unless model.width is 1)."""
    counter = lambda k: k.endswith("num_batches_tracked")  # BatchNorm batch counters: not weights, not counted
    state = {k: v for k, v in read_resnet18(path).items() if not counter(k)}
    loaded, kept = load_matching(q, state)
    kept = [k for k in kept if not counter(k)]
    if not loaded:
        raise ValueError(f"model.q_init {path}: no ResNet-18 tensor matches Q's shapes (ImageNet weights need "
                         f"model.encoder=resnet18 and model.width=1.0)")
    skipped = [k for k in state if k not in set(loaded)]
    more = lambda names: ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
    return (f"Q initialised from {path}: {len(loaded)} tensors loaded, {len(skipped)} skipped "
            f"({more(skipped) or 'none'}), {len(kept)} of Q's kept random ({more(kept) or 'none'})")


class MAD(Method):
    ema_nets = ("q", "p", "e", "g")
    weight_keys = {"resnet18": "model.q_init"}
    tasks = ("factor_encoding", "identity_swap")

    @property
    def evaluations(self):
        """Real-data runs: no identity-swap pairs with a truth to score (factor encoding adds LFW / AffectNet)."""
        return ("factor_encoding",) if self.cfg.data.name == "real" else self.tasks

    @classmethod
    def tiny(cls, tmp):
        return "configs/mad_synth_joint.yaml", [
            "data.train_length=96", "data.test_length=24", "data.n_identities=10", "data.size=32",
            "data.batch_size=4", "model.width=0.125", "model.hidden=32", "model.dz_hidden=32", "eval.max_images=24",
            "eval.num_display=2"]

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
        self.nets["q"] = build_encoder(m.encoder, size, z, m.width)
        if m.q_init:
            if not isinstance(self.nets["q"], ResNetEncoder):
                raise ValueError("model.q_init (ImageNet ResNet-18 weights) needs model.encoder=resnet18")
            print(init_q_from_resnet18(self.nets["q"], m.q_init))
        self.nets["p"] = Decoder(size, z, m.width)
        self.nets["dz"] = LatentDisc(z, m.dz_hidden)
        self.nets["d"] = ImageDisc(size, m.width)
        self.nets["e"] = Splitter(z, self.dims, m.hidden)
        self.nets["g"] = Merger(self.dims, z, m.hidden)
        self.to(device)
        n = self.nets
        self.optims["q"] = adam(n["q"].parameters(), m.lr, m.betas)
        self.optims["p"] = adam(n["p"].parameters(), m.lr, m.betas)
        self.optims["dz"] = adam(n["dz"].parameters(), m.lr, m.betas)
        self.optims["d"] = adam(n["d"].parameters(), m.lr * m.d_lr_scale, m.betas)
        self.optims["disent"] = adam(list(n["e"].parameters()) + list(n["g"].parameters()), m.disent_lr,
                                     m.disent_betas)

    @staticmethod
    def datasets(cfg, split):
        if cfg.data.name == "real":
            return build_real(cfg, split)
        return {"faces": build_identity_groups(cfg, split)}

    # --- inference (tasks factor_encoding and identity_swap, models/tasks.py) -----------------------
    def encode(self, x) -> dict:
        """The named parts of x: E(Q(x)) = {pose, identity, style, expression}."""
        return self.nets["e"](self.nets["q"](x))

    def decode(self, parts: dict):
        return self.nets["p"](self.nets["g"](parts))

    def reconstruct(self, x):
        """P(Q(x)) after the AE phase, P(G(E(Q(x)))) after the others."""
        z = self.nets["q"](x)
        return self.nets["p"](z if self.cfg.model.phase == "ae" else self.nets["g"](self.nets["e"](z)))

    def swap(self, identity_source, attribute_source):
        """``attribute_source`` decoded with ``identity_source``'s identity part."""
        return self.decode({**self.encode(attribute_source), "identity": self.encode(identity_source)["identity"]})

    def pose_head_targets(self, pose):
        """What the pose head regresses, from the synthetic pose vectors (tx, ty, roll, scale): the
        ``model.pose_targets`` columns times ``model.pose_target_scale``."""
        return pose[:, list(self.cfg.model.pose_targets)] * self.cfg.model.pose_target_scale

    def roll_radians(self, parts: dict):
        """The roll the pose head reads (radians), if it regresses roll; else None."""
        targets = list(self.cfg.model.pose_targets)
        return parts["pose"][:, targets.index(2)] / self.cfg.model.pose_target_scale if 2 in targets else None

    # --- training --------------------------------------------------------------------------------
    def _set_modes(self, phase):
        for k, net in self.nets.items():
            net.train()
        if phase == "disentangle":  # frozen AE: BN running statistics must not drift either
            self.nets["q"].eval()
            self.nets["p"].eval()

    def _disent_losses(self, z, parts, sources, step, logs):
        """L_I = w_disent [w_zrec |z - G(E(z))| + w_feat L_f + w_cycle L_cyc + w_aug L_aug] (spec B.4) per source,
        averaged over sources. ``sources``: name -> (slice of the batch, labels). L_f sums the parts a source
        labels, each times its ``w_<part>``; the cycled factor is its labelled parts in turn (synthetic: pose,
        identity, style, expression) and its L_aug carries the same ``w_<part>`` (the original's x2 for
        expression doubles both). z is not detached: in the joint phase L_zrec reaches Q, as in the original."""
        m, n = self.cfg.model, self.nets
        z_rec = n["g"](parts)
        one = len(sources) == 1
        total, vals = None, {}
        for name, (sl, labels) in sources.items():
            own, zr, zs = (parts, z_rec, z) if one else ({k: v[sl] for k, v in parts.items()}, z_rec[sl], z[sl])
            todo = labelled_parts(labels)
            if not todo:
                raise ValueError(f"dataset {name!r} labels none of the parts {PARTS}")
            zrec = F.l1_loss(zr, zs)
            feat = 0.0
            for k in todo:
                lf = feature_loss(k, own[k], labels, m)
                vals.setdefault(f"loss/f_{k}", []).append(lf.item())
                feat = feat + getattr(m, f"w_{k}") * lf
            factor = todo[step % len(todo)]
            cyc, aug = self._cycle(own, labels, factor)
            aug = getattr(m, f"w_{factor}") * aug
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
        joint = self.cfg.model.phase == "joint"
        p_learns = joint and self.cfg.model.cycle_trains_p  # the original: P never gets a share of L_I (spec B.4)
        img = (n["p"] if p_learns else partial(_frozen, n["p"]))(n["g"](mixed))
        z2 = n["q"](img) if joint else _frozen(n["q"], img)
        again = n["e"](z2)
        keys = [k for k in PARTS if k != "pose"]
        cyc = F.l1_loss(torch.cat([again[k] for k in keys], 1), torch.cat([mixed[k] for k in keys], 1))
        aug = feature_loss(factor, again[factor], permute_labels(batch, perm), self.cfg.model)
        return cyc, aug

    def train_step(self, batch, step, ctx):
        """One step in the original's update order (module docstring): D_z and D step before the adversarial
        terms that use them; Q steps on the latent adversarial term alone before L_I's cycle runs Q again, then
        on the sum."""
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
        if phase == "disentangle":  # the AE is frozen: E and G learn on a detached code
            with ctx.autocast():
                z = n["q"](x).detach()
                loss, _ = self._disent_losses(z, n["e"](z), sources, step, logs)
            ctx.backward(loss, "disent")
            ctx.step(self.optims["disent"], "disent", m.clip_norm)
            return logs
        q_first = bool(m.q_zadv_step and m.w_zadv)
        with ctx.autocast():
            z = _on_weight_copies(n["q"], x) if q_first else n["q"](x)
        if step % m.dz_every == 0:
            self._disc_step("dz", torch.randn_like(z), z.detach(), ctx, logs)
        with ctx.autocast():
            z_adv = bce_logits(_frozen(n["dz"], z), 1.0)  # D_z as just updated
        if q_first:
            self._q_zadv_step(m.w_zadv * z_adv, ctx)
        with ctx.autocast():
            loss = m.w_zadv * z_adv
            if phase == "joint":  # the cycle's Q pass runs on the Q just stepped
                l_i, z_rec = self._disent_losses(z, n["e"](z), sources, step, logs)
                loss = loss + l_i
            x_hat = n["p"](z if phase == "ae" else z_rec)
            rec = F.l1_loss(x_hat, x) * m.recon_scale
        if step % m.d_every == 0:
            self._disc_step("d", x, x_hat.detach(), ctx, logs)
        with ctx.autocast():
            img_adv = bce_logits(_frozen(n["d"], x_hat), 1.0)  # D as just updated
            loss = loss + m.w_recon * rec + m.w_adv * img_adv
        logs.update({"loss/rec": rec.item(), "loss/z_adv": z_adv.item(), "loss/img_adv": img_adv.item()})
        ctx.backward(loss, "ae")
        if phase == "joint":
            ctx.step(self.optims["disent"], "ae", m.clip_norm)
        ctx.step(self.optims["p"], "ae", m.clip_norm)
        ctx.step(self.optims["q"], "ae", m.clip_norm)  # Q's second step (its first, if q_zadv_step is off)
        return logs

    def _q_zadv_step(self, z_adv, ctx):
        """Q's first step: on ``z_adv`` (the weighted latent adversarial term) alone. Its graph stays for the
        final backward pass, which adds this term to Q's gradient again, as the original's did."""
        q_params = list(self.nets["q"].parameters())
        grads = torch.autograd.grad(ctx.scale(z_adv, "q_zadv"), q_params, retain_graph=True)
        for p, g in zip(q_params, grads):
            p.grad = g
        ctx.step(self.optims["q"], "q_zadv", self.cfg.model.clip_norm)
        for p in q_params:
            p.grad = None

    def _disc_step(self, name, real, fake, ctx, logs):
        """One update of discriminator ``name`` (dz: prior samples vs codes; d: images vs reconstructions)."""
        with ctx.autocast():
            loss = bce_logits(self.nets[name](real), 1.0) + bce_logits(self.nets[name](fake), 0.0)
        self.optims[name].zero_grad(set_to_none=True)
        ctx.backward(loss, name)
        ctx.step(self.optims[name], name, self.cfg.model.clip_norm)
        logs[f"loss/{name}"] = loss.item()

    # --- inspection ------------------------------------------------------------------------------
    def sample_grids(self, fixed):
        x = torch.cat(list(fixed.values()))
        with self.inference():
            return {"reconstruction": [list(x), list(self.reconstruct(x).float())]}

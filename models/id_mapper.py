"""Method 3: identity disentanglement by latent-space mapping (Nitzan et al., ACM TOG 2020).

A frozen, pretrained StyleGAN2 generator G, a frozen identity encoder E_id and a frozen landmark net L.
Trained: the attribute encoder E_attr, the mapper M (an MLP into W) and a W-space discriminator D_W.
    out = G(M(E_id(I_id), E_attr(I_attr)))    (one w, broadcast to every synthesis layer)
Training images are generator samples with their w codes (``scripts/generate_w_dataset.py``): D_W tells
M's w from the generator's real w. Losses on ``out``: identity (vs E_id(I_id)), landmarks (vs L(I_attr)),
non-saturating adversarial on w, and, on same-image steps (I_id == I_attr), L1 + MS-SSIM pixel loss.

Step schedule (as the original code's ``cross_frequency``): step s is a *cross* step (I_id and I_attr are
different images, no pixel loss) when ``s % cross_frequency == 0``, otherwise a same-image step; with
``model.train_real_attr`` (the original's flag) a cross step's I_attr is a real image (``data.real_attr``); the W
adversarial terms run on steps with ``s % w_adv_every == 0`` (the original alternates, every 2nd step).
Update order per step: M+E_attr on the non-adversarial loss (optimizer ``main``), M+E_attr on the
adversarial loss (optimizer ``adv``, 0.1x lr), then D_W (0.4x lr, R1 on real w). All three use gradients
of the same forward pass, as in the original.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from losses import gan_loss, r1_penalty
from losses.ms_ssim import inverse_gaussian_mask, pixel_loss
from models.base import Method
from models.nets.face_small import resize_to
from models.nets.id_mapper_nets import LatentMapper, WDiscriminator, build_attr_encoder

# normalised coords -> pixels of a 160 px image: the original's landmark net sees the image resized to 160 px
# and its loss is in those pixels, so lambda_landmarks keeps the original's meaning at any resolution
LANDMARK_SCALE = 80.0


def load_frozen(cfg, device) -> dict:
    """The pretrained, frozen networks named in ``model.*``: generator, identity encoder, landmark net."""
    from models.nets.face_small import build_identity_encoder, build_landmark_net, check_world
    from models.nets.stylegan2 import load_generator

    m = cfg.model
    if not m.generator:
        raise ValueError("model.generator must name a StyleGAN2 checkpoint: the public format (g_ema, latent_avg) "
                         "or a stylegan2 run of this repo (python train.py --config configs/stylegan2_synth.yaml)")
    if not m.identity_weights:
        raise ValueError("model.identity_weights must name the identity network: an ArcFace IR-SE50 state_dict "
                         "(model.identity=ir_se50) or a face_nets checkpoint (model.identity=small)")
    if not m.landmarks_weights:
        raise ValueError("model.landmarks_weights must name a face_nets checkpoint "
                         "(python train.py --config configs/face_nets_synth.yaml)")
    g, w_avg = load_generator(m.generator, device)
    nets = {
        "g": g, "w_avg": w_avg,
        "id": build_identity_encoder(m.identity, m.identity_weights, device),
        "landmarks": build_landmark_net(m.landmarks_weights, device),
    }
    check_world(nets["id"], cfg.data, "identity loss net", m.identity_weights)
    check_world(nets["landmarks"], cfg.data, "landmark loss net", m.landmarks_weights)
    return nets


def real_attribute_images(d):
    """``data.real_attr``: 'synthetic' (fresh renders of the embedded faces at data.size) or an image folder."""
    if d.real_attr == "synthetic":
        from data.synthetic import SyntheticFaces, world_args

        return SyntheticFaces(size=d.size, length=d.train_length, seed=d.seed, split="id-real-attributes",
                              n_identities=d.n_identities, cache_dir=d.cache_dir, **world_args(d))
    from pathlib import Path

    from data.folders import IMAGE_EXTENSIONS, DatasetLayoutError, ImageDomain

    root = Path(d.real_attr or "")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) if root.is_dir() else []
    if not paths:
        raise DatasetLayoutError(f"data.real_attr must be 'synthetic' or a folder of images; {root} has none")
    return ImageDomain(paths, d.size, d.crop, d.resize_filter)


class IdMapper(Method):
    tasks = ("identity_swap",)
    evaluations = ("identity_swap", "generator_samples")
    ema_nets = ("attr_enc", "mapper")
    weight_keys = {"generator": "model.generator", "identity": "model.identity_weights",
                   "landmarks": "model.landmarks_weights", "attr": "model.attr_weights"}

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        m = cfg.model
        self.frozen = load_frozen(cfg, device)  # a plain dict: not part of nets or checkpoints
        g = self.frozen["g"]
        self.size = g.size
        with torch.no_grad():
            id_dim = self.frozen["id"](torch.zeros(1, 3, g.size, g.size, device=device)).shape[1]
        self.nets["attr_enc"] = build_attr_encoder(m, g.size)
        self.nets["mapper"] = LatentMapper(id_dim, self.nets["attr_enc"].dim, g.style_dim, list(m.mapper_hidden))
        self.nets["w_disc"] = WDiscriminator(g.style_dim, list(m.disc_hidden))
        mask = inverse_gaussian_mask(g.size, 80.0 * g.size / 256) if m.pixel_mask == "gaussian" else None
        if m.pixel_mask not in ("gaussian", "uniform"):
            raise ValueError(f"model.pixel_mask must be gaussian or uniform, got {m.pixel_mask!r}")
        if m.id_loss not in ("l1", "cosine"):
            raise ValueError(f"model.id_loss must be l1 or cosine, got {m.id_loss!r}")
        self.register_buffer("pixel_mask", mask, persistent=False)
        self.to(device)
        # E_attr's frozen parameters (InceptionV3's BN scales, as Keras' scale=False) stay out of the optimizers
        gen = [p for k in ("attr_enc", "mapper") for p in self.nets[k].parameters() if p.requires_grad]
        betas = tuple(m.betas)
        self.optims["main"] = torch.optim.Adam(gen, lr=m.lr, betas=betas)
        self.optims["adv"] = torch.optim.Adam(gen, lr=m.lr * m.adv_lr_mult, betas=betas)
        self.optims["w_disc"] = torch.optim.Adam(self.nets["w_disc"].parameters(), lr=m.lr * m.disc_lr_mult,
                                                 betas=betas)

    @staticmethod
    def datasets(cfg, split):
        from data.w_codes import WCodeDataset

        d = cfg.data
        if d.name != "w_codes":
            raise ValueError("id_mapper trains on generator samples with their w codes: set data.name=w_codes and "
                             "data.root to a folder written by scripts/generate_w_dataset.py")
        if not d.root:
            raise ValueError("data.root must name a folder written by scripts/generate_w_dataset.py")
        ds = WCodeDataset(d.root, split=split, val_count=d.val_count)
        # two independent streams over one dataset: identity images, attribute images (+ real w for D_W)
        out = {"id": ds, "attr": ds}
        if cfg.model.train_real_attr and split == "train":
            out["real"] = real_attribute_images(d)
        return out

    # --- inference -------------------------------------------------------------------------------
    @classmethod
    def stub_weights(cls, cfg, stub) -> None:
        from functools import partial

        from data.synthetic import world_args
        from models.nets.arcface import IRSE50
        from models.stub_weights import face_nets_file, inception_v3_file, state_file, stylegan2_file

        m, size = cfg.model, cfg.data.size
        stub.need("model.generator", f"stylegan2_{size}_w{stub.width:g}",
                  lambda p: stylegan2_file(p, size, stub.width))
        # face nets of the run's own synthetic world (check_world refuses others)
        face = partial(face_nets_file, overrides=[f"data.{k}={v}" for k, v in world_args(cfg.data).items()])
        if m.identity == "ir_se50":
            stub.need("model.identity_weights", "ir_se50", lambda p: state_file(IRSE50(), p))
        else:
            stub.need("model.identity_weights", "face_nets", face)
        stub.need("model.landmarks_weights", "face_nets", face)
        if m.attr_encoder == "inception_v3":
            stub.need("model.attr_weights", "inception_v3", inception_v3_file)

    @classmethod
    def tiny(cls, tmp):
        """A random 32 px generator (public format), random face nets, a 24-sample W dataset."""
        from pathlib import Path

        from data.w_codes import write_w_dataset
        from models.nets.stylegan2 import Generator, save_public_format
        from models.stub_weights import face_nets_file

        tmp = Path(tmp)
        gen, face, wdir = tmp / "stylegan2-tiny.pt", tmp / "face_nets-tiny.pt", tmp / "w"
        if not (wdir / "meta.json").is_file():
            tmp.mkdir(parents=True, exist_ok=True)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                g = Generator(32, style_dim=16, n_mlp=2, width=1 / 32)
                save_public_format(gen, g_ema=g, w_avg=g.mean_w(64))
                face_nets_file(face, ["model.id_width=0.25", "model.analysis_width=0.25",
                                      "model.analysis_hidden=32", "model.id_dim=32"])
                write_w_dataset(g.eval(), g.mean_w(64), wdir, 24, batch=8)
        return "configs/id_synth.yaml", [
            f"data.root={wdir}", "data.val_count=8", "data.batch_size=4", f"model.generator={gen}",
            f"model.identity_weights={face}", f"model.landmarks_weights={face}", f"eval.identity_judge={face}",
            f"eval.analysis_judge={face}", "model.mapper_hidden=[32]", "model.attr_dim=16", "model.attr_width=0.25",
            "model.train_real_attr=false", "eval.max_images=6", "eval.num_display=3"]

    @property
    def image_size(self) -> int:
        return self.size  # the frozen generator's resolution

    def own_judges(self) -> dict:
        """The losses' own identity and landmark nets: the evaluation's fallback judges (biased)."""
        return {"identity": self.frozen["id"], "analysis": self.frozen["landmarks"]}

    def fit(self, x: torch.Tensor) -> torch.Tensor:
        """Images resized to the generator's resolution."""
        return resize_to(x, self.size)

    def identity_code(self, x):
        return self.frozen["id"](self.fit(x))

    def attribute_code(self, x):
        return self.nets["attr_enc"](self.fit(x))

    def generate(self, z_id, z_attr):
        """(image, w) from an identity code and an attribute code."""
        w = self.nets["mapper"](z_id, z_attr)
        return self.frozen["g"].synthesis(w, noise_mode=self.cfg.model.noise_mode), w

    def swap(self, identity_source, attribute_source):
        """The face of ``id_img`` with the pose, expression, lighting, ... of ``attr_img``."""
        return self.generate(self.identity_code(identity_source), self.attribute_code(attribute_source))[0]

    def landmarks_px(self, x):
        """Landmarks of the frozen landmark net, in pixels of a 160 px image: (B, N, 2)."""
        return self.frozen["landmarks"](self.fit(x))["landmarks"] * LANDMARK_SCALE

    # --- training --------------------------------------------------------------------------------
    def identity_loss(self, out, z_id):
        z_out = self.frozen["id"](out)
        if self.cfg.model.id_loss == "l1":
            return (z_out - z_id).abs().mean()
        return (1 - F.cosine_similarity(z_out, z_id, dim=1)).mean()

    def train_step(self, batch, step, ctx):
        m = self.cfg.model
        cross = m.cross_frequency > 0 and step % m.cross_frequency == 0
        use_adv = m.lambda_adv > 0 and step % m.w_adv_every == 0
        id_img = self.fit(batch["id"]["image"])
        attr_src = batch["real"] if cross and m.train_real_attr else batch["attr"]
        attr_img = self.fit(attr_src["image"]) if cross else id_img
        real_w = batch["attr"]["w"]
        logs = {"cross": float(cross)}

        with torch.no_grad(), ctx.autocast():
            z_id = self.frozen["id"](id_img)
            lnd_target = self.landmarks_px(attr_img) if m.lambda_landmarks else None
        with ctx.autocast():
            out, w = self.generate(z_id, self.nets["attr_enc"](attr_img))
            loss = m.lambda_id * self.identity_loss(out, z_id)
            logs["loss/id"] = loss.item()
            if lnd_target is not None:
                lnd = m.lambda_landmarks * (self.landmarks_px(out) - lnd_target).pow(2).mean()
                loss = loss + lnd
                logs["loss/landmarks"] = lnd.item()
            if not cross and m.lambda_pixel:
                pix = m.lambda_pixel * pixel_loss(out, attr_img, self.pixel_mask, m.pixel_mssim)
                loss = loss + pix
                logs["loss/pixel"] = pix.item()
            if not cross and m.lambda_w:  # not in the paper: the known w of a same-image step as a target
                lw = m.lambda_w * (w.float() - batch["id"]["w"]).pow(2).mean()
                loss = loss + lw
                logs["loss/w"] = lw.item()
            adv = m.lambda_adv * gan_loss(self.nets["w_disc"](w), True) if use_adv else None

        # 1) and 2): the mapper's two optimizers, both on gradients at the current weights
        params = [p for g in self.optims["main"].param_groups for p in g["params"]]
        grads = {"main": torch.autograd.grad(ctx.scale(loss, "main"), params, retain_graph=use_adv, allow_unused=True)}
        if use_adv:
            grads["adv"] = torch.autograd.grad(ctx.scale(adv, "adv"), params, allow_unused=True)
            logs["loss/g_adv"] = adv.item()
        for name, gs in grads.items():
            for p, gr in zip(params, gs):
                p.grad = gr
            ctx.step(self.optims[name], name, m.clip_norm)
        for p in params:
            p.grad = None

        # 3) the W discriminator: generator w (this step's, detached) vs real w, R1 on real
        if use_adv:
            opt = self.optims["w_disc"]
            opt.zero_grad(set_to_none=True)
            real = real_w.detach().requires_grad_(m.r1 > 0)
            with ctx.autocast():
                d_real = self.nets["w_disc"](real)
                d_loss = m.lambda_adv * (gan_loss(d_real, True) + gan_loss(self.nets["w_disc"](w.detach()), False))
            total = d_loss
            if m.r1 > 0:
                r1 = 0.5 * m.r1 * r1_penalty(d_real, real)
                total = total + r1
                logs["loss/r1"] = r1.item()
            ctx.backward(total, "w_disc")
            ctx.step(opt, "w_disc", m.clip_norm)
            logs["loss/w_disc"] = d_loss.item()
        logs["loss/main"] = loss.item()
        return logs

    # --- inspection ------------------------------------------------------------------------------
    def sample_grids(self, fixed):
        ids, attrs = self.fit(fixed["id"]), self.fit(fixed["attr"])
        n = min(len(ids), len(attrs))
        ids, attrs = ids[:n], attrs[:n]
        with self.inference():
            z_id, z_attr = self.identity_code(ids), self.attribute_code(attrs)
            swap = [[None] + list(attrs)]
            for i in range(n):
                out, _ = self.generate(z_id[i:i + 1].expand(n, -1), z_attr)
                swap.append([ids[i]] + list(out.float().clamp(-1, 1)))
            recon, _ = self.generate(z_id, self.attribute_code(ids))
        return {"swap": swap, "recon": [list(ids), list(recon.float().clamp(-1, 1))]}

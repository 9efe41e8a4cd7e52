"""Method 4: G2G disentanglement by cross-training (Koenig & Nguyen 2020; spec Part A, the "CycleFUNIT" HEAD).

A content encoder E_c, a class (identity) encoder E_id and an AdaIN decoder G. For a pair (x1, x2) of
different identities (``data/identity_pairs.py``):
    disassembly  c_k = E_c(x_k), i_k = E_id(x_k); mixes m1 = G(c1, i2), m2 = G(c2, i1); short x^_k = G(c_k, i_k)
    reassembly   r1 = G(E_c(m1), E_id(m2)), r2 = G(E_c(m2), E_id(m1))
Generator loss: alpha_l long + alpha_s short reconstruction (perceptual), gamma_c content cycle, gamma_id
class cycle, delta adversarial on the mixes. Then a PatchGAN D step (zeta) on reals vs this step's mixes.
Fixes of the original's bugs are listed in ``configs/methods/g2g.yaml`` ("FIX"), other departures ("DIFF").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from losses import gan_loss
from models.base import Method
from models.nets.face_small import check_world
from models.nets.g2g_nets import (AdaINDecoder, ClassEncoder, ContentEncoder, PatchDiscriminator, VGG16Relu22,
                                  VGGFace2Input, load_resnet50_vggface2)

CLASS_ENCODERS = ("resnet50_vggface2", "small", "face_nets")


def build_frozen_class_encoder(m, device):
    """The frozen E_id of ``model.class_encoder`` (resnet50_vggface2 | face_nets), in eval mode."""
    if m.class_encoder == "resnet50_vggface2":
        net = VGGFace2Input(load_resnet50_vggface2(m.class_weights, device), m.class_input_size)
        return net.to(device).eval().requires_grad_(False)
    from models.nets.face_small import build_identity_encoder

    return build_identity_encoder("small", m.class_weights, device)


# the original's --gan_mode names -> losses.gan_loss modes (vanilla = BCE, the non-saturating form)
GAN_MODE = {"lsgan": "lsgan", "vanilla": "ns"}


class G2G(Method):
    tasks = ("identity_swap",)
    weight_keys = {"class": "model.class_weights", "vgg16": "model.vgg_weights"}

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        m = cfg.model
        if m.class_encoder not in CLASS_ENCODERS:
            raise ValueError(f"model.class_encoder must be one of {CLASS_ENCODERS}, got {m.class_encoder!r}")
        if m.gan_mode not in ("lsgan", "vanilla"):
            raise ValueError(f"model.gan_mode must be lsgan|vanilla, got {m.gan_mode!r}")
        if m.perceptual not in ("vgg16", "l1"):
            raise ValueError(f"model.perceptual must be vgg16|l1, got {m.perceptual!r}")
        self.frozen = {}  # not in nets: never trained, never saved in checkpoints, always in eval mode
        if m.class_encoder == "small":
            self.nets["class_enc"] = ClassEncoder(m.nf, m.down_class, m.latent_dim)
            class_dim = m.latent_dim
        else:
            enc = build_frozen_class_encoder(m, device)
            check_world(enc, cfg.data, "class encoder", m.class_weights)
            with torch.no_grad():
                class_dim = enc(torch.zeros(1, 3, cfg.data.size, cfg.data.size, device=device)).shape[1]
            if m.train_class_encoder:  # the original's behaviour: in the G optimizer, BatchNorm in train mode
                self.nets["class_enc"] = enc.train().requires_grad_(True)
            else:
                self.frozen["class_enc"] = enc
        if m.perceptual == "vgg16":
            self.frozen["vgg"] = VGG16Relu22(m.vgg_weights).to(device)
        self.nets["content_enc"] = ContentEncoder(m.nf, m.down_content, m.n_res_blks, m.content_norm)
        self.nets["decoder"] = AdaINDecoder(self.nets["content_enc"].out_channels, class_dim, m.down_content,
                                            m.n_res_blks, m.nf_mlp, m.n_mlp_blks)
        self.nets["disc"] = PatchDiscriminator(m.nfd, m.n_layers_D, m.init_gain)
        self.ema_nets = tuple(k for k in ("content_enc", "class_enc", "decoder") if k in self.nets)
        self.to(device)
        gen = [p for k in self.ema_nets for p in self.nets[k].parameters()]
        self.optims["gen"] = torch.optim.Adam(gen, lr=m.lr_gen, betas=tuple(m.betas))
        self.optims["dis"] = torch.optim.Adam(self.nets["disc"].parameters(), lr=m.lr_dis, betas=tuple(m.betas))

    @classmethod
    def stub_weights(cls, cfg, stub) -> None:
        from models.nets.g2g_nets import ResNet50VGGFace2
        from models.stub_weights import face_nets_file, state_file, vgg16_file

        m = cfg.model
        if m.class_encoder == "resnet50_vggface2":
            stub.need("model.class_weights", "resnet50_vggface2", lambda p: state_file(ResNet50VGGFace2(), p))
        elif m.class_encoder == "face_nets":
            stub.need("model.class_weights", "face_nets", face_nets_file)
        if m.perceptual == "vgg16":
            stub.need("model.vgg_weights", "vgg16", vgg16_file)

    @classmethod
    def tiny(cls, tmp):
        return "configs/g2g_synth.yaml", [
            "data.train_length=24", "data.test_length=8", "data.n_identities=6", "data.batch_size=2",
            "model.class_encoder=small", "model.nf=8", "model.nfd=8", "model.nf_mlp=16", "model.latent_dim=8",
            "model.n_res_blks=1", "eval.identity_judge=null", "eval.analysis_judge=null", "eval.max_images=6",
            "eval.num_display=3"]

    @staticmethod
    def datasets(cfg, split):
        from data.identity_pairs import IdentityPairs, labelled_faces

        d = cfg.data
        return {"pairs": IdentityPairs(labelled_faces(d, split), seed=d.seed, partners=d.pair_partners)}

    # --- inference -------------------------------------------------------------------------------
    def class_code(self, x):
        if "class_enc" in self.frozen:
            return self.frozen["class_enc"](x)
        return self.nets["class_enc"](x)

    def content_code(self, x):
        return self.nets["content_enc"](x)

    def generate(self, content, code):
        return self.nets["decoder"](content, code)

    def swap(self, identity_source, attribute_source):
        """``attribute_source``'s content (pose, expression, background, ...) with ``identity_source``'s class
        code (identity): G(E_c(attribute_source), E_id(identity_source))."""
        return self.generate(self.content_code(attribute_source), self.class_code(identity_source))

    # --- training --------------------------------------------------------------------------------
    def perceptual(self, x, y):
        if "vgg" in self.frozen:
            return F.l1_loss(self.frozen["vgg"](x), self.frozen["vgg"](y))
        return F.l1_loss(x, y)

    def forward_pass(self, x1, x2) -> dict:
        """Disassembly (codes, mixes, short reconstructions) and reassembly (long reconstructions)."""
        c1, c2, i1, i2 = self.content_code(x1), self.content_code(x2), self.class_code(x1), self.class_code(x2)
        m1, m2 = self.generate(c1, i2), self.generate(c2, i1)
        cm1, cm2, im1, im2 = self.content_code(m1), self.content_code(m2), self.class_code(m1), self.class_code(m2)
        return {"c1": c1, "c2": c2, "i1": i1, "i2": i2, "m1": m1, "m2": m2, "cm1": cm1, "cm2": cm2,
                "im1": im1, "im2": im2, "r1": self.generate(cm1, im2), "r2": self.generate(cm2, im1)}

    def generator_losses(self, f, x1, x2) -> dict[str, torch.Tensor]:
        """Weighted generator terms (only those with a non-zero weight)."""
        m, out = self.cfg.model, {}
        if m.alpha_l:
            out["long"] = m.alpha_l * (self.perceptual(x1, f["r1"]) + self.perceptual(x2, f["r2"]))
        if m.alpha_s:
            xh1, xh2 = self.generate(f["c1"], f["i1"]), self.generate(f["c2"], f["i2"])
            out["short"] = m.alpha_s * (self.perceptual(x1, xh1) + self.perceptual(x2, xh2))
        if m.gamma_c:  # FIX: (c1, c_m1), (c2, c_m2) -- m1 = G(c1, i2) carries c1
            out["cyc_content"] = m.gamma_c * (F.mse_loss(f["cm1"], f["c1"]) + F.mse_loss(f["cm2"], f["c2"]))
        if m.gamma_id:  # m2 = G(c2, i1) carries i1
            out["cyc_id"] = m.gamma_id * (F.mse_loss(f["im2"], f["i1"]) + F.mse_loss(f["im1"], f["i2"]))
        if m.delta:
            mixes = torch.cat([f["m1"], f["m2"]])
            out["g_adv"] = m.delta * gan_loss(self.nets["disc"](mixes), True, GAN_MODE[m.gan_mode])
        return out

    def train_step(self, batch, step, ctx):
        m = self.cfg.model
        x1, x2 = batch["pairs"]["image"], batch["pairs"]["image2"]
        with ctx.autocast():
            f = self.forward_pass(x1, x2)
            terms = self.generator_losses(f, x1, x2)
        loss = sum(terms.values())
        logs = {f"loss/{k}": v.item() for k, v in terms.items()}
        logs["loss/gen"] = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
        opt = self.optims["gen"]
        opt.zero_grad(set_to_none=True)
        if torch.is_tensor(loss) and loss.requires_grad:
            ctx.backward(loss, "gen")
            ctx.step(opt, "gen")
        if m.zeta:  # D on reals vs this step's mixes (the original reuses the G step's mixes)
            opt = self.optims["dis"]
            opt.zero_grad(set_to_none=True)
            mixes = torch.cat([f["m1"], f["m2"]]).detach()
            with ctx.autocast():
                d_real = gan_loss(self.nets["disc"](torch.cat([x1, x2])), True, GAN_MODE[m.gan_mode])
                d_fake = gan_loss(self.nets["disc"](mixes), False, GAN_MODE[m.gan_mode])
                d_loss = m.zeta * 0.5 * (d_real + d_fake)
            ctx.backward(d_loss, "dis")
            ctx.step(opt, "dis")
            logs["loss/dis"] = d_loss.item()
        return logs

    # --- inspection ------------------------------------------------------------------------------
    def sample_grids(self, fixed):
        x = fixed["pairs"]
        n = x.shape[0]
        with self.inference():
            c, i = self.content_code(x), self.class_code(x)
            swap = [[None] + list(x)]  # top row: identity sources; first column: content sources
            for k in range(n):
                row = self.generate(c[k:k + 1].expand(n, *c.shape[1:]), i)
                swap.append([x[k]] + list(row.float().clamp(-1, 1)))
            recon = self.generate(c, i).float().clamp(-1, 1)
        return {"swap": swap, "recon": [list(x), list(recon)]}

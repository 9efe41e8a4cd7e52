"""Method 1: content-disentanglement auto-encoder (Press et al., ICLR 2019).

E1 (common encoder) sees both domains, E2 (separate encoder) only domain a (images with the
attribute); domain b's separate code is a zero tensor. One decoder reconstructs [common, separate].
A latent discriminator on the common code removes the attribute from it (domain confusion).
Transfer of a's attribute onto b: Dec([E1(b), E2(a)]); removal from a: Dec([E1(a), 0]).
"""
from __future__ import annotations

import torch

from data import build_domains
from losses import bce_logits, latent_confusion_loss, recon_loss
from models.base import Method
from models.lr_schedule import check_schedule, set_lr
from models.nets.conv_autoencoder import ConvDecoder, ConvEncoder, LatentDiscriminator, disc_logits, scaled


def adam(params, lr, betas):
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


def schedule_lrs(method, step: int) -> None:
    """Set the ae and disc optimizers' rates for ``step`` by ``model.lr_schedule`` (constant: left as built)."""
    m = method.cfg.model
    if m.lr_schedule != "constant":
        for name, base in (("ae", m.lr), ("disc", m.disclr)):
            set_lr(method.optims[name], base, m.lr_schedule, step, method.cfg.train.steps, m.lr_warmup)


def latent_disc_step(e1, disc, opt, a, b, ctx) -> float:
    """One latent-discriminator update on common codes of the (already updated) E1: a -> 1, b -> 0.

    No gradient clipping, as in both originals: their ``clip_grad_norm_(disc_params, 5)`` receives the
    generator ``disc.parameters()`` already consumed by the optimizer's constructor, so it clips nothing."""
    opt.zero_grad(set_to_none=True)
    with ctx.autocast():
        with torch.no_grad():
            c_a, c_b = e1(a), e1(b)
        logit_a, logit_b = disc_logits(disc, c_a, c_b)
        loss = bce_logits(logit_a, 1.0) + bce_logits(logit_b, 0.0)
    ctx.backward(loss, "disc")
    ctx.step(opt, "disc")
    return loss.item()


class ContentAE(Method):
    ema_nets = ("e1", "e2", "dec")
    tasks = ("content_transfer",)

    @classmethod
    def tiny(cls, tmp):
        return "configs/synth_glasses.yaml", [
            "data.size=32", "data.train_length=48", "data.test_length=8", "data.batch_size=4", "model.width=0.25",
            "model.sep=8", "eval.max_images=8", "eval.num_display=3"]

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        m, size = cfg.model, cfg.data.size
        check_schedule(m.lr_schedule)
        code_ch = round(512 * m.width)
        if not 0 < m.sep < code_ch:
            raise ValueError(f"model.sep must be in (0, {code_ch}) for width {m.width}, got {m.sep}")
        self.nets["e1"] = ConvEncoder(scaled([32, 64, 128, 256], m.width) + [code_ch - m.sep] * 2, size, m.norm)
        self.nets["e2"] = ConvEncoder(scaled([32, 64, 128, 128, 128], m.width) + [m.sep], size, m.norm)
        self.nets["dec"] = ConvDecoder(scaled([512, 256, 128, 64, 32], m.width), size, in_ch=code_ch, norm=m.norm)
        self.nets["disc"] = LatentDiscriminator(self.nets["e1"].dim, m.disc_hidden, m.disc_standardize)
        self.to(device)
        ae_params = [p for k in ("e1", "e2", "dec") for p in self.nets[k].parameters()]
        self.optims["ae"] = adam(ae_params, m.lr, m.betas)
        self.optims["disc"] = adam(self.nets["disc"].parameters(), m.disclr, m.betas)

    @staticmethod
    def datasets(cfg, split):
        return build_domains(cfg.data, split)

    # --- inference (the content_transfer task, models/tasks.py) -------------------------------------
    def encode(self, x):
        return self.nets["e1"](x), self.nets["e2"](x)

    def decode(self, common, separate):
        return self.nets["dec"](torch.cat([common, separate], dim=1))

    def zero_separate(self, common):
        return common.new_zeros(common.shape[0], self.nets["e2"].dim)

    def transfer(self, target, source):
        """``source``'s separate content (e.g. its glasses) onto ``target``: Dec([E1(target), E2(source)])."""
        return self.decode(self.nets["e1"](target), self.nets["e2"](source))

    def remove(self, x):
        """Dec([E1(x), 0]): x without its separate content."""
        c = self.nets["e1"](x)
        return self.decode(c, self.zero_separate(c))

    def reconstruct(self, x):
        """Dec([E1(x), E2(x)])."""
        return self.decode(*self.encode(x))

    def codes(self, x):
        c, s = self.encode(x)
        return {"common": c.flatten(1), "separate": s.flatten(1)}

    # --- training --------------------------------------------------------------------------------
    def train_step(self, batch, step, ctx):
        m, n = self.cfg.model, self.nets
        schedule_lrs(self, step)
        a, b = batch["a"]["image"], batch["b"]["image"]
        logs = {}

        # 1) auto-encoder step: E1, E2, Dec (+ domain confusion through the latent discriminator)
        opt = self.optims["ae"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            c_a, s_a = self.encode(a)
            c_b = n["e1"](b)
            rec_a = self.decode(c_a, s_a)
            rec_b = self.decode(c_b, self.zero_separate(c_b))
            loss_rec_a = recon_loss(m.recon, rec_a.float(), a)
            loss_rec_b = recon_loss(m.recon, rec_b.float(), b)
            loss = loss_rec_a + loss_rec_b
            if m.discweight > 0:
                loss_conf = latent_confusion_loss(*disc_logits(n["disc"], c_a, c_b), m.confusion_target)
                loss = loss + m.discweight * loss_conf
                logs["loss/confusion"] = loss_conf.item()
        ctx.backward(loss, "ae")
        ctx.step(opt, "ae", m.clip_norm)
        logs.update({"loss/rec_a": loss_rec_a.item(), "loss/rec_b": loss_rec_b.item(), "loss/ae": loss.item()})

        # 2) discriminator step on codes from the already-updated E1 (a -> 1, b -> 0)
        if m.discweight > 0:
            logs["loss/disc"] = latent_disc_step(n["e1"], n["disc"], self.optims["disc"], a, b, ctx)
        return logs

    # --- inspection ------------------------------------------------------------------------------
    def sample_grids(self, fixed):
        a, b = fixed["a"], fixed["b"]
        with self.inference():
            transfer = [[None] + list(b)]
            for i in range(a.shape[0]):
                transfer.append([a[i]] + list(self.transfer(b, a[i:i + 1].expand_as(b)).float()))
            removal = [list(a), list(self.remove(a).float()), list(b), list(self.remove(b).float())]
        return {"transfer": transfer, "removal_and_recon": removal}

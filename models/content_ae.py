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
from models.nets.conv_autoencoder import ConvDecoder, ConvEncoder, LatentDiscriminator, scaled


def adam(params, lr, betas):
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


def latent_disc_step(e1, disc, opt, a, b, ctx) -> float:
    """One latent-discriminator update on common codes of the (already updated) E1: a -> 1, b -> 0.

    No gradient clipping, as in both originals: their ``clip_grad_norm_(disc_params, 5)`` receives the
    generator ``disc.parameters()`` already consumed by the optimizer's constructor, so it clips nothing."""
    opt.zero_grad(set_to_none=True)
    with ctx.autocast():
        with torch.no_grad():
            c_a, c_b = e1(a), e1(b)
        loss = bce_logits(disc(c_a), 1.0) + bce_logits(disc(c_b), 0.0)
    ctx.backward(loss, "disc")
    ctx.step(opt, "disc")
    return loss.item()


class ContentAE(Method):
    ema_nets = ("e1", "e2", "dec")

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        m, size = cfg.model, cfg.data.size
        code_ch = round(512 * m.width)
        if not 0 < m.sep < code_ch:
            raise ValueError(f"model.sep must be in (0, {code_ch}) for width {m.width}, got {m.sep}")
        self.nets["e1"] = ConvEncoder(scaled([32, 64, 128, 256], m.width) + [code_ch - m.sep] * 2, size, m.norm)
        self.nets["e2"] = ConvEncoder(scaled([32, 64, 128, 128, 128], m.width) + [m.sep], size, m.norm)
        self.nets["dec"] = ConvDecoder(scaled([512, 256, 128, 64, 32], m.width), size, in_ch=code_ch, norm=m.norm)
        self.nets["disc"] = LatentDiscriminator(self.nets["e1"].dim, m.disc_hidden)
        self.to(device)
        ae_params = [p for k in ("e1", "e2", "dec") for p in self.nets[k].parameters()]
        self.optims["ae"] = adam(ae_params, m.lr, m.betas)
        self.optims["disc"] = adam(self.nets["disc"].parameters(), m.disclr, m.betas)

    @staticmethod
    def datasets(cfg, split):
        return build_domains(cfg.data, split)

    # --- inference -------------------------------------------------------------------------------
    def encode(self, x, nets=None):
        n = nets or self.nets
        return n["e1"](x), n["e2"](x)

    def decode(self, common, separate, nets=None):
        n = nets or self.nets
        return n["dec"](torch.cat([common, separate], dim=1))

    def zero_separate(self, common):
        return common.new_zeros(common.shape[0], self.nets["e2"].dim)

    def transfer(self, src, tgt, nets=None):
        """``src``'s separate content (e.g. its glasses) onto ``tgt``: Dec([E1(tgt), E2(src)])."""
        n = nets or self.nets
        return self.decode(n["e1"](tgt), n["e2"](src), n)

    def remove(self, x, nets=None):
        """Dec([E1(x), 0]): x without its separate content."""
        n = nets or self.nets
        c = n["e1"](x)
        return self.decode(c, self.zero_separate(c), n)

    # --- training --------------------------------------------------------------------------------
    def train_step(self, batch, step, ctx):
        m, n = self.cfg.model, self.nets
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
                loss_conf = latent_confusion_loss(n["disc"](c_a), n["disc"](c_b), m.confusion_target)
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
    @torch.no_grad()
    def sample_grids(self, fixed):
        nets = self.eval_nets()
        a, b = fixed["a"], fixed["b"]
        transfer = [[None] + list(b)]
        for i in range(a.shape[0]):
            src = a[i:i + 1].expand_as(b)
            transfer.append([a[i]] + list(self.transfer(src, b, nets).float()))
        removal = [list(a), list(self.remove(a, nets).float()),
                   list(b), list(self.decode(nets["e1"](b), self.zero_separate(nets["e1"](b)), nets).float())]
        for net in self.nets.values():
            net.train()
        return {"transfer": transfer, "removal_and_recon": removal}

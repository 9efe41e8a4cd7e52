"""Method 2: mask-based content transfer (Mokady et al., ICLR 2020).

Domain a has the content (e.g. glasses), b lacks it. E1 (common) and E2 (separate) encoders as in
method 1 but with BatchNorm; two decoders: D_A renders [common, 0] (the face without the content),
D_B renders [common, separate] as a sigmoid mask m and a tanh image z blended over a background:
z * m + bg * (1 - m). Transfer of a's content onto b: D_B([E1(b), E2(a)], bg=b). The self-mask
D_B([E1(x), E2(x)]) doubles as a weakly-supervised segmentation of the content.
"""
from __future__ import annotations

import torch

from data import build_domains
from losses import latent_confusion_loss, recon_loss
from models.base import Method
from models.content_ae import adam, latent_disc_step, schedule_lrs
from models.lr_schedule import check_schedule
from models.nets.conv_autoencoder import (ConvDecoder, ConvEncoder, LatentDiscriminator, MaskBlendDecoder,
                                          disc_logits, scaled)

# generator loss terms -> their weight key in ``model:`` (spec §2.3; the original's flag names)
LOSS_WEIGHTS = {
    "recon1_a": "gama",          # L1(D_B([c_a, s_a], bg=D_A([c_a, 0])), a)
    "recon1_b": "delta",         # L1(D_A([c_b, 0]), b)
    "cycle_common": "beta1",     # MSE(E1(x_ba), c_b)
    "cycle_separate": "beta2",   # MSE(E2(x_ba), s_a)
    "recon2_a": "alpha1",        # L1(D_B([c_a, s_a], bg=a), a)
    "recon2_b": "alpha2",        # L1(D_B([c_b, 0], bg=b), b)
}


class MaskContentTransfer(Method):
    ema_nets = ("e1", "e2", "d_a", "d_b")
    tasks = ("content_transfer",)
    evaluations = ("content_transfer", "mask_segmentation")

    @classmethod
    def tiny(cls, tmp):
        return "configs/mask_synth_glasses.yaml", [
            "data.size=32", "data.train_length=16", "data.test_length=8", "data.batch_size=4", "model.width=0.25",
            "model.sep=8", "eval.max_images=8", "eval.num_display=3"]

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        m, size = cfg.model, cfg.data.size
        check_schedule(m.lr_schedule)
        code_ch = round(512 * m.width)
        if not 0 < m.sep < code_ch:
            raise ValueError(f"model.sep must be in (0, {code_ch}) for width {m.width}, got {m.sep}")
        weights = {k: m[k] for k in (*LOSS_WEIGHTS.values(), "discweight")}
        if any(w < 0 for w in weights.values()) or not any(m[k] > 0 for k in LOSS_WEIGHTS.values()):
            raise ValueError(f"loss weights must be >= 0 with at least one generator term > 0, got {weights}")
        if m.removal_threshold is not None and not 0 <= m.removal_threshold < 1:
            raise ValueError(f"model.removal_threshold must be in [0, 1) or null, got {m.removal_threshold}")
        dec = scaled([512, 256, 128, 64, 32], m.width)
        self.nets["e1"] = ConvEncoder(scaled([32, 64, 128, 256], m.width) + [code_ch - m.sep] * 2, size, m.norm)
        self.nets["e2"] = ConvEncoder(scaled([32, 64, 128, 128, 128], m.width) + [m.sep], size, m.norm)
        self.nets["d_a"] = ConvDecoder(dec, size, in_ch=code_ch, norm=m.norm, act="lrelu")
        self.nets["d_b"] = MaskBlendDecoder(dec, size, in_ch=code_ch, norm=m.norm, act="lrelu")
        self.nets["disc"] = LatentDiscriminator(self.nets["e1"].dim, m.disc_hidden, m.disc_standardize)
        self.to(device)
        gen_params = [p for k in ("e1", "e2", "d_a", "d_b") for p in self.nets[k].parameters()]
        self.optims["ae"] = adam(gen_params, m.lr, m.betas)
        self.optims["disc"] = adam(self.nets["disc"].parameters(), m.disclr, m.betas)

    @staticmethod
    def datasets(cfg, split):
        return build_domains(cfg.data, split)

    # --- inference -------------------------------------------------------------------------------
    def zero_separate(self, common):
        return common.new_zeros(common.shape[0], self.nets["e2"].dim)

    def encode(self, x):
        return self.nets["e1"](x), self.nets["e2"](x)

    def shaved(self, common):
        """D_A([common, 0]): the image without separate content."""
        return self.nets["d_a"](torch.cat([common, self.zero_separate(common)], 1))

    def decode(self, common, separate):
        """Image from codes alone: D_B([common, separate], bg=D_A([common, 0])) (the Recon1 path)."""
        return self.nets["d_b"](torch.cat([common, separate], 1), self.shaved(common))[0]

    def blend(self, target, source):
        """D_B([E1(target), E2(source)], bg=target) -> (image, mask (B, 1, H, W))."""
        return self.nets["d_b"](torch.cat([self.nets["e1"](target), self.nets["e2"](source)], 1), target)

    # --- the content_transfer task (models/tasks.py) -----------------------------------------------
    def transfer(self, target, source):
        """``source``'s separate content (e.g. its glasses) painted onto ``target`` through the mask."""
        return self.blend(target, source)[0]

    def masks(self, target, source):
        """Soft mask (B, 1, H, W) in [0, 1] of that transfer; ``masks(x, x)`` segments x's content."""
        return self.blend(target, source)[1]

    def remove(self, x):
        """D_A([E1(x), 0]) inside x's self-mask, x outside; the mask is binarised at
        ``model.removal_threshold`` (null: soft). The original removal.py fed D_A [E1(x), E2(x)], a code
        D_A never saw in training; we use [E1(x), 0] as in training."""
        c, s = self.encode(x)
        _, mask = self.nets["d_b"](torch.cat([c, s], 1), x)
        t = self.cfg.model.removal_threshold
        if t is not None:
            mask = (mask >= t).to(x.dtype)
        return self.shaved(c) * mask + x * (1 - mask)

    def reconstruct(self, x):
        """D_B([E1(x), E2(x)], bg=D_A([E1(x), 0])): x from its codes alone."""
        return self.decode(*self.encode(x))

    def codes(self, x):
        c, s = self.encode(x)
        return {"common": c.flatten(1), "separate": s.flatten(1)}

    # --- training --------------------------------------------------------------------------------
    def train_step(self, batch, step, ctx):
        m, n = self.cfg.model, self.nets
        schedule_lrs(self, step)
        a, b = batch["a"]["image"], batch["b"]["image"]

        # 1) generator step: E1, E2, D_A, D_B. a and b pass separately (per-domain BatchNorm statistics);
        #    calls in the original's order, every term computed (and logged) even at weight 0.
        opt = self.optims["ae"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            c_a, s_a = n["e1"](a), n["e2"](a)
            c_b = n["e1"](b)
            code_a, code_b = torch.cat([c_a, s_a], 1), torch.cat([c_b, self.zero_separate(c_b)], 1)
            rec1_a, _ = n["d_b"](code_a, self.shaved(c_a))
            rec1_b = n["d_a"](code_b)
            x_ba, _ = n["d_b"](torch.cat([c_b, s_a], 1), b)
            rec2_b, mask_b = n["d_b"](code_b, b)
            rec2_a, mask_a = n["d_b"](code_a, a)
            terms = {
                "recon1_a": recon_loss("l1", rec1_a.float(), a),
                "recon1_b": recon_loss("l1", rec1_b.float(), b),
                "cycle_common": recon_loss("mse", n["e1"](x_ba).float(), c_b.float()),  # targets not detached
                "cycle_separate": recon_loss("mse", n["e2"](x_ba).float(), s_a.float()),
                "recon2_a": recon_loss("l1", rec2_a.float(), a),
                "recon2_b": recon_loss("l1", rec2_b.float(), b),
            }
            weights = {k: m[w] for k, w in LOSS_WEIGHTS.items()}
            if m.discweight > 0:
                terms["confusion"] = latent_confusion_loss(*disc_logits(n["disc"], c_a, c_b), m.confusion_target)
                weights["confusion"] = m.discweight
            loss = sum(weights[k] * t for k, t in terms.items() if weights[k] > 0)
        ctx.backward(loss, "ae")
        ctx.step(opt, "ae", m.clip_norm)
        logs = {f"loss/{k}": t.item() for k, t in terms.items()}
        logs.update({"loss/gen": loss.item(), "mask/mean_a": mask_a.float().mean().item(),
                     "mask/mean_b": mask_b.float().mean().item()})

        # 2) discriminator step on codes from the already-updated E1 (a -> 1, b -> 0)
        if m.discweight > 0:
            logs["loss/disc"] = latent_disc_step(n["e1"], n["disc"], self.optims["disc"], a, b, ctx)
        return logs

    # --- inspection ------------------------------------------------------------------------------
    def sample_grids(self, fixed):
        a, b = fixed["a"], fixed["b"]
        transfer, masks, rows = [[None] + list(b)], [[None] + list(b)], []
        with self.inference():
            for i in range(a.shape[0]):
                out, mask = self.blend(b, a[i:i + 1].expand_as(b))
                transfer.append([a[i]] + list(out.float()))
                masks.append([a[i]] + list(mask.float() * 2 - 1))
            for x in (a, b):
                mask = self.masks(x, x).float()
                rows += [list(x), list(mask * 2 - 1), list(self.remove(x).float()),
                         list(self.shaved(self.nets["e1"](x)).float())]
        return {"transfer": transfer, "transfer_masks": masks, "self_mask_removal_shaved": rows}

"""StyleGAN2 (Karras et al., CVPR 2020) as a method: the frozen generator of method 3 (Nitzan et al. 2020).

Update order per step (as in the paper's code): discriminator step (non-saturating logistic loss), lazy R1
on reals every ``model.d_reg_every`` steps, generator step (non-saturating), lazy path-length regularisation
every ``model.g_reg_every`` steps. Lazy regularisation multiplies each penalty by its interval k and runs Adam
with lr * k/(k+1) and betas ** (k/(k+1)). R1 and path length are computed in fp32 (outside autocast).
Style mixing with probability ``model.mixing``. EMA of the generator through ``train.ema_kimg`` (the loop).
The randomness of step s (z, mixing, per-layer noise, path-length directions) is drawn from a forked RNG seeded
with (seed, s, rank): a pure function of the step like the data order, so resume is exact however much of the
global RNG the loop consumes (e.g. DataLoader iterators draw a seed when they are created).
Export to the public checkpoint layout with ``models.nets.stylegan2.save_public_format``.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch

from core import dist
from losses import gan_loss, r1_penalty
from models.base import Method
from models.nets.stylegan2 import Discriminator, Generator

GRID_SEED = 20200  # fixed z of the sample grids (a private generator; the training RNG is untouched)


def lazy_adam(params, lr: float, betas, reg_every: int) -> torch.optim.Adam:
    """Adam with the lazy-regularisation correction c = k/(k+1) (k = 0: no regularisation, c = 1)."""
    c = reg_every / (reg_every + 1) if reg_every else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c))


def requires_grad(net, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


class StyleGAN2(Method):
    evaluations = ("generation",)

    @classmethod
    def tiny(cls, tmp):
        from models.stub_weights import face_nets_file

        judge = Path(tmp) / "face_judge-tiny.pt"
        if not judge.is_file():
            Path(tmp).mkdir(parents=True, exist_ok=True)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                face_nets_file(judge, ["model.id_width=0.25", "model.analysis_width=0.25", "model.id_dim=16"])
        return "configs/stylegan2_synth.yaml", [
            "data.train_length=16", "data.test_length=4", "data.batch_size=4", "model.style_dim=16",
            "model.n_mlp=2", "model.width=0.03125", "model.d_reg_every=2", "model.pl_weight=2", "model.g_reg_every=2",
            "train.ema_kimg=0.01", f"eval.feature_weights={judge}", "eval.max_images=8", "eval.kid_subset_size=4"]
    ema_nets = ("g",)

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        m, size = cfg.model, cfg.data.size
        self.nets["g"] = Generator(size, m.style_dim, m.n_mlp, m.channel_multiplier, m.width, m.lr_mlp)
        self.nets["d"] = Discriminator(size, m.channel_multiplier, m.width if m.d_width is None else m.d_width)
        self.to(device)
        self.optims["g"] = lazy_adam(self.nets["g"].parameters(), m.lr, m.betas, m.g_reg_every if m.pl_weight else 0)
        self.optims["d"] = lazy_adam(self.nets["d"].parameters(), m.lr, m.betas, m.d_reg_every if m.r1 else 0)
        self.pl_mean = torch.zeros((), device=device)  # running mean path length (checkpointed)

    @staticmethod
    def datasets(cfg, split):
        from data.synthetic import SyntheticFaces, world_args

        d = cfg.data
        if d.name != "synthetic":
            raise ValueError(f"stylegan2 trains on data.name=synthetic only (got {d.name!r}); for a real face GAN "
                             "load a public checkpoint with models.nets.stylegan2.load_generator")
        length = d.train_length if split == "train" else d.test_length
        return {"real": SyntheticFaces(size=d.size, length=length, seed=d.seed, split=split,
                                       n_identities=d.n_identities, cache_dir=d.cache_dir, **world_args(d))}

    # --- training --------------------------------------------------------------------------------
    def _fake(self, n: int):
        g, m = self.nets["g"], self.cfg.model
        z = torch.randn(n, g.style_dim, device=self.device)
        mix_z = torch.randn(n, g.style_dim, device=self.device) if m.mixing > 0 else None
        return g(z, mix_z=mix_z, mix_prob=m.mixing)

    def _d_step(self, real, ctx) -> float:
        d, opt = self.nets["d"], self.optims["d"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            with torch.no_grad():
                fake, _ = self._fake(real.shape[0])
            loss = gan_loss(d(fake), False) + gan_loss(d(real), True)
        ctx.backward(loss, "d")
        ctx.step(opt, "d")
        return loss.item()

    def _r1_step(self, real, ctx) -> float:
        """gamma/2 * E|grad_x D(x)|^2 on reals, times d_reg_every (lazy)."""
        m, d, opt = self.cfg.model, self.nets["d"], self.optims["d"]
        opt.zero_grad(set_to_none=True)
        real = real.detach().requires_grad_(True)
        r1 = r1_penalty(d(real), real)
        ctx.backward(r1 * (m.r1 / 2 * m.d_reg_every), "d")
        ctx.step(opt, "d")
        return r1.item()

    def _g_step(self, n, ctx) -> float:
        opt = self.optims["g"]
        opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            fake, _ = self._fake(n)
            loss = gan_loss(self.nets["d"](fake), True)
        ctx.backward(loss, "g")
        ctx.step(opt, "g")
        return loss.item()

    def _pl_step(self, n, ctx) -> float:
        """Path-length penalty (|J_w^T y| - a)^2, y ~ N(0, I)/sqrt(HW), a = running mean (decay pl_decay)."""
        m, opt = self.cfg.model, self.optims["g"]
        opt.zero_grad(set_to_none=True)
        fake, ws = self._fake(max(1, n // m.pl_batch_shrink))
        y = torch.randn_like(fake) / math.sqrt(fake.shape[2] * fake.shape[3])
        (grad,) = torch.autograd.grad((fake * y).sum(), ws, create_graph=True)
        lengths = grad.pow(2).sum(2).mean(1).sqrt()
        self.pl_mean.lerp_(lengths.mean().detach(), m.pl_decay)
        penalty = (lengths - self.pl_mean).pow(2).mean()
        ctx.backward(penalty * (m.pl_weight * m.g_reg_every), "g")
        ctx.step(opt, "g")
        return penalty.item()

    @contextlib.contextmanager
    def step_rng(self, step: int):
        """Global RNG forked and seeded with (seed, step, rank) for the duration of one step."""
        seed = int(np.random.SeedSequence([self.cfg.seed, step, dist.rank()]).generate_state(1)[0])
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(seed)
            yield

    def train_step(self, batch, step, ctx):
        with self.step_rng(step):
            return self._train_step(batch, step, ctx)

    def _train_step(self, batch, step, ctx):
        m, g, d = self.cfg.model, self.nets["g"], self.nets["d"]
        real = batch["real"]["image"]
        logs = {}
        requires_grad(g, False)
        requires_grad(d, True)
        logs["loss/d"] = self._d_step(real, ctx)
        if m.r1 > 0 and step % m.d_reg_every == 0:
            logs["loss/r1"] = self._r1_step(real, ctx)
        requires_grad(g, True)
        requires_grad(d, False)
        logs["loss/g"] = self._g_step(real.shape[0], ctx)
        if m.pl_weight > 0 and step % m.g_reg_every == 0:
            logs["loss/pl"] = self._pl_step(real.shape[0], ctx)
            logs["pl_mean"] = self.pl_mean.item()
        requires_grad(d, True)
        return logs

    # --- inspection ------------------------------------------------------------------------------
    def grid_z(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(GRID_SEED + self.cfg.seed)
        return torch.randn(n, self.cfg.model.style_dim, generator=g).to(self.device)

    def sample_grids(self, fixed):
        """grid_size x grid_size samples of the (EMA) generator from fixed z, constant noise, then a row of
        real test images; ``truncated``: the same z at truncation 0.7."""
        n = self.cfg.train.grid_size
        out = {}
        with self.inference():
            g = self.nets["g"]
            w = g.mapping(self.grid_z(n * n))
            for name, psi in (("samples", 1.0), ("truncated", 0.7)):
                imgs = g.synthesis(g.truncate(w, psi, g.mean_w() if psi != 1 else None), noise_mode="const").float()
                out[name] = [list(imgs[r * n:(r + 1) * n]) for r in range(n)] + [list(fixed["real"][:n])]
        return out

    # --- state -----------------------------------------------------------------------------------
    def training_state(self) -> dict:
        return {**super().training_state(), "pl_mean": self.pl_mean.detach().cpu()}

    def load_training_state(self, state, weights_only=False):
        super().load_training_state(state, weights_only)
        if not weights_only and "pl_mean" in state:
            self.pl_mean.copy_(state["pl_mean"])

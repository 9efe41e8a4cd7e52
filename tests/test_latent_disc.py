"""Methods 1-2's latent discriminator: the optional standardising first layer (model.disc_standardize)."""
from pathlib import Path

import pytest
import torch

from core.config import load_config
from core.step import StepContext
from losses import bce_logits
from models import build_method
from models.nets.conv_autoencoder import LatentDiscriminator, disc_logits

ROOT = Path(__file__).resolve().parent.parent


def codes(scale_of_gap: float, n: int = 64, dim: int = 12, seed: int = 0):
    """Domain codes that differ only along feature 0, by a gap of ``scale_of_gap`` with matching spread."""
    g = torch.Generator().manual_seed(seed)
    c_a, c_b = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    c_a[:, 0] = scale_of_gap * (1 + 0.1 * torch.randn(n, generator=g))
    c_b[:, 0] = scale_of_gap * (-1 + 0.1 * torch.randn(n, generator=g))
    return c_a, c_b


def test_plain_disc_is_per_sample_and_has_no_standardiser():
    torch.manual_seed(0)
    disc = LatentDiscriminator(12, 16)
    c_a, c_b = codes(1.0)
    la, lb = disc_logits(disc, c_a, c_b)
    assert torch.equal(la, disc(c_a)) and torch.equal(lb, disc(c_b))
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in disc)


def accuracy_after_training(disc, gap: float, steps: int = 200) -> float:
    """Train ``disc`` on codes whose domains differ by ``gap`` along one feature; accuracy on fresh codes."""
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    for i in range(steps):
        la, lb = disc_logits(disc, *codes(gap, seed=i))
        opt.zero_grad()
        (bce_logits(la, 1.0) + bce_logits(lb, 0.0)).backward()
        opt.step()
    with torch.no_grad():
        la, lb = disc_logits(disc, *codes(gap, seed=1000))
    return torch.cat([la > 0, lb <= 0]).float().mean().item()


def test_standardised_disc_sees_a_tiny_gap_as_clearly_as_a_large_one():
    """The standardiser pools both domains: a domain gap 1e-3 small gives the logits a gap 1 gives (the
    scale is divided out). Trained briefly, it separates domains that differ by 1e-3 along one feature of
    unit-variance noise; a plain discriminator stays at chance."""
    torch.manual_seed(0)
    std = LatentDiscriminator(12, 16, standardize=True).train()
    for x, y in zip(disc_logits(std, *codes(1.0)), disc_logits(std, *codes(1e-3))):
        torch.testing.assert_close(x, y, atol=1e-3, rtol=1e-3)
    torch.manual_seed(0)
    assert accuracy_after_training(LatentDiscriminator(12, 16, standardize=True), 1e-3) > 0.95
    torch.manual_seed(0)
    assert accuracy_after_training(LatentDiscriminator(12, 16), 1e-3) < 0.7


@pytest.mark.parametrize("config", ["configs/synth_glasses.yaml", "configs/mask_synth_glasses.yaml"])
def test_train_step_updates_the_standardiser_from_both_domains(config):
    m = build_method(load_config(ROOT / config, ["data.size=32", "data.batch_size=4", "model.width=0.25",
                                                 "model.sep=8", "model.disc_standardize=true"]), torch.device("cpu"))
    bn = m.nets["disc"][0]
    assert isinstance(bn, torch.nn.BatchNorm1d) and not bn.affine
    g = torch.Generator().manual_seed(1)
    batch = {k: {"image": torch.rand(4, 3, 32, 32, generator=g) * 2 - 1} for k in "ab"}
    logs = m.train_step(batch, 0, StepContext(torch.device("cpu")))
    assert bn.num_batches_tracked.item() >= 2  # the confusion term and the disc step
    assert torch.isfinite(torch.tensor(logs["loss/disc"]))
    assert bn.running_var.ne(1).any()

"""Methods 1-2: the auto-encoder step clips its gradients at model.clip_norm; the latent discriminator's
step does not (the originals' disc clip received an exhausted parameter generator and clipped nothing)."""
from pathlib import Path

import pytest
import torch

from core.config import load_config
from losses import bce_logits
from models import build_method
from core.step import StepContext

ROOT = Path(__file__).resolve().parent.parent
SCALE = 300  # a sharp discriminator: gradients far above the clip norm
TINY = ["data.size=32", "data.batch_size=4", "model.width=0.25", "model.sep=8", "model.clip_norm=5.0",
        "model.discweight=1000"]


def grad_norm(net):
    return torch.cat([p.grad.flatten() for p in net.parameters()]).norm().item()


def sharp_method(config):
    """A tiny method whose discriminator is sharp: its loss gradients are far above the clip norm."""
    torch.manual_seed(0)
    m = build_method(load_config(ROOT / config, TINY), torch.device("cpu"))
    with torch.no_grad():
        for p in m.nets["disc"].parameters():
            p.mul_(SCALE)
    return m


@pytest.mark.parametrize("config", ["configs/synth_glasses.yaml", "configs/mask_synth_glasses.yaml"])
def test_ae_step_clips_and_disc_step_does_not(config):
    m = sharp_method(config)
    g = torch.Generator().manual_seed(1)
    batch = {k: {"image": torch.rand(4, 3, 32, 32, generator=g) * 2 - 1} for k in "ab"}
    m.train_step(batch, 0, StepContext(torch.device("cpu")))

    # Adam leaves .grad as the step used it: the AE's total norm was clipped to exactly 5 ...
    ae_nets = [k for k in m.nets if k != "disc"]
    ae_norm = torch.cat([p.grad.flatten() for k in ae_nets for p in m.nets[k].parameters()]).norm().item()
    assert ae_norm == pytest.approx(5.0, rel=1e-4)

    # ... while the discriminator's gradient equals the unclipped one, recomputed here from the step's
    # inputs (E1 already updated, the discriminator's weights as they were before its own update)
    used = {n: p.grad.clone() for n, p in m.nets["disc"].named_parameters()}
    ref = sharp_method(config)
    with torch.no_grad():
        c_a, c_b = m.nets["e1"](batch["a"]["image"]), m.nets["e1"](batch["b"]["image"])
    loss = bce_logits(ref.nets["disc"](c_a), 1.0) + bce_logits(ref.nets["disc"](c_b), 0.0)
    loss.backward()
    assert grad_norm(ref.nets["disc"]) > 100
    for n, p in ref.nets["disc"].named_parameters():
        torch.testing.assert_close(used[n], p.grad, rtol=1e-5, atol=1e-6)

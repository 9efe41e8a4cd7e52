"""models/lr_schedule.py and the model.lr_schedule key of methods 1-2."""
import math
from pathlib import Path

import pytest
import torch

from core.config import load_config
from core.step import StepContext
from models import build_method
from models.lr_schedule import cosine_lr

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.size=32", "data.batch_size=2", "model.width=0.25", "model.sep=8", "train.steps=20"]


def test_cosine_lr_formula():
    assert cosine_lr(1.0, 0, 100, 10) == pytest.approx(0.1)        # warm-up: linear from 1/warmup
    assert cosine_lr(1.0, 9, 100, 10) == pytest.approx(1.0)
    assert cosine_lr(1.0, 10, 100, 10) == pytest.approx(1.0)       # decay starts at the top
    assert cosine_lr(1.0, 55, 100, 10) == pytest.approx(0.5)       # half-way through the decay
    assert cosine_lr(1.0, 100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(2.0, 32, 100, 0) == pytest.approx(1.0 + math.cos(math.pi * 0.32))


@pytest.mark.parametrize("config", ["configs/synth_glasses.yaml", "configs/mask_synth_glasses.yaml"])
def test_train_step_sets_both_learning_rates_from_the_step(config):
    m = build_method(load_config(ROOT / config, TINY + ["model.lr_schedule=cosine", "model.lr_warmup=4",
                                                         "model.lr=0.01", "model.disclr=0.002"]), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    batch = {k: {"image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1} for k in "ab"}
    for step, factor in ((0, 0.25), (12, 0.5)):  # warm-up step 1 of 4; middle of the 16 decay steps
        m.train_step(batch, step, StepContext(torch.device("cpu")))
        assert m.optims["ae"].param_groups[0]["lr"] == pytest.approx(0.01 * factor)
        assert m.optims["disc"].param_groups[0]["lr"] == pytest.approx(0.002 * factor)


def test_constant_schedule_leaves_the_papers_rates_and_unknown_names_fail():
    m = build_method(load_config(ROOT / "configs/synth_glasses.yaml", TINY), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    batch = {k: {"image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1} for k in "ab"}
    m.train_step(batch, 15, StepContext(torch.device("cpu")))
    assert m.optims["ae"].param_groups[0]["lr"] == m.cfg.model.lr
    with pytest.raises(ValueError, match="lr_schedule"):
        build_method(load_config(ROOT / "configs/synth_glasses.yaml", TINY + ["model.lr_schedule=step"]),
                     torch.device("cpu"))

"""Contract tests over every entry of ``METHODS`` (each method's ``tiny`` settings): a new method is tested with no
new test code. Per-method test files keep only paper-specific checks.

For each method: its task declarations hold; one step changes only trainable weights and logs finite values;
a run with evaluation during training, stopped after 2 steps and resumed for 1, equals 3 uninterrupted steps bit
for bit (weights, EMA, optimizers, RNG, the best-checkpoint record); ``checkpoint-best.pt`` is written; eval.py
writes its metrics; channels_last and the default memory format give the same outputs on CPU.
"""
import json
import math
from pathlib import Path

import pytest
import torch

import eval as eval_cli
import train
from core import checkpoint as ckpt
from core.config import load_config
from core.step import StepContext
from models import METHODS, build_method
from models.tasks import check_tasks

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["train.log_every=1", "train.image_every=2", "train.grid_size=2", "eval.batch_size=8",
          "train.eval_every=2", "train.eval_images=4", "device=cpu"]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_files")


def tiny_args(name, files, tmp, run, *extra):
    config, overrides = METHODS[name].tiny(files / name)
    return ["--config", str(ROOT / config), f"run.dir={tmp}", f"run.name={run}", f"data.cache_dir={files / 'cache'}",
            *overrides, *COMMON, *extra]


def tiny_method(name, files):
    args = tiny_args(name, files, files, "unused")
    cfg = load_config(args[1], args[2:])
    torch.manual_seed(0)
    return build_method(cfg, torch.device("cpu")), cfg


def flat_state(state):
    out = {}
    for section in ("nets", "ema"):
        for k, v in (state[section] or {}).items():
            out[f"{section}.{k}"] = v
    for oname, opt in state["optims"].items():
        for pid, st in opt["state"].items():
            for k, v in st.items():
                out[f"opt.{oname}.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


@pytest.mark.parametrize("name", sorted(METHODS))
def test_tasks_are_implemented(name, tiny_files):
    method, _ = tiny_method(name, tiny_files)
    check_tasks(method)
    assert set(method.tasks) <= {"content_transfer", "identity_swap", "factor_encoding"}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_step_changes_only_trainable_weights(name, tiny_files):
    from core.runtime import to_device
    from data.sampler import make_stream

    method, cfg = tiny_method(name, tiny_files)
    streams = {k: make_stream(ds, cfg.data.batch_size, cfg.seed, k, 0, 1, 0, False)
               for k, ds in method.datasets(cfg, "train").items()}
    batch = {k: to_device(next(s), method.device) for k, s in streams.items()}
    trainable = {id(p) for o in method.optims.values() for g in o.param_groups for p in g["params"]}
    before = {k: v.detach().clone() for k, v in method.named_parameters()}
    frozen_nets = [n for n in getattr(method, "frozen", {}).values() if isinstance(n, torch.nn.Module)]
    frozen = [p.detach().clone() for net in frozen_nets for p in net.parameters()]
    logs = method.train_step(batch, 0, StepContext(torch.device("cpu")))
    assert logs and all(math.isfinite(v) for v in logs.values()), logs
    params = dict(method.named_parameters())
    changed = {k for k, p in params.items() if not torch.equal(p, before[k])}
    assert changed, "a step changed no weight"
    assert all(id(params[k]) in trainable for k in changed), sorted(k for k in changed if id(params[k]) not in trainable)
    after = [p for net in frozen_nets for p in net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(frozen, after)), "a frozen network changed"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_resume_with_evaluation_is_bit_exact_and_evaluates(name, tiny_files, tmp_path):
    assert train.main(tiny_args(name, tiny_files, tmp_path, "straight", "train.steps=3", "train.ckpt_every=1")) == 0
    assert train.main(tiny_args(name, tiny_files, tmp_path, "split", "train.steps=2")) == 0
    assert train.main(tiny_args(name, tiny_files, tmp_path, "split", "train.steps=3", "--resume", "auto")) == 0
    a, b = (ckpt.load(tmp_path / run / ckpt.LATEST) for run in ("straight", "split"))
    assert a["step"] == b["step"] == 3
    fa, fb = flat_state(a), flat_state(b)
    assert fa.keys() == fb.keys()
    assert not [k for k in fa if not torch.equal(fa[k], fb[k])], "resumed run differs"
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    assert a["hooks"]["eval"] == b["hooks"]["eval"] and a["hooks"]["eval"]["best"] is not None
    best = ckpt.load(tmp_path / "straight" / ckpt.BEST)
    assert best["step"] == a["hooks"]["eval"]["best"]["step"]
    stats = [json.loads(ln) for ln in (tmp_path / "split" / "stats.jsonl").read_text().splitlines()]
    evals = [s for s in stats if any(k.startswith("eval/") for k in s)]
    assert [s["step"] for s in evals] == [2] and all(math.isfinite(v) for s in evals for v in s.values())
    # the evaluator of every declared task / protocol writes its metrics
    out = tmp_path / "ev"
    assert eval_cli.main(["--checkpoint", str(tmp_path / "straight" / ckpt.LATEST), "--out", str(out)]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert rows and any(isinstance(v, float) and math.isfinite(v) for r in rows for v in r.values())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_channels_last_matches_the_default_format(name, tiny_files):
    from core.runtime import to_channels_last

    method, cfg = tiny_method(name, tiny_files)
    fixed = {k: torch.stack([ds[i]["image"] for i in range(2)]) for k, ds in method.datasets(cfg, "test").items()}
    ref = method.sample_grids(fixed)
    to_channels_last(method)
    fixed = {k: v.contiguous(memory_format=torch.channels_last) for k, v in fixed.items()}
    got = method.sample_grids(fixed)
    assert ref.keys() == got.keys()
    for k in ref:
        for row_a, row_b in zip(ref[k], got[k]):
            for x, y in zip(row_a, row_b):
                if x is not None:
                    torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)

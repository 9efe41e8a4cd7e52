"""Adding a method is a one-class job: a toy content-transfer method (a class and a YAML, both here) trains,
resumes, evaluates through its declared task and appears in that task's leaderboard, with no edit elsewhere."""
import json

import pytest
import torch

import eval as eval_cli
import train
from core import checkpoint as ckpt
from core import config as config_module
from models import METHODS
from models.base import Method

METHOD_YAML = """\
# a toy method: paste the source into the target through one learned soft mask (where the content tends to be)
method: toy_paste
model:
  lr: 0.05               # Adam on the mask logits
"""
EXPERIMENT_YAML = """\
method: toy_paste
data:
  name: synthetic
  attribute: glasses
  size: 32
  train_length: 32
  test_length: 8
  batch_size: 4
train:
  steps: 4
  log_every: 1
  image_every: 2
  eval_every: 2
  eval_images: 4
  grid_size: 2
eval:
  max_images: 8
  num_display: 2
"""


class ToyPaste(Method):
    """``transfer(target, source) = m * source + (1 - m) * target`` with one learned mask m, trained to predict
    where domain a's attribute is (the synthetic masks); ``remove(x)`` pastes the mean face colour there."""

    tasks = ("content_transfer",)

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        size = cfg.data.size
        self.nets["mask"] = torch.nn.ParameterDict({"logit": torch.nn.Parameter(torch.zeros(1, 1, size, size))})
        self.to(device)
        self.optims["mask"] = torch.optim.Adam(self.nets.parameters(), lr=cfg.model.lr)

    @staticmethod
    def datasets(cfg, split):
        from data import build_domains

        return build_domains(cfg.data, split)

    def mask(self):
        return torch.sigmoid(self.nets["mask"]["logit"])

    def transfer(self, target, source):
        m = self.mask()
        return m * source + (1 - m) * target

    def remove(self, x):
        m = self.mask()
        return m * x.mean((2, 3), keepdim=True) + (1 - m) * x

    def reconstruct(self, x):
        return x

    def codes(self, x):
        m = self.mask()
        return {"common": ((1 - m) * x).mean((2, 3)), "separate": (m * x).mean((2, 3))}

    def train_step(self, batch, step, ctx):
        opt = self.optims["mask"]
        opt.zero_grad(set_to_none=True)
        target = batch["a"]["mask"][:, :1].mean(0, keepdim=True)  # the glasses mask, averaged over the batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self.nets["mask"]["logit"], target)
        ctx.backward(loss, "mask")
        ctx.step(opt, "mask")
        return {"loss/mask": loss.item()}

    def sample_grids(self, fixed):
        with self.inference():
            return {"transfer": [list(fixed["b"]), list(self.transfer(fixed["b"], fixed["a"]))]}


@pytest.fixture
def toy(tmp_path, monkeypatch):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "toy_paste.yaml").write_text(METHOD_YAML)
    (tmp_path / "toy.yaml").write_text(EXPERIMENT_YAML)
    monkeypatch.setattr(config_module, "METHOD_CONFIG_DIRS", [tmp_path / "methods", *config_module.METHOD_CONFIG_DIRS])
    monkeypatch.setitem(METHODS, "toy_paste", ToyPaste)
    return tmp_path


def test_a_toy_method_trains_resumes_evaluates_and_joins_the_leaderboard(toy, capsys):
    common = ["--config", str(toy / "toy.yaml"), f"run.dir={toy / 'runs'}", f"data.cache_dir={toy / 'cache'}"]
    assert train.main([*common, "run.name=toy", "train.steps=2"]) == 0
    assert train.main([*common, "run.name=toy", "--resume", "auto"]) == 0
    assert train.main([*common, "run.name=straight"]) == 0
    a, b = (ckpt.load(toy / "runs" / r / ckpt.LATEST) for r in ("toy", "straight"))
    assert a["step"] == b["step"] == 4 and torch.equal(a["nets"]["mask.logit"], b["nets"]["mask.logit"])
    assert (toy / "runs" / "toy" / ckpt.BEST).is_file()
    stats = [json.loads(ln) for ln in (toy / "runs" / "toy" / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats if "eval/content_transfer/transfer_l1_in_mask" in s] == [2, 4]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(toy / "runs" / "straight" / "tensorboard")).Reload()
    curve = events.Scalars("eval/content_transfer/transfer_l1_in_mask")  # the curve TensorBoard draws
    assert [e.step for e in curve] == [2, 4] and "loss/mask" in events.Tags()["scalars"]

    assert eval_cli.main(["--checkpoint", str(toy / "runs" / "toy" / ckpt.LATEST), "--out", str(toy / "ev")]) == 0
    rows = json.loads((toy / "ev" / "metrics.json").read_text())
    assert {"transfer", "removal", "swap", "domain probe"} <= {r["task"] for r in rows}
    assert (toy / "ev" / "transfer_vs_truth.png").is_file()

    out = toy / "boards"
    assert eval_cli.main(["--leaderboard", "content_transfer", "--runs", str(toy / "runs" / "toy"),
                          str(toy / "runs" / "straight"), "--pairs", "8", "--out", str(out)]) == 0
    board = json.loads((out / "leaderboard-content_transfer.json").read_text())
    names = [r["row"] for r in board["rows"]]
    assert names[:2] == ["toy", "straight"] and "baseline: copy target" in names
    toy_row, straight_row = board["rows"][:2]
    assert toy_row["values"] == straight_row["values"]  # same weights, same pairs: the same numbers
    assert all(r["ranks"] for r in board["rows"])
    assert (out / "leaderboard-content_transfer-grid.png").is_file() and (out / "leaderboard-content_transfer.png").is_file()
    # a run of another synthetic world (here: faces without pose variation) cannot share the test pairs
    assert train.main([*common, "run.name=flat", "train.steps=1", "data.pose_range=0"]) == 0
    assert eval_cli.main(["--leaderboard", "content_transfer", "--runs", str(toy / "runs" / "toy"),
                          str(toy / "runs" / "flat"), "--pairs", "8", "--out", str(out)]) != 0
    assert "differ in data.pose_range" in capsys.readouterr().err

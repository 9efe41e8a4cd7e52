"""eval.py on a tiny method-1 run: files, metric rows, and the ground-truth pipeline's own sanity."""
import json
import math

import pytest

import eval as eval_cli
from core import checkpoint as ckpt
from tests.test_training import run_train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    return run_train(tmp, "tiny", "train.steps=3")


def test_eval_writes_grids_and_table(tiny_run, tmp_path, capsys):
    out = tmp_path / "ev"
    assert eval_cli.main(["--checkpoint", str(tiny_run / ckpt.LATEST), "--out", str(out),
                          "eval.max_images=8", "eval.num_display=3"]) == 0
    for name in ("transfer_grid", "swap_grid", "removal_grid", "transfer_vs_truth"):
        assert (out / f"{name}.png").is_file()
    rows = json.loads((out / "metrics.json").read_text())
    by = {(r["task"], r["method"]): r for r in rows}
    assert {"transfer", "removal", "swap", "domain probe"} <= {r["task"] for r in rows}
    # ground truth = target re-rendered with the source's glasses: copying the target is exact outside
    # the attribute region and wrong inside it; copying the source is wrong almost everywhere
    tgt, src = by[("transfer", "baseline: copy target")], by[("transfer", "baseline: copy source")]
    assert tgt["l1_out_mask"] < 0.01 < 0.1 < tgt["l1_in_mask"]
    assert src["l1"] > 5 * tgt["l1"]
    assert by[("removal", "baseline: copy input")]["l1_out_mask"] < 0.01
    model = by[("transfer", "content_ae")]
    assert all(math.isfinite(model[k]) for k in ("l1", "psnr", "ssim", "l1_in_mask", "l1_out_mask"))
    assert 0.0 <= by[("domain probe", "content_ae: common code")]["accuracy"] <= 1.0
    for code in ("common", "separate"):  # where the glasses' look lives (synthetic ground truth)
        assert all(math.isfinite(by[("attribute probe", f"content_ae: {code} code")][f"r2_{k}"])
                   for k in ("shape", "colour", "all"))
    assert "| transfer" in capsys.readouterr().out


def test_eval_errors(tmp_path, tiny_run, capsys):
    assert eval_cli.main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert eval_cli.main(["--checkpoint", str(tiny_run / ckpt.LATEST), "eval.nope=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err

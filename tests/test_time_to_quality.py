"""scripts/time_to_quality.py and metrics/thresholds.py: thresholds read from real metric rows."""
import importlib.util
import json
from pathlib import Path

import pytest

from metrics.thresholds import ThresholdError, Threshold, first_met, parse_thresholds
from tests.test_training import TINY

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "time_to_quality.py"
ROWS = [{"task": "transfer", "method": "m", "l1": 0.2, "psnr": 23.0},
        {"task": "transfer", "method": "baseline: copy target", "l1": 0.03, "psnr": 22.7}]


def test_threshold_checks():
    t = Threshold.parse("transfer/{method}/psnr >= transfer/baseline: copy target/psnr", "m")
    assert t.text == "transfer/m/psnr >= transfer/baseline: copy target/psnr"
    assert t.check(ROWS) == {"value": 23.0, "ref": 22.7, "met": True}
    assert not Threshold.parse("transfer/m/l1 < 0.2", "m").check(ROWS)["met"]
    assert Threshold.parse("transfer/m/l1 <= 0.2", "m").check(ROWS)["met"]
    snaps = [{"step": 1, "rows": [{**ROWS[0], "l1": 0.5}]}, {"step": 2, "rows": ROWS}, {"step": 3, "rows": ROWS}]
    first = first_met(snaps, parse_thresholds(["transfer/m/l1 < 0.3", "transfer/m/l1 < 0.1"], "m"))
    assert first["transfer/m/l1 < 0.3"]["step"] == 2 and first["transfer/m/l1 < 0.1"] is None
    for bad in ("transfer/m/l1 = 3", "transfer/l1 < 3", "a/b/c < d/e"):
        with pytest.raises(ThresholdError):
            Threshold.parse(bad, "m")
    with pytest.raises(ThresholdError, match="no metric row"):
        Threshold.parse("removal/m/l1 < 1", "m").check(ROWS)
    with pytest.raises(ThresholdError, match="has no 'ssim'"):
        Threshold.parse("transfer/m/ssim < 1", "m").check(ROWS)


def test_script_on_a_tiny_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("time_to_quality", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    always, never = "transfer/{method}/l1_in_mask <= 100", "transfer/{method}/l1_in_mask <= 0"
    outside = "transfer/baseline: copy target/l1_out_mask < transfer/{method}/l1_out_mask"
    argv = ["--config", str(ROOT / "configs/synth_glasses.yaml"), "--every", "2", "--out", str(tmp_path),
            "--threshold", always, "--threshold", never, "--threshold", outside, *TINY, "train.steps=3",
            f"data.cache_dir={tmp_path / 'cache'}", "train.log_every=3", "eval.max_images=8", "eval.num_display=2"]
    assert mod.main(argv) == 0
    out = capsys.readouterr().out
    run = tmp_path / "synth_glasses"
    data = json.loads((run / "time_to_quality.json").read_text())
    # snapshot 2 and the final step 3 (not a snapshot) are evaluated; clocks come from stats.jsonl
    assert [s["step"] for s in data["snapshots"]] == [2, 3]
    stats = {r["step"]: r for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines())}
    assert [s["train_s"] for s in data["snapshots"]] == [stats[2]["time"], stats[3]["time"]]
    assert 0 < stats[2]["time"] < stats[3]["time"] <= data["train_s"]
    # the values are the evaluation's own metrics
    rows = json.loads((run / "eval-0000002" / "metrics.json").read_text())
    model = next(r for r in rows if r["task"] == "transfer" and r["method"] == "content_ae")
    assert data["snapshots"][0]["checks"][0]["value"] == pytest.approx(model["l1_in_mask"])
    first = {f["threshold"]: f for f in data["first_met"]}
    assert first[always.format(method="content_ae")]["step"] == 2
    assert first[never.format(method="content_ae")]["step"] is None
    assert first[outside.format(method="content_ae")]["step"] == 2
    assert data["all_met_s"] is None and data["train_plus_eval_s"] > data["train_s"]
    assert "| threshold | first met at step |" in out and "| never |" in out and "train + eval:" in out

    # --run: the same snapshots scored as the leaderboard scores them, with the reference goals
    assert mod.main(["--run", str(run), "--pairs", "8"]) == 0
    curve = json.loads((run / "reference_curve.json").read_text())
    assert [s["step"] for s in curve] == [2, 3] and [s["time"] for s in curve] == [stats[2]["time"], stats[3]["time"]]
    from evaluation.leaderboard import leaderboard
    from models import load_method

    method, cfg, _ = load_method(run / "checkpoint-latest.pt")
    board = leaderboard("content_transfer", [("synth_glasses", method, cfg)], 8)
    assert curve[-1]["values"]["content_transfer"]["synth_glasses"] == pytest.approx(board["rows"][0]["values"])
    goals = {g["goal"]: g for g in curve[-1]["goals"]}
    assert goals["transfer_l1_in <= 0.3"]["value"] == pytest.approx(board["rows"][0]["values"]["transfer_l1_in"])
    assert (run / "reference_curve.png").stat().st_size > 0 and "Reference goals" in (run / "reference_curve.md").read_text()

    # scoring again reuses the numbered snapshots scored with the same settings (a continued run scores only its
    # new ones); checkpoint-latest.pt and other settings are scored afresh
    marked = [dict(e, values={"marker": 1}) for e in curve]
    (run / "reference_curve.json").write_text(json.dumps(marked))
    assert mod.main(["--run", str(run), "--pairs", "8"]) == 0
    again = json.loads((run / "reference_curve.json").read_text())
    assert [e["values"] == {"marker": 1} for e in again] == [True, False]
    assert again[-1]["values"] == curve[-1]["values"] and again[0]["goals"] == curve[0]["goals"]
    assert mod.main(["--run", str(run), "--pairs", "6"]) == 0
    assert all("marker" not in e["values"] for e in json.loads((run / "reference_curve.json").read_text()))
    # a run stopped between log rows (SIGTERM): checkpoint-latest.pt has no clock and is left out, with a note
    rows = (run / "stats.jsonl").read_text().splitlines()
    (run / "stats.jsonl").write_text("\n".join(r for r in rows if json.loads(r)["step"] != 3) + "\n")
    capsys.readouterr()
    assert mod.main(["--run", str(run), "--pairs", "6"]) == 0
    assert [e["step"] for e in json.loads((run / "reference_curve.json").read_text())] == [2]
    assert "skipped" in capsys.readouterr().err


def test_script_errors(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("time_to_quality", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--config", str(ROOT / "configs/synth_glasses.yaml"), "--threshold", "x < 1"]) == 2
    assert "error: " in capsys.readouterr().err
    assert mod.main(["--config", str(ROOT / "configs/mad_synth_ae.yaml"), "--out", str(tmp_path)]) == 2
    assert "give --threshold" in capsys.readouterr().err
    assert mod.main(["--run", str(tmp_path / "nothing")]) == 2
    assert "no checkpoints in" in capsys.readouterr().err
    assert mod.main([]) == 2 and "give --config" in capsys.readouterr().err

"""Tests of scripts/benchmark.py (train-step throughput table)."""
import importlib.util
import re
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"
TINY = ["data.size=32", "model.width=0.25", "data.batch_size=2"]


def _load():
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _table_rows(text):
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def test_cpu_table_has_numeric_throughput(capsys):
    rc = _load().main(["synth_glasses", *TINY, "--device", "cpu", "--steps", "1", "--warmup", "1"])
    assert rc == 0
    header, rows = _table_rows(capsys.readouterr().out)
    assert {"config", "method", "resolution", "s/step", "img/s", "peak memory"} <= set(header)
    assert len(rows) == 1
    row = rows[0]
    assert row["config"] == "synth_glasses" and row["method"] == "content_ae"
    assert row["resolution"] == "32" and row["batch (img/step)"] == "4" and row["device"] == "cpu"
    assert float(row["img/s"]) > 0 and float(row["s/step"]) > 0
    assert re.match(r"\d+ MiB \(RSS peak delta\)", row["peak memory"])


def test_loader_and_second_method(capsys):
    rc = _load().main(["mask_synth_glasses", *TINY, "--device", "cpu", "--steps", "1", "--warmup", "0",
                       "--loader", "--loader-length", "16"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| mask_synth_glasses | mask_ct | 32 |" in out
    rate = out.strip().splitlines()[-1].strip("|").split("|")[-1]
    assert float(rate) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    rc = _load().main(["synth_glasses", *TINY, "--device", "cuda", "--steps", "1"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "CUDA is not available" in err


def test_unknown_config_and_bad_device(capsys):
    mod = _load()
    assert mod.main(["no_such_config", "--device", "cpu"]) != 0
    assert "unknown config 'no_such_config'" in capsys.readouterr().err
    assert mod.main(["synth_glasses", "--device", "gpu"]) != 0
    assert "auto|cpu|cuda" in capsys.readouterr().err


def test_methods_with_their_own_datasets_get_real_batches(capsys):
    """stylegan2 reads batch["real"], not a/b domains: the benchmark feeds it its own (synthetic) dataset."""
    rc = _load().main(["stylegan2_synth", "model.width=0.03125", "data.batch_size=2", "data.train_length=8",
                       "--device", "cpu", "--steps", "1", "--warmup", "0"])
    assert rc == 0
    header, rows = _table_rows(capsys.readouterr().out)
    assert rows[0]["method"] == "stylegan2" and rows[0]["batch (img/step)"] == "2"
    assert float(rows[0]["img/s"]) > 0

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


# --- paper-resolution rows with random weight files --------------------------------------------------

def test_paper_configs_resolve_strictly():
    """Every --paper entry loads under the strict schema (bench configs only set existing keys)."""
    from core.config import load_config

    mod = _load()
    for name in mod.PAPER_CONFIGS:
        cfg = load_config(mod.resolve_config(name))
        assert cfg.data.size >= 128
    assert {load_config(mod.resolve_config(n)).method for n in mod.PAPER_CONFIGS} == {
        "content_ae", "mask_ct", "stylegan2", "id_mapper", "g2g", "mad"}


def test_random_weight_files_load_through_the_strict_loaders(tmp_path):
    from core.config import load_config
    from models.nets.arcface import load_arcface
    from models.nets.face_small import build_landmark_net
    from models.nets.stylegan2 import load_generator

    mod = _load()
    path = mod.resolve_config("bench/id_mapper_256")
    cfg = load_config(path, ["data.size=32", "model.attr_encoder=small"])
    ov = mod.random_weight_overrides(cfg, tmp_path, width=0.0625)
    keys = {o.split("=")[0] for o in ov}
    assert keys == {"model.generator", "model.identity_weights", "model.landmarks_weights"}
    cfg = load_config(path, ["data.size=32", "model.attr_encoder=small", *ov])  # strict keys still hold
    g, w_avg = load_generator(cfg.model.generator)
    assert g.size == 32 and g.style_dim == 512 and g.n_mlp == 8 and w_avg.shape == (512,)
    assert load_arcface(cfg.model.identity_weights)(torch.zeros(1, 3, 112, 112)).shape == (1, 512)
    assert build_landmark_net(cfg.model.landmarks_weights) is not None
    # keys already set are left alone
    assert mod.random_weight_overrides(cfg, tmp_path) == []


def test_id_mapper_paper_networks_one_step(capsys, tmp_path):
    """IR-SE50 + landmark net + (narrow) StyleGAN2 files, batches of the generator's own samples and w;
    ``--out`` keeps the files and a later run reuses them."""
    from core.config import load_config

    mod = _load()
    rc = mod.main(["bench/id_mapper_256", "data.size=32", "model.attr_encoder=small", "data.batch_size=1",
                   "--random-weights", "--random-width", "0.0625", "--device", "cpu", "--steps", "1",
                   "--warmup", "0", "--out", str(tmp_path / "w")])
    assert rc == 0
    _, rows = _table_rows(capsys.readouterr().out)
    assert rows[0]["config"] == "bench/id_mapper_256" and rows[0]["method"] == "id_mapper"
    assert rows[0]["batch (img/step)"] == "2" and float(rows[0]["img/s"]) > 0
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w").iterdir()}
    assert set(kept) == {"stylegan2_32_w0.0625.pt", "ir_se50.pt", "face_nets.pt"}
    cfg = load_config(mod.resolve_config("bench/id_mapper_256"), ["data.size=32", "model.attr_encoder=small"])
    ov = mod.random_weight_overrides(cfg, tmp_path / "w", width=0.0625)
    assert sorted(o.split("=", 1)[1] for o in ov) == sorted(str(tmp_path / "w" / n) for n in set(kept))
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w").iterdir()} == kept  # reused, not rewritten
    assert mod.main(["synth_glasses", "--out", str(tmp_path / "w")]) == 2
    assert "--out keeps the files of --random-weights" in capsys.readouterr().err


def test_mad_identity_groups_one_step(capsys):
    """mad's batch = identities x group_size images: the short benchmark set still fills every group."""
    rc = _load().main(["bench/mad_256", "data.size=32", "model.width=0.125", "data.batch_size=2",
                       "--device", "cpu", "--steps", "1", "--warmup", "0"])
    assert rc == 0
    _, rows = _table_rows(capsys.readouterr().out)
    assert rows[0]["method"] == "mad" and rows[0]["batch (img/step)"] == "8"


def test_stylegan2_1024_builds_at_reduced_width(capsys):
    """The 1024 px entry at 1/64 width and batch 1 (full width is CUDA-sized)."""
    rc = _load().main(["bench/stylegan2_1024", "model.width=0.015625", "data.batch_size=1", "--device", "cpu",
                       "--steps", "1", "--warmup", "0"])
    assert rc == 0
    _, rows = _table_rows(capsys.readouterr().out)
    assert rows[0]["method"] == "stylegan2" and rows[0]["resolution"] == "1024"


@pytest.mark.slow
def test_g2g_paper_networks_one_step(capsys, tmp_path):
    """VGGFace2 ResNet-50 and VGG16 files (VGG16's state_dict is 528 MB) through their loaders, one step."""
    rc = _load().main(["bench/g2g_224", "data.size=32", "model.class_input_size=32", "model.nf=8", "model.nfd=8",
                       "data.batch_size=1", "--random-weights", "--device", "cpu", "--steps", "1",
                       "--warmup", "0"])
    assert rc == 0
    _, rows = _table_rows(capsys.readouterr().out)
    assert rows[0]["method"] == "g2g" and rows[0]["batch (img/step)"] == "2"


@pytest.mark.slow
def test_id_mapper_inception_attr_weights_one_step(capsys):
    """The InceptionV3 ImageNet-layout file (AuxLogits included, as torchvision's) loads and trains a step."""
    rc = _load().main(["bench/id_mapper_256", "data.size=32", "data.batch_size=1", "--random-weights",
                       "--random-width", "0.0625", "--device", "cpu", "--steps", "1", "--warmup", "0"])
    assert rc == 0
    assert "| bench/id_mapper_256 | id_mapper | 32 |" in capsys.readouterr().out

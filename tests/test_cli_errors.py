"""Every entry point answers bad arguments with a one-line error and a non-zero exit code."""
import pytest

import eval as eval_cli
import train

CFG = "configs/synth_glasses.yaml"


@pytest.mark.parametrize("argv, message", [
    (["--config", "nope.yaml"], "config file not found"),
    (["--config", CFG, "train.steps"], "must look like key.sub=value"),
    (["--config", CFG, "train.stpes=3"], "did you mean 'train.steps'"),
    (["--config", CFG, "data.name=xyz"], "unknown data.name 'xyz'"),
    (["--config", CFG, "device=gpu"], "must be one of auto | cpu | cuda"),
    (["--config", CFG, "data.attribute=hat"], "not a synthetic content attribute"),
    (["--config", CFG, "--resume", "missing.pt"], "checkpoint not found"),
    (["--config", CFG, "--weights", "w.pt"], "method 'content_ae' reads no pretrained weight files"),
    (["--config", "configs/g2g_synth.yaml", "--weights", "missing.pt"], "file not found: missing.pt (for model.class_weights)"),
    (["--config", "configs/g2g_synth.yaml", "--weights", "arcface=x.pt"], "NAME one of class, vgg16"),
])
def test_train_errors(argv, message, tmp_path, capsys):
    code = train.main(argv + [f"run.dir={tmp_path}", "data.train_length=8", "data.test_length=4",
                              f"data.cache_dir={tmp_path / 'cache'}"])
    assert code != 0
    assert message in capsys.readouterr().err


def test_argparse_errors(capsys):
    with pytest.raises(SystemExit) as e:
        train.main([])
    assert e.value.code == 2 and "--config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--config", CFG, "--resume", "auto", "--init", "x.pt"])
    assert "exclusive" in capsys.readouterr().err


def test_eval_rejects_non_checkpoints(capsys):
    assert eval_cli.main(["--checkpoint", "configs/base.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: configs/base.yaml should hold a training checkpoint") and err.count("\n") == 1
    assert "is a text file (it starts with '# Common keys" in err and "Traceback" not in err


def test_weights_flag_sets_the_method_key(tmp_path, capsys):
    """``--weights PATH`` fills the method's default weight key, ``NAME=PATH`` another one (dry run)."""
    a, b = tmp_path / "resnet.pth", tmp_path / "vgg.pth"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    assert train.main(["--config", "configs/g2g_synth.yaml", "--weights", str(a), "--weights", f"vgg16={b}",
                       "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"class_weights: {a}" in out and f"vgg_weights: {b}" in out


def _script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name, argv, message", [
    ("convert_mbu_checkpoint", ["missing.pt", "out.pt", "x=1"], "unknown config key 'x'"),
    ("generate_w_dataset", ["--generator", "missing.pt", "--out", "x", "--count", "2"], "not found"),
])
def test_script_errors(name, argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _script(name).main(argv) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err

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
    (["--config", CFG, "device=gpu"], "device must be auto|cpu|cuda"),
    (["--config", CFG, "data.attribute=hat"], "not a synthetic content attribute"),
    (["--config", CFG, "--resume", "missing.pt"], "checkpoint not found"),
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
    assert "corrupt or unreadable" in capsys.readouterr().err

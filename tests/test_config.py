"""Config resolution: schema from base + method files, strict overrides, suggestions, dumping."""
import pytest
import yaml

from core.config import ConfigError, dump_config, load_config, parse_override


def test_overrides_parse_yaml_values():
    assert parse_override("train.steps=12") == {"train": {"steps": 12}}
    assert parse_override("model.betas=[0.1, 0.2]") == {"model": {"betas": [0.1, 0.2]}}
    assert parse_override("run.name=abc") == {"run": {"name": "abc"}}
    assert parse_override("data.root=") == {"data": {"root": None}}
    with pytest.raises(ConfigError):
        parse_override("train.steps")
    with pytest.raises(ConfigError):
        parse_override("train..steps=1")


def test_experiment_and_overrides_layer_over_schema():
    cfg = load_config("configs/synth_glasses.yaml", ["train.steps=7", "model.discweight=0"])
    assert cfg.method == "content_ae"
    assert cfg.train.steps == 7 and cfg.model.discweight == 0
    assert cfg.model.width == 0.5          # from the experiment file
    assert cfg.model.lr == 0.001 and cfg.model.disclr == 0.0002  # experiment file / configs/methods/content_ae.yaml
    assert cfg.data.batch_size == 32       # from configs/base.yaml


@pytest.mark.parametrize("override, suggestion", [
    ("train.stpes=3", "train.steps"),
    ("model.discweigth=1", "model.discweight"),
    ("dat.size=32", "data"),
])
def test_unknown_keys_rejected_with_suggestion(override, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        load_config("configs/synth_glasses.yaml", [override])


def test_unknown_key_in_file_and_bad_section(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: content_ae\nmodel:\n  sepp: 3\n")
    with pytest.raises(ConfigError, match=r"model\.sepp.*bad\.yaml.*model\.sep"):
        load_config(bad)
    with pytest.raises(ConfigError, match="is a section"):
        load_config("configs/synth_glasses.yaml", ["model=3"])
    with pytest.raises(ConfigError, match="unknown method"):
        load_config("configs/synth_glasses.yaml", ["method=nope"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_base_chain_and_dump_roundtrip(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"_base_: {(tmp_path / 'parent.yaml').name}\ntrain:\n  steps: 5\n")
    (tmp_path / "parent.yaml").write_text("method: content_ae\ntrain:\n  steps: 3\n  log_every: 2\n")
    cfg = load_config(child)
    assert cfg.train.steps == 5 and cfg.train.log_every == 2
    dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(None, ["train.steps=9"], base=yaml.safe_load((tmp_path / "resolved.yaml").read_text()))
    assert again.train.steps == 9 and again.train.log_every == 2 and again.model.sep == cfg.model.sep
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(None, ["train.nope=1"], base=cfg.to_dict())


def test_saved_config_gets_defaults_of_keys_added_later():
    saved = load_config("configs/synth_glasses.yaml", ["train.steps=5"]).to_dict()
    del saved["data"]["cache"], saved["model"]["clip_norm"]
    cfg = load_config(None, [], base=saved)
    assert cfg.data.cache == "auto" and cfg.model.clip_norm == 5.0   # today's defaults
    assert cfg.train.steps == 5 and cfg.model.width == 0.5             # the saved run's values

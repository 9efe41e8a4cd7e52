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


# --- fixed-word keys: every documented value round-trips through a file and the command line -----------
from core.config import CHOICES, CONFIG_DIR  # noqa: E402

SCHEMA_FILES = [CONFIG_DIR / "base.yaml", *sorted((CONFIG_DIR / "methods").glob("*.yaml"))]
# keys whose comments list words with " | " but that are no fixed-word key: data.name is checked by the
# method's data builders (each method has its own set), the rest are free text or sections
NOT_CHOICES = {"data.name": None, "data.attribute": None, "model.dims": None, "data": None}
DATA_NAMES = {"content_ae": ("synthetic", "folders", "celeba"), "id_mapper": ("w_codes",), "mad": ("synthetic", "real")}


def documented_keys(path):
    """``{dotted key: comment text}`` of a schema file (a key's comment goes on in comment lines indented
    deeper than the key)."""
    out, stack, last = {}, [], None
    for line in path.read_text().splitlines():
        body, _, comment = line.partition("#")
        if not body.strip():
            if last and comment and line.index("#") > last[1]:
                out[last[0]] += " " + comment.strip()
            continue
        indent = len(body) - len(body.lstrip())
        key = body.strip().split(":", 1)[0]
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        dotted = ".".join(k for _, k in stack)
        out[dotted] = comment.strip()
        last = (dotted, indent) if comment else None
    return out


def schema_comments():
    """``{(method or None, key): comment}`` over base.yaml and every method file."""
    out = {}
    for path in SCHEMA_FILES:
        method = None if path.name == "base.yaml" else path.stem
        out.update({(method, k): c for k, c in documented_keys(path).items() if k != "method"})
    return out


def test_every_word_list_in_a_comment_is_a_checked_key():
    import re

    comments = schema_comments()
    listed = {k for (_, k), c in comments.items() if " | " in c}
    assert listed - set(CHOICES) - set(NOT_CHOICES) == set()
    for key, words in CHOICES.items():  # listed where the key is defined (a method file may only re-set it)
        where = [comments[(None, key)]] if (None, key) in comments else [c for (_, k), c in comments.items() if k == key]
        assert where, f"{key} is in no schema file"
        for c in where:
            assert all(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", c) for w in words), (key, c)


def _round_trip_cases():
    comments = schema_comments()
    for key, words in CHOICES.items():
        method = next(m for (m, k) in comments if k == key) or "content_ae"
        yield from ((method, key, w) for w in words)
    for method, words in DATA_NAMES.items():
        yield from ((method, "data.name", w) for w in words)


@pytest.mark.parametrize("method, key, word", list(_round_trip_cases()))
def test_documented_values_round_trip(tmp_path, method, key, word):
    """``key=word`` on the command line and ``key: word`` in a YAML file give the same value: the word."""
    *parents, leaf = key.split(".")
    text = f"method: {method}\n" + "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents))
    (tmp_path / "plain.yaml").write_text(f"method: {method}\n")
    (tmp_path / "set.yaml").write_text(text + f"{'  ' * len(parents)}{leaf}: {word}\n")

    def get(cfg):
        for part in key.split("."):
            cfg = cfg[part]
        return cfg

    assert get(load_config(tmp_path / "set.yaml")) == word
    assert get(load_config(tmp_path / "plain.yaml", [f"{key}={word}"])) == word


def test_undocumented_values_are_errors_naming_the_source(tmp_path):
    with pytest.raises(ConfigError, match=r"'data.cache' \(from override 'data.cache=maybe'\) must be one of "
                                          r"auto \| build \| require \| off, got 'maybe'"):
        load_config("configs/synth_glasses.yaml", ["data.cache=maybe"])
    (tmp_path / "x.yaml").write_text("method: content_ae\nmodel:\n  norm: off\n")
    with pytest.raises(ConfigError, match=r"'model.norm' \(from .*x.yaml\) must be one of .*, got "
                                          r"false \(YAML reads off/no/on/yes as booleans\)"):
        load_config(tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match=r"'data.hflip' .* must be true or false, got 'sometimes'"):
        load_config("configs/synth_glasses.yaml", ["data.hflip=sometimes"])
    assert load_config("configs/synth_glasses.yaml", ["data.hflip=off"]).data.hflip is False


def test_saved_boolean_off_is_read_as_the_word():
    """A run saved before values were checked (data.cache stored as false) loads as 'off'."""
    saved = load_config("configs/synth_glasses.yaml").to_dict()
    saved["data"]["cache"] = False
    assert load_config(None, [], base=saved).data.cache == "off"

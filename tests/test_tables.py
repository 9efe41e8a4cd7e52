"""Paper tables (eval.py --table): every configs/tables/*.yaml parses, has no published number yet, and is
filled by its method's real evaluator on a tiny run; Markdown / JSON / PNG output; the errors."""
import json
from pathlib import Path

import pytest
from PIL import Image

import eval as eval_cli
import train
from core import checkpoint as ckpt
from evaluation.paper_tables import NOT_RETRIEVED, TableError, fill_table, list_tables, load_table, write_table

ROOT = Path(__file__).resolve().parent.parent
TABLES = list_tables()
TINY_CONTENT = ["data.size=32", "data.train_length=16", "data.test_length=8", "data.batch_size=4",
                "model.width=0.25", "model.sep=8", "train.image_every=100", "train.grid_size=2"]


def _train(tmp, config, name, *extra):
    argv = ["--config", str(ROOT / config), f"run.dir={tmp}", f"run.name={name}",
            f"data.cache_dir={tmp / 'cache'}", *extra]
    assert train.main(argv) == 0
    return tmp / name


def _content(tmp, config, name):
    return _train(tmp, config, name, *TINY_CONTENT, "train.steps=2")


def _g2g(tmp):
    from tests.test_g2g import g2g_args

    assert train.main(g2g_args(tmp, "g2g", "train.steps=2")) == 0
    return tmp / "g2g"


def _mad(tmp):
    from tests.test_mad import TINY

    return _train(tmp, "configs/mad_synth_ae.yaml", "mad", "train.steps=2", *TINY)


def _id_mapper(tmp):
    """The tiny pipeline of tests/test_id_mapper.py (generator, face nets, W codes), then 2 mapper steps."""
    from models.nets.stylegan2 import Generator, save_public_format
    from tests.test_id_mapper import _script, mapper_args

    import torch

    torch.manual_seed(0)
    g = Generator(32, style_dim=16, n_mlp=2, width=1 / 32)
    gen = tmp / "stylegan2-tiny.pt"
    save_public_format(gen, g_ema=g, w_avg=g.mean_w(64))
    _train(tmp, "configs/face_nets_synth.yaml", "face", "data.train_length=32", "data.test_length=8",
           "data.batch_size=8", "train.steps=1", "train.image_every=100", "model.id_width=0.25",
           "model.analysis_width=0.25", "model.analysis_hidden=32", "model.id_dim=32")
    assert _script("generate_w_dataset").main(["--generator", str(gen), "--out", str(tmp / "w"), "--count", "16",
                                               "--device", "cpu"]) == 0
    p = {"tmp": tmp, "gen": gen, "face": tmp / "face" / ckpt.LATEST, "w": tmp / "w"}
    assert train.main(mapper_args(p, "mapper", "train.steps=2", "eval.max_images=4")) == 0
    return tmp / "mapper"


BUILD = {
    "content_ae": lambda tmp: [_content(tmp, "configs/synth_glasses.yaml", "glasses")],
    "mask_ct": lambda tmp: [_content(tmp, "configs/mask_synth_glasses.yaml", "glasses"),
                            _content(tmp, "configs/mask_synth_facial_hair.yaml", "facial_hair")],
    "g2g": lambda tmp: [_g2g(tmp)],
    "mad": lambda tmp: [_mad(tmp)],
    "id_mapper": lambda tmp: [_id_mapper(tmp)],
}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Tiny runs per method, built on first use."""
    cache = {}

    def get(method):
        if method not in cache:
            cache[method] = BUILD[method](tmp_path_factory.mktemp(method))
        return cache[method]

    return get


@pytest.mark.parametrize("name", TABLES)
def test_table_config_parses_and_publishes_nothing_unverified(name):
    t = load_table(name)
    assert t["method"] in BUILD
    assert t["published"]["source"] and t["published"]["note"]
    for p in t["published"]["rows"]:  # no paper number is verified yet (specs): every value is null
        assert all(v is None for v in p["values"].values()), (name, p["row"])
        assert "not retrieved" in p.get("note", t["published"]["note"]) or not p["values"]


def test_every_method_has_a_table():
    assert {load_table(n)["method"] for n in TABLES} == set(BUILD)


@pytest.mark.parametrize("name", TABLES)
def test_real_evaluator_fills_the_table(name, tiny_runs, tmp_path, capsys):
    """The method's evaluator (run by eval.py --table on runs without metrics) produces every metric key."""
    method = load_table(name)["method"]
    runs = tiny_runs(method)
    out = tmp_path / "tables"
    assert eval_cli.main(["--table", name, "--runs", *map(str, runs), "--out", str(out)]) == 0, capsys.readouterr()
    cap = capsys.readouterr()
    assert f"| {method}" in cap.out or "| mad" in cap.out
    result = json.loads((out / f"table-{name}.json").read_text())
    ours = [r for r in result["rows"] if r["numbers"] == "ours"]
    assert len(ours) == len(runs) * len(load_table(name)["rows"])
    assert any(v is not None for r in ours for v in r["values"].values())
    assert Image.open(out / f"table-{name}.png").size[0] > 100
    # second time: the runs' eval-<step>/metrics.json is reused
    assert eval_cli.main(["--table", name, "--runs", *map(str, runs), "--out", str(out)]) == 0
    assert "using" in capsys.readouterr().err


FAKE_TABLE = {
    "name": "fake", "method": "content_ae", "title": "Fake", "paper": "Someone 2019", "run_label": "{run} ({attribute})",
    "columns": [{"name": "psnr", "label": "PSNR", "key": "psnr", "select": {"task": "transfer"}, "better": "higher"},
                {"name": "judge", "label": "judge score", "key": "judge", "select": {"task": "transfer"},
                 "optional": True},
                {"name": "acc", "label": "accuracy", "key": None}],
    "rows": [{"label": "{method}", "select": {"method": "{method}"}},
             {"label": "copy", "select": {"method": "baseline: copy*"}, "cells": ["psnr"]}],
    "published": {"source": "Someone 2019, Table 2", "note": "not retrieved",
                  "rows": [{"row": "content_ae", "values": {"psnr": None, "acc": None}},
                           {"row": "Other method", "values": {"acc": None}, "note": "not retrieved; unconfirmed"}]},
}
FAKE_RUN = {"name": "r1", "config": {"method": "content_ae", "data": {"name": "synthetic", "attribute": "glasses"}},
            "step": 7, "source": "fake/metrics.json",
            "metrics": [{"task": "transfer", "method": "content_ae", "psnr": 20.5},
                        {"task": "transfer", "method": "baseline: copy target", "psnr": 22.0},
                        {"task": "removal", "method": "content_ae", "psnr": 18.0}]}


def test_fill_and_write_from_fake_metrics(tmp_path):
    result = fill_table(FAKE_TABLE, [FAKE_RUN])
    assert [(r["row"], r["numbers"]) for r in result["rows"]] == [
        ("content_ae", "ours"), ("content_ae", "paper"), ("copy", "ours"), ("Other method", "paper")]
    ours, paper = result["rows"][:2]
    assert ours["run"] == "r1 (glasses)" and ours["values"] == {"psnr": 20.5, "judge": None, "acc": None}
    assert paper["values"]["psnr"] is None and paper["status"]["psnr"] == "not retrieved"
    assert paper["status"]["judge"] == "not reported" and paper["source"] == "Someone 2019, Table 2"
    md, js, png = write_table(tmp_path, result, FAKE_TABLE)
    text = md.read_text()
    assert "| r1 (glasses) | content_ae" in text.replace("  ", " ").replace("  ", " ")
    assert "20.500" in text and NOT_RETRIEVED in text and "PSNR ↑" in text and "Someone 2019, Table 2" in text
    data = json.loads(js.read_text())
    assert data["rows"][1]["values"]["psnr"] is None and data["runs"][0]["step"] == 7
    assert Image.open(png).mode == "RGB"


def test_fill_errors():
    with pytest.raises(TableError, match="metric key 'psnr' missing"):
        fill_table(FAKE_TABLE, [{**FAKE_RUN, "metrics": [{"task": "transfer", "method": "content_ae"}]}])
    with pytest.raises(TableError, match="no metric row matches"):
        fill_table(FAKE_TABLE, [{**FAKE_RUN, "metrics": FAKE_RUN["metrics"][1:]}])
    with pytest.raises(TableError, match="2 metric rows match"):
        fill_table(FAKE_TABLE, [{**FAKE_RUN, "metrics": FAKE_RUN["metrics"] + FAKE_RUN["metrics"][:1]}])
    with pytest.raises(TableError, match="is for method 'content_ae'"):
        fill_table(FAKE_TABLE, [{**FAKE_RUN, "config": {"method": "g2g"}}])


def test_load_errors(tmp_path):
    with pytest.raises(TableError, match="did you mean 'nitzan2020_identity'"):
        load_table("nitzan")
    bad = {**FAKE_TABLE, "columns": [{**FAKE_TABLE["columns"][0], "kee": "x"}]}
    (tmp_path / "fake.yaml").write_text(json.dumps(bad))
    with pytest.raises(TableError, match="unknown key 'kee'"):
        load_table("fake", tmp_path)
    bad = {**FAKE_TABLE, "published": {**FAKE_TABLE["published"], "rows": [{"row": "x", "values": {"nope": None}}]}}
    (tmp_path / "fake.yaml").write_text(json.dumps(bad))
    with pytest.raises(TableError, match="unknown column 'nope'"):
        load_table("fake", tmp_path)


def test_cli_errors_and_list(tiny_runs, tmp_path, capsys):
    assert eval_cli.main(["--table", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in TABLES)
    assert eval_cli.main(["--table", "press2019", "--runs", "x"]) == 2
    assert "did you mean 'press2019_content_transfer'" in capsys.readouterr().err
    assert eval_cli.main(["--table", "g2g_swap"]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    run = tiny_runs("content_ae")[0]
    assert eval_cli.main(["--table", "nitzan2020_identity", "--checkpoint", str(run / ckpt.LATEST),
                          "--out", str(tmp_path)]) == 2
    assert "is for method 'id_mapper'" in capsys.readouterr().err
    assert eval_cli.main(["--table", "g2g_swap", "--runs", str(tmp_path / "none")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert eval_cli.main(["--runs", str(run)]) == 2
    assert "goes with --table" in capsys.readouterr().err

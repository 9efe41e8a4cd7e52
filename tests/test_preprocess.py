"""preprocess.py: presets match the originals' rules, expressions, splits, lists, dry run, errors."""
import json
import re

import numpy as np
import pytest

import preprocess
from celeba_layout import write_celeba
from core.config import load_config
from data import build_domains
from data.attributes import AttributeExpressionError, PRESETS, evaluate, parse, resolve, select
from data.cache import CachedImages
from data.celeba import CELEBA_ATTRIBUTES, read_celeba
from data.folders import DatasetLayoutError, ImageDomain, list_domain


def originals_rule(preset, row):
    """The original preprocess scripts' per-line logic (1-based attribute numbers, if/elif order)."""
    v = {k: row[k - 1] == 1 for k in range(1, 41)}
    shadow, bald, black, blond, glasses, goatee, gray = v[1], v[5], v[9], v[10], v[16], v[17], v[18]
    male, mouth, mustache, no_beard = v[21], v[22], v[23], v[25]
    receding, smiling, hat, young = v[29], v[32], v[36], v[40]
    rules = {
        "glasses": (glasses, not glasses),
        "mouth": (mouth, True),
        "smile": (smiling, True),  # 'custom' with the default attribute 32
        "facial_hair": (male and not shadow and (mustache or goatee or not no_beard), male and no_beard and not shadow),
        "female_glasses": (glasses and not male, not glasses and not male),
        "male_glasses": (glasses and male, not glasses and male),
        "blond_women": (not male and not blond and black, not male and blond and not black),
        "bald": (male and not bald and not hat and not young, male and bald and not hat and not receding and not gray),
    }
    a, b = rules[preset]
    return "A" if a else ("B" if b else None)


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba_pp")
    write_celeba(root, n=240)
    return root


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_match_the_originals(celeba, preset):
    t = read_celeba(celeba)
    a, b = select(t.attrs, t.names, PRESETS[preset].a, PRESETS[preset].b)
    want = [originals_rule(preset, row) for row in t.attrs]
    assert [("A" if x else "B" if y else None) for x, y in zip(a, b)] == want
    assert a.any() and b.any()


def test_expression_grammar():
    names = list(CELEBA_ATTRIBUTES)
    vals = np.array([[1 if (i >> k) & 1 else -1 for k in range(40)] for i in range(8)])  # bits of 0..7 in cols 0..2
    col = lambda k: (vals[:, k] == 1)  # noqa: E731
    n0, n1, n2 = names[:3]
    assert (evaluate(parse(f"{n0} | {n1} & ~{n2}", names), vals) == (col(0) | (col(1) & ~col(2)))).all()
    assert (evaluate(parse(f"({n0} | {n1}) & ~{n2}", names), vals) == ((col(0) | col(1)) & ~col(2))).all()
    assert (evaluate(parse(f"~~{n0}", names), vals) == col(0)).all()
    with pytest.raises(AttributeExpressionError, match="did you mean 'Eyeglasses'"):
        parse("eyeglasses & Male", names)
    with pytest.raises(AttributeExpressionError, match="did you mean 'Smiling'"):
        parse("Male & Smilling", names)
    with pytest.raises(AttributeExpressionError, match="at the end of 'Male &'"):
        parse("Male &", names)
    with pytest.raises(AttributeExpressionError, match="column 6 of 'Male | & Young'"):
        parse("Male | & Young", names)
    with pytest.raises(AttributeExpressionError, match="expected '\\)'"):
        parse("(Male | Young", names)
    with pytest.raises(AttributeExpressionError, match="unexpected character '='"):
        parse("Male = 1", names)
    assert resolve("beard") == resolve("facial_hair") and resolve("Smiling")[1] == "~(Smiling)"
    with pytest.raises(AttributeExpressionError, match="defines domain B"):
        resolve("glasses", "Male")


def run(capsys, *argv):
    code = preprocess.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dry_run_prints_counts_and_writes_nothing(celeba, tmp_path, capsys):
    code, out, _ = run(capsys, "--celeba", celeba, "--preset", "glasses", "--num-test", "3", "--dry-run",
                       "--out", tmp_path / "o")
    t = read_celeba(celeba)
    n_a = int((t.attrs[:, CELEBA_ATTRIBUTES.index("Eyeglasses")] == 1).sum())
    assert code == 0 and f"A {n_a - 3:>13} {'-':>8} {3:>8} {n_a:>8}" in out
    assert not (tmp_path / "o").exists()
    code, out, _ = run(capsys, "--celeba", celeba, "--attributes", "Eyeglasses & ~Male", "--split", "official",
                       "--dry-run")
    assert code == 0 and "val" in out and "custom: A = Eyeglasses & ~Male | B = ~(Eyeglasses & ~Male)" in out


def test_lists_cache_and_training_config(celeba, tmp_path, capsys):
    out_dir = tmp_path / "glasses"
    code, out, err = run(capsys, "--celeba", celeba, "--preset", "glasses", "--out", out_dir, "--size", "32",
                         "--crop", "178", "--num-test", "4", "--workers", "0")
    assert code == 0, err
    t = read_celeba(celeba)
    a_names = [f for f, v in zip(t.files, t.attrs[:, CELEBA_ATTRIBUTES.index("Eyeglasses")]) if v == 1]
    assert [p.name for p in list_domain(out_dir, "testA")] == a_names[:4]
    assert [p.name for p in list_domain(out_dir, "trainA")] == a_names[4:]
    assert not (out_dir / "valA.txt").exists()
    info = json.loads((out_dir / "preprocess.json").read_text())
    assert info["A"] == "Eyeglasses" and info["counts"]["testB"] == 4
    assert sorted(p.name for p in (out_dir / "cache").glob("*.u8")) == [
        f"{d}_32_178.u8" for d in ("testA", "testB", "trainA", "trainB")]

    cfg = load_config("configs/celeba_glasses.yaml", [f"data.root={out_dir}", "data.size=32"])
    doms = build_domains(cfg.data, "train")
    assert isinstance(doms["a"], CachedImages) and len(doms["a"]) == len(a_names) - 4
    decoded = ImageDomain(list_domain(out_dir, "trainA"), 32, 178)
    for item in (0, (1, True)):
        assert (doms["a"][item]["image"] == decoded[item]["image"]).all()
    code, out, _ = run(capsys, "--celeba", celeba, "--preset", "glasses", "--out", out_dir, "--size", "32",
                       "--num-test", "4", "--workers", "0")
    assert out.count("up to date") == 4
    # a config at another size falls back to decoding (and says nothing is wrong)
    cfg = load_config("configs/celeba_glasses.yaml", [f"data.root={out_dir}", "data.size=64"])
    assert isinstance(build_domains(cfg.data, "test")["a"], ImageDomain)


@pytest.mark.parametrize("argv, message", [
    (["--attributes", "Eyeglases"], "unknown attribute 'Eyeglases'.*did you mean 'Eyeglasses'"),
    (["--attributes", "Bald & ~Bald"], r"domain A \(Bald & ~Bald\) selects no images"),
    (["--attributes", "Male", "--attributes-b", "Male & Smiling"], "overlap on .* images"),
    (["--preset", "sunglasses"], "unknown preset 'sunglasses'"),
    (["--preset", "glases"], "unknown preset 'glases'; did you mean 'glasses'"),
    (["--attributes", "facial_hiar"], "unknown attribute 'facial_hiar'.*did you mean the preset 'facial_hair'"),
    (["--preset", "glasses", "--attributes", "Male"], "not both"),
    (["--num-test", "100000"], "too few to hold out 100000"),
])
def test_bad_selections(celeba, capsys, argv, message):
    code, _, err = run(capsys, "--celeba", celeba, "--dry-run", *argv)
    assert code == 2 and re.search(message, err), err


def test_string_int_options_are_integers(celeba, capsys):
    with pytest.raises(SystemExit):
        preprocess.main(["--celeba", str(celeba), "--num-test", "ten", "--dry-run"])
    assert "invalid int value" in capsys.readouterr().err


def test_custom_folders(tmp_path, capsys):
    from PIL import Image
    src = tmp_path / "src"
    for d in ("trainA", "trainB", "testA"):
        (src / d).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 50), (i * 40, 10, 200)).save(src / d / f"{i}.png")
    code, _, err = run(capsys, "--folders", src, "--out", tmp_path / "out", "--size", "16")
    assert code == 2 and "neither a folder testB/" in err
    (src / "testB").mkdir()
    code, _, err = run(capsys, "--folders", src, "--out", tmp_path / "out", "--size", "16")
    assert code == 2 and "domain testB is empty" in err
    Image.new("RGB", (40, 50)).save(src / "testB" / "x.jpg")
    code, out, err = run(capsys, "--folders", src, "--out", tmp_path / "out", "--size", "16", "--workers", "0")
    assert code == 0, err
    assert (tmp_path / "out" / "cache" / "trainA_16_full.json").is_file()
    cfg = load_config("configs/celeba_glasses.yaml", [f"data.root={tmp_path / 'out'}", "data.size=16",
                                                      "data.crop=null", "data.cache=require"])
    assert isinstance(build_domains(cfg.data, "test")["b"], CachedImages)
    code, _, err = run(capsys, "--folders", src, "--preset", "glasses", "--dry-run")
    assert code == 2 and "--celeba only" in err


def test_missing_celeba_folder(tmp_path, capsys):
    code, _, err = run(capsys, "--celeba", tmp_path / "nope", "--dry-run")
    assert code == 2 and "does not exist" in err
    with pytest.raises(DatasetLayoutError):
        read_celeba(tmp_path)

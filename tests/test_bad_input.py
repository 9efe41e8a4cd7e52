"""Bad input through the real command lines: one ``error:`` line naming the file (and line, for text files),
a non-zero exit status, no traceback, nothing left behind that a later run would trust.

Every command line runs as its own process (``tests/cli_runner.py``: one subprocess imports torch once and
forks a fresh process per command line), so this is what a user sees in a terminal.
"""
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_runner import ROOT, run_clis
from core import checkpoint as ckpt
from data.celeba import CELEBA_ATTRIBUTES

CORRUPT = "truncated or corrupt (not a complete torch / pickle file)"
DOWNLOAD, COPY = f"{CORRUPT}: download it again", f"{CORRUPT}: copy it again from the run folder that wrote it"
TORCH_INTERNALS = ("miniz", "PytorchStreamReader", "Errno 22", "invalid load key", "weights_only", "Ran out of input")
TINY = ["data.size=32", "data.batch_size=2", "model.width=0.25", "model.sep=8", "train.steps=1", "train.grid_size=2"]
SYNTH = ROOT / "configs" / "synth_glasses.yaml"


def make_inputs(tmp):
    rng = np.random.default_rng(0)
    p = {"tmp": tmp, "faces": tmp / "faces", "runs": tmp / "runs", "cache_dir": tmp / "cache" / "synthetic"}
    for d in ("trainA", "trainB", "testA", "testB"):
        (p["faces"] / d).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p["faces"] / d / f"{i}.png")
    p["corrupt"] = p["faces"] / "trainA" / "1.png"
    p["corrupt"].write_bytes(p["corrupt"].read_bytes()[:60])  # a truncated PNG, met by a DataLoader worker
    p["latin1_yaml"] = tmp / "latin1.yaml"
    p["latin1_yaml"].write_bytes(b"method: content_ae\n# caf\xe9 au lait\ntrain:\n  steps: 1\n")
    p["a_file"] = tmp / "a_file"
    p["a_file"].write_text("not a folder\n")
    p["lists"] = tmp / "lists"
    p["lists"].mkdir()
    (p["lists"] / "trainA.txt").write_bytes(f"{p['faces'] / 'trainA' / '0.png'}\n/data/caf\xe9.png\n".encode("latin-1"))
    p["celeba"] = tmp / "celeba"
    (p["celeba"] / "img_align_celeba").mkdir(parents=True)
    row = " ".join(["-1"] * len(CELEBA_ATTRIBUTES))
    (p["celeba"] / "list_attr_celeba.txt").write_bytes(
        f"1\n{' '.join(CELEBA_ATTRIBUTES)}\n000001.jpg {row} \xe9\n".encode("latin-1"))
    p["not_ckpt"] = tmp / "not_a_checkpoint.pt"
    p["not_ckpt"].write_bytes(b"PK\x03\x04 this is not a checkpoint")
    # a weights file and one of our checkpoints, each cut in half (an interrupted download or copy)
    torch.save({"layer.weight": torch.randn(64, 64), "layer.bias": torch.randn(64)}, tmp / "weights.pth")
    ckpt.save_atomic({"format": ckpt.FORMAT, "method": "content_ae", "step": 1,
                      "nets": {"layer.weight": torch.randn(64, 64)}}, tmp / "checkpoint.pt")
    for name in ("weights.pth", "checkpoint.pt"):
        data = (tmp / name).read_bytes()
        p[f"half_{name}"] = tmp / f"half_{name}"
        p[f"half_{name}"].write_bytes(data[:len(data) // 2])
    return p


def cases_for(p):
    """``name -> (script, argv, exit status, texts the error line must contain)``."""
    faces, runs, t = p["faces"], p["runs"], p["tmp"]
    train = ["--config", SYNTH, f"run.dir={runs}", f"data.cache_dir={p['cache_dir']}", *TINY]
    weights, half_ckpt = p["half_weights.pth"], p["half_checkpoint.pt"]

    def with_weights(config, *argv):
        return ["--config", ROOT / "configs" / config, f"run.dir={runs}", f"data.cache_dir={p['cache_dir']}", *argv]
    return {
        "train: corrupt image in a DataLoader worker": (
            "train.py", [*train, "run.name=corrupt", "data.name=folders", f"data.root={faces}", "data.workers=1"],
            1, [f"cannot read image {p['corrupt']}"]),
        "train: config file not UTF-8": (
            "train.py", ["--config", p["latin1_yaml"]], 2, [f"{p['latin1_yaml']}:2: not UTF-8 text"]),
        "train: run.dir is a file": (
            "train.py", [*train, f"run.dir={p['a_file']}", "run.name=x"], 1,
            [str(p["a_file"] / "x"), "Not a directory"]),
        "train: data.cache value": (
            "train.py", [*train, "data.cache=maybe"], 2, ["'data.cache'", "auto | build | require | off"]),
        "preprocess: --out is a file": (
            "preprocess.py", ["--folders", faces, "--out", p["a_file"]], 2,
            [f"--out {p['a_file']} exists and is not a folder"]),
        "preprocess: --out not writable": (
            "preprocess.py", ["--folders", faces, "--out", "/sys/facedis-bad-input/out", "--no-cache"], 2,
            ["/sys/facedis-bad-input"]),
        "preprocess --align: --out is --images": (
            "preprocess.py", ["--align", "celeba", "--images", faces / "testA", "--out", faces / "testA"], 2,
            [f"--out {faces / 'testA'} is the --images folder", f"--out {faces / 'testA' / 'aligned'}"]),
        "preprocess --align: --images inside --out": (
            "preprocess.py", ["--align", "ffhq", "--images", faces / "testA", "--out", faces], 2,
            [f"--images {faces / 'testA'} is inside --out {faces}"]),
        "preprocess: list file not UTF-8": (
            "preprocess.py", ["--folders", p["lists"], "--dry-run"], 2,
            [f"{p['lists'] / 'trainA.txt'}:2: not UTF-8 text"]),
        "preprocess: annotation file not UTF-8": (
            "preprocess.py", ["--celeba", p["celeba"], "--dry-run"], 2,
            [f"{p['celeba'] / 'list_attr_celeba.txt'}:3: not UTF-8 text"]),
        "preprocess: misspelt preset": (
            "preprocess.py", ["--celeba", p["celeba"], "--preset", "glases", "--dry-run"], 2,
            ["unknown preset 'glases'", "did you mean 'glasses'"]),
        "eval: not a checkpoint": (
            "eval.py", ["--checkpoint", p["not_ckpt"]], 2, [f"{p['not_ckpt']} (29 bytes) should hold a training "
                                                            "checkpoint", COPY]),
        "eval: truncated checkpoint": (
            "eval.py", ["--checkpoint", half_ckpt], 2, [f"{half_ckpt} (", "should hold a training checkpoint", COPY]),
        "train: truncated --resume checkpoint": (
            "train.py", [*train, "run.name=resume", "--resume", half_ckpt], 1,
            [f"{half_ckpt} (", "should hold a training checkpoint", COPY]),
        "train: truncated --init checkpoint": (
            "train.py", [*train, "run.name=init", "--init", half_ckpt], 1,
            [f"{half_ckpt} (", "should hold a training checkpoint", COPY]),
        "train: truncated --weights class (g2g, VGGFace2 ResNet-50)": (
            "train.py", with_weights("g2g_synth.yaml", "--weights", f"class={weights}",
                                     "model.class_encoder=resnet50_vggface2"), 1,
            [f"{weights} (", "should hold VGGFace2 resnet50_ft weights", DOWNLOAD]),
        "train: truncated --weights generator (id_mapper, StyleGAN2)": (
            "train.py", with_weights("id_synth.yaml", "--weights", f"generator={weights}"), 1,
            [f"{weights} (", "should hold a StyleGAN2 generator", DOWNLOAD]),
        "train: truncated --weights resnet18 (mad, ImageNet ResNet-18)": (
            "train.py", with_weights("mad_synth_ae.yaml", "--weights", f"resnet18={weights}", "model.encoder=resnet18"),
            1, [f"{weights} (", "should hold ResNet-18 weights", DOWNLOAD]),
        "scripts/benchmark.py": (
            "scripts/benchmark.py", ["synth_glasses", "--out", t / "weights"], 2,
            ["--out keeps the files of --random-weights"]),
        "scripts/benchmark_loader.py": (
            "scripts/benchmark_loader.py", ["--dir", p["a_file"], "--count", "2"], 2, [str(p["a_file"] / "jpg")]),
        "scripts/benchmark_synthetic.py": (
            "scripts/benchmark_synthetic.py", ["--count", "0"], 2, ["--count must be positive"]),
        "scripts/convert_mbu_checkpoint.py": (
            "scripts/convert_mbu_checkpoint.py", [weights, t / "converted.pt"], 2,
            [f"{weights} (", "should hold a checkpoint of the original mask-based code", DOWNLOAD]),
        "scripts/generate_w_dataset.py": (
            "scripts/generate_w_dataset.py", ["--generator", weights, "--out", t / "w_out", "--count", "2",
                                              "--device", "cpu"], 1, [f"{weights} (", "StyleGAN2 generator", DOWNLOAD]),
        "infer.py identity_swap": (
            "infer.py", ["identity_swap", "--checkpoint", p["not_ckpt"], "--identity", faces / "testA",
                         "--attributes", faces / "testB", "--out", t / "swap"], 2, [str(p["not_ckpt"]), COPY]),
        "infer.py remove": (
            "infer.py", ["remove", "--checkpoint", half_ckpt, "--images", faces / "testA", "--out",
                         t / "removed"], 2, [f"{half_ckpt} (", COPY]),
        "infer.py remove: --out is --images (refused before the checkpoint is read)": (
            "infer.py", ["remove", "--checkpoint", half_ckpt, "--images", faces / "testA", "--out", faces / "testA"],
            2, [f"--out {faces / 'testA'} is the --images folder", f"--out {faces / 'testA' / 'results'}"]),
    }


NAMES = list(cases_for(defaultdict(lambda: Path("/placeholder"))))  # the case names, for parametrize


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_input")
    p = make_inputs(tmp)
    cases = cases_for(p)
    got = run_clis([(script, argv) for script, argv, _, _ in cases.values()], tmp / "logs", cwd=tmp)
    return p, {name: (r, *case[2:]) for (name, case), r in zip(cases.items(), got)}


@pytest.mark.parametrize("name", NAMES)
def test_one_error_line(results, name):
    r, code, texts = results[1][name]
    assert "Traceback" not in r.err, r.err[-3000:]
    assert not any(t in r.err for t in TORCH_INTERNALS), r.err[-3000:]
    assert r.code == code and len(r.error_lines) == 1, (r.code, r.err[-3000:])
    assert all(t in r.error_lines[0] for t in texts), r.error_lines[0]


def test_nothing_left_that_a_later_run_would_trust(results):
    p, _ = results
    assert not (p["runs"] / "corrupt").exists()  # the failed first attempt's run folder is gone
    assert p["runs"].is_dir() and not list(p["runs"].iterdir())
    for left in ("converted.pt", "w_out", "swap", "removed", "compare/comparison.md"):
        assert not (p["tmp"] / left).exists(), left
    assert p["a_file"].read_text() == "not a folder\n"
    assert sorted(f.name for f in (p["faces"] / "testA").iterdir()) == ["0.png", "1.png"]  # --align, infer.py: nothing


# --- classes a subprocess cannot set up here (root reads any file) or that no command line reaches --------
def deny(path, monkeypatch, request):
    """Make ``path`` unreadable: chmod for a normal user; for root (who reads anything) the OS call raises
    the PermissionError the OS would raise."""
    import os
    import pathlib

    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0)
        request.addfinalizer(lambda: path.chmod(mode))
        return
    denied = str(path)

    def fail(p):
        raise PermissionError(13, "Permission denied", str(p))

    scandir, read_bytes = os.scandir, pathlib.Path.read_bytes
    monkeypatch.setattr(os, "scandir", lambda p=".": fail(p) if str(p) == denied else scandir(p))
    monkeypatch.setattr(pathlib.Path, "read_bytes",
                        lambda self: fail(self) if str(self) == denied else read_bytes(self))


@pytest.mark.parametrize("what", ["image folder", "annotation file", "domain folder"])
def test_unreadable_files_and_folders_are_named(tmp_path, capsys, monkeypatch, request, what):
    import preprocess

    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    Image.new("RGB", (178, 218)).save(root / "img_align_celeba" / "000001.jpg")
    (root / "list_attr_celeba.txt").write_text(f"1\n{' '.join(CELEBA_ATTRIBUTES)}\n000001.jpg "
                                               + " ".join(["1"] * len(CELEBA_ATTRIBUTES)) + "\n")
    for d in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / "faces" / d).mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(tmp_path / "faces" / d / "0.png")
    target = {"image folder": root / "img_align_celeba", "annotation file": root / "list_attr_celeba.txt",
              "domain folder": tmp_path / "faces" / "testA"}[what]
    deny(target, monkeypatch, request)
    src = ["--folders", tmp_path / "faces"] if what == "domain folder" else ["--celeba", root]
    code = preprocess.main([str(a) for a in src] + ["--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {target}: Permission denied\n", err


def test_corrupt_first_ffhq_image_is_named(tmp_path):
    """FFHQ reads the first image's size for its landmarks: a corrupt file there is named."""
    from data.ffhq import FFHQ
    from data.folders import DatasetLayoutError

    for n in (0, 1):
        Image.new("RGB", (64, 64)).save(tmp_path / f"{n:05d}.png")
    (tmp_path / "00000.png").write_bytes(b"\x89PNG garbage")
    meta = {str(n): {"category": "training", "image": {"face_landmarks": [[1.0, 2.0]] * 68, "pixel_size": [1024]}}
            for n in (0, 1)}
    (tmp_path / "ffhq-dataset-v2.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetLayoutError, match=r"cannot read image .*00000.png"):
        FFHQ(tmp_path)


def test_latin1_csv_names_file_and_line(tmp_path):
    from data.folders import DatasetLayoutError
    from data.vggface2 import read_identity_meta

    text = 'Class_ID, Name, Sample_Num, Flag, Gender\nn000001, "A", 1, 1, m\nn000002, "Jos\xe9", 1, 1, m\n'
    (tmp_path / "identity_meta.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(DatasetLayoutError, match=r"identity_meta.csv:3: not UTF-8 text \(byte 0xe9"):
        read_identity_meta(tmp_path / "identity_meta.csv")


def test_worker_messages_become_one_line():
    """torch re-raises a DataLoader worker's exception with the worker's traceback in the message."""
    from core.cli import one_line
    from data.folders import DatasetLayoutError

    wrapped = DatasetLayoutError("Caught DatasetLayoutError in DataLoader worker process 0.\nOriginal Traceback "
                                 "(most recent call last):\n  File \"x.py\", line 3, in f\n    raise ...\n"
                                 "data.folders.DatasetLayoutError: cannot read image /d/1.png: truncated\n")
    assert one_line(wrapped) == "cannot read image /d/1.png: truncated"
    assert one_line(FileNotFoundError(2, "No such file or directory", "/d/x.txt")) == "/d/x.txt: No such file or directory"

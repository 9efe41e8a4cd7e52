"""infer.py never overwrites: not an input, not another result of the run, not a file that was there before
unless --force; --out equal to an input folder is refused. Every refusal is one ``error:`` line before the
checkpoint is loaded, and leaves every file byte-identical.

Every subcommand runs in-process on a stand-in method (what it computes does not matter here); the last test
runs the real command line on a real (untrained) checkpoint.
"""
import contextlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import infer
import models
from cli_runner import files_in, one_error, run_clis
from core import checkpoint as ckpt


class _StandIn:
    """Every task infer.py runs, computed from the images without networks."""
    tasks = ("identity_swap", "content_transfer", "factor_encoding")
    image_size, device = 16, torch.device("cpu")

    def __init__(self):
        self.cfg = SimpleNamespace(method="stand_in", data=SimpleNamespace(crop=None, resize_filter="bilinear"),
                                   eval=SimpleNamespace(batch_size=2, use_ema=False))

    @contextlib.contextmanager
    def inference(self, use_ema):
        yield self

    def swap(self, ids, attrs):
        return (ids + attrs) / 2

    def transfer(self, targets, sources):
        return (targets + sources) / 2

    def remove(self, x):
        return -x

    def masks(self, x, y):
        return (x[:, :1] > 0).float()

    def encode(self, x):
        return {"mean": x.mean((2, 3)), "corner": x[:, :, 0, 0]}

    def identity_code(self, x):
        return x.flatten(1)[:, :8]

    def attribute_code(self, x):
        return x.flatten(1)[:, 8:16]

    def generate(self, z_id, z_attr):
        return torch.tanh(z_id + z_attr).view(-1, 1, 2, 4).repeat(1, 3, 8, 4), None


@pytest.fixture
def loads(monkeypatch):
    """Stand in for load_method; the list holds one entry per checkpoint loaded."""
    loaded = []

    def load_method(checkpoint, overrides):
        loaded.append(checkpoint)
        method = _StandIn()
        return method, method.cfg, None

    monkeypatch.setattr(models, "load_method", load_method)
    return loaded


def _faces(folder: Path, names, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / n)


def _inputs(tmp):
    """Input folders of every subcommand: option -> folder."""
    _faces(tmp / "ids", ["a.png", "b.jpg"], 0)
    _faces(tmp / "attrs", ["a.png", "x.png", "y.jpg"], 1)
    _faces(tmp / "photos", ["p.png", "trip/q.jpg"], 2)
    _faces(tmp / "interp", ["two_ids/id0.png", "two_ids/id1.png", "two_ids/attr.png",
                            "both/id0.png", "both/id1.png", "both/attr0.png", "both/attr1.png"], 3)
    return {"identity": tmp / "ids", "attributes": tmp / "attrs", "targets": tmp / "ids", "sources": tmp / "attrs",
            "images": tmp / "photos", "input": tmp / "interp"}


INPUTS = {"identity_swap": ("identity", "attributes"), "content_transfer": ("targets", "sources"),
          "remove": ("images",), "encode": ("images",), "interpolate": ("input",)}
RESULTS = {  # subcommand -> what it writes
    "identity_swap": ["a__a.png", "a__x.png", "a__y.png", "b__a.png", "b__x.png", "b__y.png", "grid.png"],
    "identity_swap --pairs": ["a.png"],
    "content_transfer": ["a__a.png", "a__b.png", "grid.png", "x__a.png", "x__b.png", "y__a.png", "y__b.png"],
    "remove": ["p.png", "trip/q.png"],
    "encode": ["codes.npz", "files.txt"],
    "interpolate": ["both.png", "two_ids.png"],
}


def _argv(command: str, folders, out) -> list[str]:
    mode, *extra = command.split()
    return [mode, "--checkpoint", "run.pt", "--out", str(out), *extra,
            *(a for opt in INPUTS[mode] for a in (f"--{opt}", str(folders[opt])))]


@pytest.mark.parametrize("command", list(RESULTS))
def test_a_rerun_is_refused_and_force_replaces(tmp_path, loads, capsys, command):
    folders, out = _inputs(tmp_path), tmp_path / "out"
    argv = _argv(command, folders, out)
    assert infer.main(argv) == 0, capsys.readouterr().err
    assert sorted(files_in(out)) == RESULTS[command] and len(loads) == 1
    before = files_in(tmp_path)
    n = len(RESULTS[command])
    assert infer.main(argv) == 2
    err = one_error(capsys)
    assert err.startswith(f"error: --out {out} already holds {n} file{'s' if n > 1 else ''} this run would write "
                          f"({', '.join(RESULTS[command][:3])}"), err
    assert "add --force" in err and files_in(tmp_path) == before and len(loads) == 1  # before the checkpoint
    assert infer.main(argv + ["--force"]) == 0
    after = files_in(tmp_path)
    assert sorted(after) == sorted(before)
    assert all(after[k] == before[k] for k in before if not k.startswith("out/"))  # the inputs: untouched
    assert all(after[k][1] >= before[k][1] for k in after)


@pytest.mark.parametrize("option", ["identity", "attributes", "targets", "sources", "images", "input"])
def test_out_that_is_an_input_folder_is_refused(tmp_path, loads, capsys, option):
    folders = _inputs(tmp_path)
    mode = next(m for m, opts in INPUTS.items() if option in opts)
    before = files_in(tmp_path)
    assert infer.main(_argv(mode, folders, folders[option])) == 2
    out = folders[option]
    assert one_error(capsys) == (f"error: --out {out} is the --{option} folder: the results would be written "
                                 f"among the input images; give another folder, e.g. --out {out / 'results'}")
    assert files_in(tmp_path) == before and not loads


def test_inputs_that_share_a_name_keep_their_extension_in_their_results(tmp_path, loads, capsys):
    _faces(tmp_path / "photos", ["a.jpg", "a.png", "trip/a.jpg"], 0)
    _faces(tmp_path / "attrs", ["x.png"], 1)
    photos, attrs = tmp_path / "photos", tmp_path / "attrs"
    assert infer.main(["remove", "--checkpoint", "run.pt", "--images", str(photos), "--out", str(tmp_path / "r")]) == 0
    assert sorted(files_in(tmp_path / "r")) == ["a_jpg.png", "a_png.png", "trip/a.png"]
    got = {n: np.asarray(Image.open(tmp_path / "r" / n)) for n in ("a_jpg.png", "a_png.png")}
    assert not np.array_equal(got["a_jpg.png"], got["a_png.png"])  # each its own photo's
    assert f"{photos / 'a.jpg'}: results named a_jpg (name shared with a.png)" in capsys.readouterr().out
    assert infer.main(["identity_swap", "--checkpoint", "run.pt", "--identity", str(photos), "--attributes",
                       str(attrs), "--out", str(tmp_path / "s")]) == 0
    assert sorted(files_in(tmp_path / "s")) == ["a_jpg__x.png", "a_png__x.png", "grid.png"]


@pytest.mark.parametrize("case", ["--pairs", "__"])
def test_results_that_would_still_share_a_name_are_refused(tmp_path, loads, capsys, case):
    ids, attrs = tmp_path / "ids", tmp_path / "attrs"
    if case == "--pairs":  # a.jpg and a.png are both paired with a.png
        _faces(ids, ["a.jpg", "a.png"], 0)
        _faces(attrs, ["a.png"], 1)
        name, first, second = "a.png", f"{ids / 'a.jpg'} + {attrs / 'a.png'}", f"{ids / 'a.png'} + {attrs / 'a.png'}"
    else:  # a__b with c and a with b__c
        _faces(ids, ["a__b.png", "a.png"], 0)
        _faces(attrs, ["c.png", "b__c.png"], 1)
        name = "a__b__c.png"
        first, second = f"{ids / 'a.png'} + {attrs / 'b__c.png'}", f"{ids / 'a__b.png'} + {attrs / 'c.png'}"
    before = files_in(tmp_path)
    out = tmp_path / "out"
    assert infer.main(["identity_swap", "--checkpoint", "run.pt", "--identity", str(ids), "--attributes",
                       str(attrs), "--out", str(out), *([case] if case == "--pairs" else [])]) == 2
    assert one_error(capsys) == f"error: the results of {first} and of {second} would both be {out / name}: rename one"
    assert files_in(tmp_path) == before and not loads


def test_out_inside_an_input_folder_is_not_read_and_no_result_replaces_an_input(tmp_path, loads, capsys):
    photos = tmp_path / "photos"
    _faces(photos, ["a.png", "results/old.png"], 0)
    # --out inside --images: what is in it is not read as input (a second run reads what the first read)
    argv = ["remove", "--checkpoint", "run.pt", "--images", str(photos), "--out", str(photos / "results")]
    assert infer.main(argv) == 0 and sorted(files_in(photos / "results")) == ["a.png", "old.png"]
    before = files_in(tmp_path)
    assert infer.main(argv + ["--force"]) == 0
    assert sorted(files_in(tmp_path)) == sorted(before) and files_in(tmp_path)["photos/results/old.png"] == before[
        "photos/results/old.png"]
    # --images inside --out: out/photos/photos/b.png would become out/photos/b.png, an input: refused, even with --force
    _faces(tmp_path / "out" / "photos", ["b.png", "photos/b.png"], 1)
    before = files_in(tmp_path)
    capsys.readouterr()
    argv = ["remove", "--checkpoint", "run.pt", "--images", str(tmp_path / "out" / "photos"), "--out",
            str(tmp_path / "out"), "--force"]
    assert infer.main(argv) == 2
    assert one_error(capsys) == (f"error: --out {tmp_path / 'out'}: the result photos/b.png would replace the input "
                                 f"{tmp_path / 'out' / 'photos' / 'b.png'}; give another --out")
    assert files_in(tmp_path) == before and len(loads) == 2


def test_the_command_line_on_a_real_checkpoint(tmp_path):
    """``python infer.py remove`` with a mask_ct checkpoint: a rerun and --out == --images are one error line each,
    every file stays byte-identical; --force replaces the results."""
    from core.config import load_config
    from models import METHODS, build_method

    config, overrides = METHODS["mask_ct"].tiny(tmp_path)
    cfg = load_config(Path(infer.__file__).parent / config, overrides)
    method = build_method(cfg, torch.device("cpu"))
    run = ckpt.save_atomic({"format": ckpt.FORMAT, "method": "mask_ct", "config": cfg.to_dict(), "step": 0,
                            **method.training_state()}, tmp_path / "run" / ckpt.LATEST)
    photos, out = tmp_path / "photos", tmp_path / "removed"
    _faces(photos, ["a.png", "b.jpg"], 0)
    remove = ["remove", "--checkpoint", run, "--images", photos, "--out"]
    first, = run_clis([("infer.py", [*remove, out])], tmp_path / "logs1")
    assert first.code == 0, first.err[-3000:]
    assert sorted(files_in(out)) == ["a.png", "b.png"]
    before = {k: v for k, v in files_in(tmp_path).items() if not k.startswith("logs")}
    again, same = run_clis([("infer.py", [*remove, out]), ("infer.py", [*remove, photos])], tmp_path / "logs2")
    for r in (again, same):
        assert r.code == 2 and len(r.error_lines) == 1 and "Traceback" not in r.err, r.err[-3000:]
    assert again.error_lines[0] == (f"error: --out {out} already holds 2 files this run would write (a.png, b.png): "
                                    "add --force to overwrite them, or give another --out")
    assert same.error_lines[0].startswith(f"error: --out {photos} is the --images folder") and \
        f"e.g. --out {photos / 'results'}" in same.error_lines[0]
    assert {k: v for k, v in files_in(tmp_path).items() if not k.startswith("logs")} == before
    forced, = run_clis([("infer.py", [*remove, out, "--force"])], tmp_path / "logs3")
    assert forced.code == 0, forced.err[-3000:]
    after = files_in(out)
    assert sorted(after) == ["a.png", "b.png"] and all(after[k][1] >= before[f"removed/{k}"][1] for k in after)


def test_a_file_that_appears_after_the_check_stays(tmp_path, loads, capsys, monkeypatch):
    """The check before the run misses a file (it appeared later; a case-insensitive file system): the run stops
    at it, and it stays as it was."""
    _faces(tmp_path / "photos", ["a.png", "b.png"], 0)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"not ours")
    monkeypatch.setattr(infer, "check_results", lambda *args: None)
    assert infer.main(["remove", "--checkpoint", "run.pt", "--images", str(tmp_path / "photos"), "--out",
                       str(out)]) == 1
    assert one_error(capsys) == (f"error: stopped before replacing a file: b.png exists (in --out {out}; the check "
                                 "before the run did not see it)")
    assert (out / "b.png").read_bytes() == b"not ours" and sorted(files_in(out)) == ["a.png", "b.png"]

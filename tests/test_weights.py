"""Public weight files: one-line errors for files that are not state_dicts, numpy-array pickles, renamed keys."""
import argparse
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from models.nets.weights import check_state_dict, read_state_dict


def _one_line_error(fn, *args) -> str:
    with pytest.raises(ValueError) as err:
        fn(*args)
    text = str(err.value)
    assert "\n" not in text and "weights_only" not in text and len(text) < 400, text
    return text


def test_training_checkpoint_given_as_weights_is_one_line(tmp_path):
    """A StyleGAN2 training checkpoint (g, d, g_ema, optimizers, argparse args) where ArcFace is expected."""
    from models.nets.arcface import load_arcface

    path = tmp_path / "550000.pt"
    torch.save({"g": {"w": torch.zeros(2)}, "g_ema": {"w": torch.zeros(2)}, "g_optim": {"state": {}},
                "args": argparse.Namespace(size=256)}, path)
    text = _one_line_error(load_arcface, path)
    assert text.startswith(f"{path} is not ArcFace IR-SE50 weights") and "argparse.Namespace" in text
    torch.save({"g": {"w": torch.zeros(2)}, "g_ema": {"w": torch.zeros(2)}}, path)  # no args: a dict of dicts
    assert "it holds a dict with keys g, g_ema, not a state_dict" in _one_line_error(load_arcface, path)
    path.write_bytes(b"not a weights file")
    assert _one_line_error(read_state_dict, path, "VGG16 weights") == (
        f"{path} should hold VGG16 weights but is a text file (it starts with 'not a weights file'), "
        "not a torch / pickle file")


def test_numpy_array_pickle_is_read_and_nothing_else_is_built(tmp_path):
    arrays = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.bias": np.array([1, 2], np.int64)}
    path = tmp_path / "w.pkl"
    with open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=2)  # bytes as _codecs.encode(..., 'latin1'), as Python 2 files read
    sd = read_state_dict(path)
    assert set(sd) == set(arrays) and all(torch.equal(sd[k], torch.from_numpy(v)) for k, v in arrays.items())

    class Payload:  # would create a file if unpickled
        def __reduce__(self):
            return open, (str(tmp_path / "created"), "w")

    with open(path, "wb") as f:
        pickle.dump({"a.weight": Payload()}, f, protocol=2)
    assert "it stores Python objects (io.open)" in _one_line_error(read_state_dict, path, "weights")
    assert not (tmp_path / "created").exists()
    with open(path, "wb") as f:
        pickle.dump({"a.weight": np.array(["text"])}, f, protocol=2)  # arrays, but not numbers
    _one_line_error(read_state_dict, path, "weights")


def test_renamed_key_is_named():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    sd = dict(net.state_dict())
    sd["1.scale"] = sd.pop("1.weight")  # same shape as 1.bias / 1.running_mean: the closest name wins
    with pytest.raises(ValueError, match=r"1 renamed keys: expected 1\.weight, found 1\.scale") as err:
        check_state_dict(net.state_dict(), sd, "w.pth")
    assert "missing" not in str(err.value) and "unexpected" not in str(err.value)
    sd["0.extra"] = torch.zeros(7)  # no key of its shape is missing: plainly unexpected
    with pytest.raises(ValueError, match=r"renamed keys: expected 1\.weight, found 1\.scale; 1 unexpected keys: "
                                         r"0\.extra"):
        check_state_dict(net.state_dict(), sd, "w.pth")

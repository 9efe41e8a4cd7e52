"""Truncated or corrupt weight files and checkpoints: every loader answers with one line naming the file, its size,
the weights it expected and what to do, never torch's own text (zip reader internals, pickle opcodes).

The broken files are real files of each format cut short: ``torch.save`` (zip and the legacy format), a pickle
of numpy arrays (the VGGFace2 ``.pkl`` release) and one of our training checkpoints; plus an empty file and
random bytes.
"""
import pickle
import sys

import numpy as np
import pytest
import torch

from core import checkpoint as ckpt
from core.torch_files import torch_load

CORRUPT = "truncated or corrupt (not a complete torch / pickle file)"
DOWNLOAD = f"{CORRUPT}: download it again"
COPY = f"{CORRUPT}: copy it again from the run folder that wrote it"
TORCH_INTERNALS = ("miniz", "PytorchStreamReader", "Errno", "load key", "weights_only", "EOF", "Ran out of input",
                   "Unsupported operand", "pickle data was truncated", "unexpected EOF", "WeightsUnpickler")


def _state() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"layer.weight": torch.randn(64, 64, generator=g), "layer.bias": torch.randn(64, generator=g)}


def _half(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def write_bad_file(kind: str, path):
    """A broken file of ``kind`` at ``path``."""
    if kind == "torch zip, cut in half":
        torch.save(_state(), path)
    elif kind == "torch zip, first 64 bytes":  # a download that stopped at the start
        torch.save(_state(), path)
        path.write_bytes(path.read_bytes()[:64])
        return path
    elif kind == "torch legacy format, cut in half":
        torch.save(_state(), path, _use_new_zipfile_serialization=False)
    elif kind == "numpy-array pickle, cut in half":
        with open(path, "wb") as f:
            pickle.dump({k: v.numpy() for k, v in _state().items()}, f, protocol=2)
    elif kind == "training checkpoint, cut in half":
        ckpt.save_atomic({"format": ckpt.FORMAT, "method": "content_ae", "step": 3, "nets": _state(),
                          "config": {"method": "content_ae"}}, path)
    elif kind == "empty":
        path.write_bytes(b"")
        return path
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return path
    return _half(path)


KINDS = ["torch zip, cut in half", "torch zip, first 64 bytes", "torch legacy format, cut in half",
         "numpy-array pickle, cut in half", "training checkpoint, cut in half", "empty", "random bytes"]


def _arcface(p):
    from models.nets.arcface import load_arcface
    return load_arcface(p)


def _vggface2(p):
    from models.nets.g2g_nets import load_resnet50_vggface2
    return load_resnet50_vggface2(p)


def _vgg16(p):
    from models.nets.g2g_nets import VGG16Relu22
    return VGG16Relu22(p)


def _fid_inception(p):
    from metrics.fid import load_fid_inception
    return load_fid_inception(p)


def _inception_v3(p):
    from models.nets.id_mapper_nets import InceptionAttrEncoder
    return InceptionAttrEncoder(str(p))


def _mad_q_init(p):
    from models.mad import init_q_from_resnet18
    return init_q_from_resnet18(torch.nn.Linear(1, 1), p)


def _stylegan2(p):
    from models.nets.stylegan2 import load_generator
    return load_generator(p)


def _face_nets(p):
    from models.nets.face_small import load_face_nets
    return load_face_nets(p)


# loader -> (call, the weights the message names, its advice, the error type)
LOADERS = {
    "ArcFace IR-SE50": (_arcface, "ArcFace IR-SE50 weights (model_ir_se50.pth", DOWNLOAD, ValueError),
    "VGGFace2 ResNet-50": (_vggface2, "VGGFace2 resnet50_ft weights", DOWNLOAD, ValueError),
    "VGG16 (perceptual)": (_vgg16, "VGG16 weights (torchvision's vgg16", DOWNLOAD, ValueError),
    "FID Inception": (_fid_inception, "FID Inception weights (pt_inception-2015-12-05", DOWNLOAD, ValueError),
    "inception_v3 (attribute encoder)": (_inception_v3, "inception_v3 weights", DOWNLOAD, ValueError),
    "ResNet-18 (MAD's Q)": (_mad_q_init, "ResNet-18 weights (torchvision's ImageNet resnet18", DOWNLOAD, ValueError),
    "StyleGAN2 generator": (_stylegan2, "a StyleGAN2 generator (a rosinality stylegan2-pytorch .pt", DOWNLOAD,
                            ValueError),
    "face_nets checkpoint": (_face_nets, "a face_nets training checkpoint", COPY, ckpt.CheckpointError),
    "training checkpoint": (ckpt.load, "a training checkpoint of this project", COPY, ckpt.CheckpointError),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loader", list(LOADERS))
def test_broken_file_is_one_line_naming_file_weights_and_advice(tmp_path, loader, kind):
    call, what, advice, error = LOADERS[loader]
    path = write_bad_file(kind, tmp_path / "weights.pt")
    with pytest.raises(error) as err:
        call(path)
    text = str(err.value)
    assert text == f"{path} ({path.stat().st_size:,} bytes) should hold {text.split(' should hold ', 1)[1]}", text
    assert f"should hold {what}" in text and text.endswith(f" but is {advice}"), text
    assert "\n" not in text and not any(t in text for t in TORCH_INTERNALS), text
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no "during handling" chain either


def test_complete_files_still_load(tmp_path):
    """The same formats, whole, load as before: the helper turns only failed reads into the error above."""
    from models.nets.weights import read_state_dict

    torch.save(_state(), tmp_path / "zip.pt")
    torch.save(_state(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with open(tmp_path / "arrays.pkl", "wb") as f:
        pickle.dump({k: v.numpy() for k, v in _state().items()}, f, protocol=2)
    for name in ("zip.pt", "legacy.pt", "arrays.pkl"):
        got = read_state_dict(tmp_path / name, "test weights")
        assert all(torch.equal(got[k], v) for k, v in _state().items()), name
    path = ckpt.save_atomic({"format": ckpt.FORMAT, "nets": _state()}, tmp_path / "c.pt")
    assert torch.equal(ckpt.load(path)["nets"]["layer.bias"], _state()["layer.bias"])


def test_unopenable_file_is_the_os_error_not_corrupt(tmp_path):
    """A folder (or an unreadable file) is the OSError naming it, which the command lines report as is."""
    with pytest.raises(IsADirectoryError) as err:
        torch_load(tmp_path, "test weights", weights_only=True)
    assert err.value.filename == str(tmp_path)


def test_complete_pickle_of_a_missing_class_is_not_called_corrupt(tmp_path, monkeypatch):
    """A whole checkpoint that pickles a class this code no longer has: named, not "download it again"."""
    (tmp_path / "gone_module.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_module

    path = tmp_path / "c.pt"
    torch.save({"format": ckpt.FORMAT, "thing": gone_module.Thing()}, path)
    monkeypatch.delitem(sys.modules, "gone_module")
    (tmp_path / "gone_module.py").unlink()
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load(path)
    assert str(err.value) == (f"{path} should hold a training checkpoint of this project (train.py's "
                              "checkpoint-*.pt) but pickles objects that cannot be rebuilt here "
                              "(ModuleNotFoundError: No module named 'gone_module')")


def test_text_file_is_named_as_text(tmp_path):
    from models.nets.weights import read_state_dict

    path = tmp_path / "model_ir_se50.pth"
    path.write_text("<html><body>404 Not Found: the file you asked for has moved</body></html>\n")
    with pytest.raises(ValueError) as err:
        read_state_dict(path, "ArcFace IR-SE50 weights")
    assert str(err.value) == (f"{path} should hold ArcFace IR-SE50 weights but is a text file (it starts with "
                              "'<html><body>404 Not Found: the file y...'), not a torch / pickle file")

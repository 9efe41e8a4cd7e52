"""Reading public weight files: one reader and one strict key / shape check for every loader.

Every problem is a one-line ``ValueError`` naming the file and what it should hold. Besides ``torch.save``
files, :func:`read_state_dict` reads plain pickles of a dict of numpy arrays (the VGGFace2 ``resnet50_ft``
``.pkl`` release), through an unpickler that builds nothing but numpy arrays, dicts and strings.
"""
from __future__ import annotations

import difflib
import importlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.torch_files import torch_load, unreadable_file_error


def _is_batch_count(key: str) -> bool:
    return key.endswith("num_batches_tracked")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists and scalars only; any other global is refused."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode")}
    NUMPY = ("_reconstruct", "scalar")

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in self.NUMPY:
            return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")
                                                   if hasattr(np, "_core") else module), name)
        raise pickle.UnpicklingError(f"it pickles {module}.{name} objects")


def _read_array_pickle(path: Path, what: str) -> dict | None:
    """``{name: tensor}`` from a plain pickle of ``{name: numpy array}``; None if the file is not one, the
    one-line error of :func:`core.torch_files.unreadable_file_error` if it is a pickle cut short."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (EOFError, pickle.UnpicklingError) as e:
        # a pickle cut short: torch's weights_only reader would refuse numpy's globals before the cut and
        # blame them, so the truncation is reported here
        if isinstance(e, EOFError) or "truncated" in str(e):
            raise unreadable_file_error(path, what) from None
        return None
    except Exception:
        return None
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype.kind in "fiub" for k, v in obj.items()):
        return None
    return {k: torch.from_numpy(np.array(v)) for k, v in obj.items()}


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = list(obj)
        return f"a dict with keys {', '.join(map(str, keys[:6]))}{' ...' if len(keys) > 6 else ''}"
    return f"a {type(obj).__name__}"


def read_state_dict(path, what: str = "weights") -> dict:
    """The tensors of a weights file: a plain state_dict or one under ``state_dict``, ``module.``
    (DataParallel) prefixes stripped; or a plain pickle of numpy arrays. FileNotFoundError if absent,
    a one-line ValueError naming the file and ``what`` if it holds anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    obj = None if zipfile.is_zipfile(path) else _read_array_pickle(path, what)
    if obj is None:
        obj = torch_load(path, what, weights_only=True, objects_hint=": a training checkpoint?")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path} is not {what}: it holds {_describe(obj)}, not a state_dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _renamed(missing: list[str], unexpected: list[str], expected: dict, given: dict) -> list[tuple[str, str]]:
    """(expected, found) pairs: a missing key and the most similar unexpected key of the same shape."""
    pairs, free = [], list(unexpected)
    for k in missing:
        same = [u for u in free if tuple(given[u].shape) == tuple(expected[k].shape)]
        if same:
            best = max(same, key=lambda u: difflib.SequenceMatcher(None, k, u).ratio())
            pairs.append((k, best))
            free.remove(best)
    return pairs


def check_state_dict(expected: dict, given: dict, what: str, show: int = 5) -> None:
    """One-line ValueError naming renamed, missing and unexpected keys and shape mismatches (BN counters
    optional). A missing key with an unexpected key of its shape is reported as "expected X, found Y"."""
    missing = [k for k in expected if k not in given and not _is_batch_count(k)]
    unexpected = [k for k in given if k not in expected]
    renamed = _renamed(missing, unexpected, expected, given)
    missing = [k for k in missing if k not in {a for a, _ in renamed}]
    unexpected = [k for k in unexpected if k not in {b for _, b in renamed}]
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(given[k].shape)}"
              for k in expected if k in given and tuple(expected[k].shape) != tuple(given[k].shape)]
    problems = []
    for label, items in (("renamed keys", [f"expected {a}, found {b}" for a, b in renamed]),
                         ("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - show} more)" if len(items) > show else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:show])}{more}")
    if problems:
        raise ValueError(f"{what} does not match the expected network: " + "; ".join(problems))


def load_checked(net: nn.Module, state: dict, what: str) -> nn.Module:
    """``state`` into ``net`` after :func:`check_state_dict` (BatchNorm batch counters may be absent)."""
    check_state_dict(net.state_dict(), state, what)
    net.load_state_dict(state, strict=False)
    return net


def read_resnet18(path) -> dict:
    """A torchvision ImageNet ``resnet18-*.pth`` state_dict, checked by name and shape against torchvision's
    ResNet-18 (ValueError naming what differs, e.g. for another network's file)."""
    from torchvision.models import resnet18

    state = read_state_dict(path, "ResNet-18 weights (torchvision's ImageNet resnet18-*.pth)")
    with torch.device("meta"):  # shapes only, no memory
        expected = resnet18(weights=None).state_dict()
    check_state_dict(expected, state, f"{path} (expected torchvision's resnet18 state_dict)")
    return state


def load_matching(net: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    """Copy the tensors of ``state`` whose name and shape match ``net``'s, leave the rest of ``net`` as it is (a
    non-strict load that also skips shape mismatches). Returns (names loaded, names of ``net`` left)."""
    own = net.state_dict()
    loaded = [k for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)]
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(state[k])
    return loaded, [k for k in own if k not in set(loaded)]

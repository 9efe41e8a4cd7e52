"""Reading public weight files: one reader and one strict key / shape check for every loader."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _is_batch_count(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def read_state_dict(path, what: str = "weights") -> dict:
    """The tensors of a weights file: a plain state_dict or one under ``state_dict``, ``module.``
    (DataParallel) prefixes stripped. FileNotFoundError if absent, ValueError if it holds anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read {what} {path} ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state_dict of tensors (got {type(obj).__name__})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def check_state_dict(expected: dict, given: dict, what: str, show: int = 5) -> None:
    """ValueError naming the first missing / unexpected keys and shape mismatches (BN counters optional)."""
    missing = [k for k in expected if k not in given and not _is_batch_count(k)]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(given[k].shape)}"
              for k in expected if k in given and tuple(expected[k].shape) != tuple(given[k].shape)]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
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

    state = read_state_dict(path, "ResNet-18 weights")
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

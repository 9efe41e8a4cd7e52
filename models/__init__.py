"""Method registry: config name -> class. Imports stay explicit so the list reads at a glance."""
from models.content_ae import ContentAE
from models.face_nets import FaceNets
from models.g2g import G2G
from models.id_mapper import IdMapper
from models.mad import MAD
from models.mask_ct import MaskContentTransfer
from models.stylegan2 import StyleGAN2

METHODS = {
    "content_ae": ContentAE,
    "mask_ct": MaskContentTransfer,
    "stylegan2": StyleGAN2,
    "face_nets": FaceNets,
    "id_mapper": IdMapper,
    "g2g": G2G,
    "mad": MAD,
}


def weights_overrides(method: str, specs) -> list[str]:
    """``--weights [NAME=]PATH`` values -> ``key=PATH`` config overrides for ``method`` (see
    ``Method.weight_keys``); clear errors for a method without weight files, an unknown NAME or a missing file."""
    from pathlib import Path

    keys = METHODS[method].weight_keys if method in METHODS else {}
    out = []
    for spec in specs or []:
        if not keys:
            raise ValueError(f"method {method!r} reads no pretrained weight files; --weights does not apply")
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = next(iter(keys)), spec
        if name not in keys:
            raise ValueError(f"--weights {spec!r}: method {method!r} has no weight file {name!r}; "
                             f"use NAME=PATH with NAME one of {', '.join(keys)} (default {next(iter(keys))})")
        if not Path(path).is_file():
            raise ValueError(f"--weights: file not found: {path} (for {keys[name]})")
        out.append(f"{keys[name]}={path}")
    return out


def build_method(cfg, device):
    try:
        cls = METHODS[cfg.method]
    except KeyError:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}") from None
    return cls(cfg, device)


def load_method(checkpoint, overrides=(), config=None, weights=(), device=None):
    """``(method, cfg, state)`` of a trained run: the checkpoint's config (plus ``config`` / ``overrides`` /
    ``--weights`` specs on top), the method built on ``device`` (default: ``cfg.device``) with the saved weights
    (EMA copies too; use ``with method.inference(): ...`` to run them)."""
    from core import checkpoint as ckpt
    from core.config import load_config
    from core.runtime import pick_device

    state = ckpt.load(checkpoint)
    cfg = load_config(config, [*overrides, *weights_overrides(state["config"].get("method"), weights)],
                      base=state["config"])
    method = build_method(cfg, pick_device(cfg.device) if device is None else device)
    method.load_training_state(state, weights_only=True)
    return method, cfg, state

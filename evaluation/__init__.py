"""Evaluation by task. A protocol is a module with ``evaluate(method, cfg, out_dir) -> rows`` (grids and metric
rows for ``eval.py``), ``scores(method, cfg, n) -> {name: float}`` (a few headline scalars on the first ``n`` test
items, cheap enough to run during training) and ``BEST = (scalar, "min" | "max")`` (what ``checkpoint-best.pt``
follows by default). ``PROTOCOLS`` names them; a method runs the protocols of ``Method.evaluations`` (by default
its ``tasks``), so a new method that declares a task is evaluated with no new evaluation code.

Task protocols (``models/tasks.py``): ``content_transfer``, ``identity_swap``, ``factor_encoding``. A method's own
extras: ``mask_segmentation`` (method 2), ``generator_samples`` (method 3), ``generation`` (stylegan2),
``face_nets``. Pure measures (PSNR, SSIM, IoU, FID, probes, DCI, ...) live in ``metrics/``.
"""
from __future__ import annotations

import importlib

PROTOCOLS = {name: f"evaluation.{name}" for name in (
    "content_transfer", "identity_swap", "factor_encoding",
    "mask_segmentation", "generator_samples", "generation", "face_nets")}


def protocol(name: str):
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; known: {sorted(PROTOCOLS)}")
    return importlib.import_module(PROTOCOLS[name])


def evaluations(method) -> tuple[str, ...]:
    return tuple(getattr(method, "evaluations", None) or method.tasks)


def evaluate(method, cfg, out_dir, use_ema: bool = True) -> list[dict]:
    """Every protocol of ``method`` in order; their rows concatenated (grids written into ``out_dir``)."""
    names = evaluations(method)
    if not names:
        raise ValueError(f"method {cfg.method!r} declares no task or evaluation to run")
    rows = []
    with method.inference(use_ema):
        for name in names:
            rows += protocol(name).evaluate(method, cfg, out_dir)
    return rows


def best_metric(method, cfg) -> tuple[str, str]:
    """(scalar, mode) that ``checkpoint-best.pt`` follows: ``train.best_metric`` / ``train.best_mode`` if set, else
    the first protocol's ``BEST``; scalars are named ``<protocol>/<name>``."""
    name, mode = cfg.train.best_metric, cfg.train.best_mode
    if name is None:
        first = evaluations(method)[0]
        best, mode = protocol(first).BEST
        name = f"{first}/{best}"
    return name, mode


def scores(method, cfg, n: int, use_ema: bool = True) -> dict[str, float]:
    """``{protocol/name: value}``: the headline scalars of every protocol of ``method`` on ``n`` test items."""
    out = {}
    with method.inference(use_ema):
        for name in evaluations(method):
            out.update({f"{name}/{k}": float(v) for k, v in protocol(name).scores(method, cfg, n).items()})
    return out

"""Quality thresholds on metric rows (the ``metrics.json`` rows that ``eval.py`` writes).

A threshold is written ``TASK/METHOD/KEY OP REF``: the value ``KEY`` of the row with that ``task`` and
``method``, an operator (``<``, ``<=``, ``>``, ``>=``), and a number or another ``TASK/METHOD/KEY``.
``{method}`` stands for the run's method name. Example: ``swap/{method}/l1_in_mask < swap/baseline: copy
target/l1_in_mask``.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_SPLIT = re.compile(r"\s*(<=|>=|<|>)\s*")

# the quick-start goals of the content-transfer methods (1 and 2) on synthetic data
CONTENT_THRESHOLDS = (
    "transfer/{method}/l1_in_mask <= 0.30",
    "swap/{method}/l1_in_mask < swap/baseline: copy target/l1_in_mask",
    "transfer/{method}/psnr >= transfer/baseline: copy target/psnr",
    "domain probe/{method}: common code/accuracy <= 0.70",
)
DEFAULT_THRESHOLDS = {"content_ae": CONTENT_THRESHOLDS, "mask_ct": CONTENT_THRESHOLDS}


class ThresholdError(ValueError):
    """A malformed threshold, or one naming a row or key the metrics do not have."""


@dataclass(frozen=True)
class Threshold:
    text: str
    lhs: tuple
    op: str
    rhs: tuple | float

    @classmethod
    def parse(cls, text: str, method: str) -> "Threshold":
        parts = _SPLIT.split(text.strip())
        if len(parts) != 3:
            raise ThresholdError(f"threshold {text!r} is not 'TASK/METHOD/KEY OP VALUE|TASK/METHOD/KEY'")
        lhs, op, rhs = parts
        try:
            ref = float(rhs)
        except ValueError:
            ref = _path(rhs, text, method)
        return cls(text.replace("{method}", method), _path(lhs, text, method), op, ref)

    def check(self, rows: list[dict]) -> dict:
        """-> {"value", "ref", "met"} for these metric rows."""
        value = _lookup(rows, self.lhs, self.text)
        ref = self.rhs if isinstance(self.rhs, float) else _lookup(rows, self.rhs, self.text)
        return {"value": value, "ref": ref, "met": bool(OPS[self.op](value, ref))}


def _path(term: str, text: str, method: str) -> tuple:
    parts = term.replace("{method}", method).split("/")
    if len(parts) != 3 or not all(parts):
        raise ThresholdError(f"{term!r} in threshold {text!r} is not TASK/METHOD/KEY")
    return tuple(parts)


def _lookup(rows: list[dict], path: tuple, text: str) -> float:
    task, method, key = path
    for r in rows:
        if r.get("task") == task and r.get("method") == method:
            if key not in r:
                raise ThresholdError(f"threshold {text!r}: row {task}/{method} has no {key!r}")
            return float(r[key])
    raise ThresholdError(f"threshold {text!r}: no metric row with task {task!r} and method {method!r}")


def parse_thresholds(texts, method: str) -> list[Threshold]:
    return [Threshold.parse(t, method) for t in texts]


def first_met(snapshots: list[dict], thresholds: list[Threshold]) -> dict:
    """``snapshots``: [{"step", "rows", ...}] in step order -> threshold text -> the first snapshot (the
    dict itself) whose rows meet it, or None."""
    out = {}
    for t in thresholds:
        out[t.text] = next((s for s in snapshots if t.check(s["rows"])["met"]), None)
    return out

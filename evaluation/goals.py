"""Reference goals: what "the method works on the synthetic world" means, checked on a leaderboard.

A goal compares one column of a method row with a fixed number or with ``factor * (value of a reference row) +
offset`` (a copy baseline, or the ground-truth row of the identity-swap board). ``check(board)`` returns one
entry per (method row, goal) with the value, the bar and whether it is met; ``render_markdown`` writes them as a
table (rows: runs; cells: value vs bar, met / MISSED). The goals are the model zoo's (docs/reference.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from evaluation.identity_swap import TRUTH as TRUTH_ROW
from metrics.tables import markdown_table
from metrics.thresholds import OPS


@dataclass(frozen=True)
class Goal:
    column: str
    op: str
    value: float | None = None     # a fixed bar, or
    ref_row: str | None = None     # factor * (this row's value of the column) + offset
    factor: float = 1.0
    offset: float = 0.0
    methods: tuple[str, ...] = ()  # only these methods (empty: every method row)

    @property
    def text(self) -> str:
        if self.ref_row is None:
            return f"{self.column} {self.op} {self.value:g}"
        scaled = self.ref_row if self.factor == 1 else f"{self.factor:g} x {self.ref_row}"
        shift = f" {'+' if self.offset >= 0 else '-'} {abs(self.offset):g}" if self.offset else ""
        return f"{self.column} {self.op} {scaled}{shift}"

    def bar(self, rows: dict[str, dict]) -> float | None:
        if self.ref_row is None:
            return self.value
        ref = rows.get(self.ref_row, {}).get(self.column)
        return None if ref is None else self.factor * ref + self.offset


GOALS = {
    "identity_swap": (
        Goal("gt_psnr", ">=", ref_row="baseline: copy attribute source", offset=2.0),
        Goal("id_sim", ">=", ref_row=TRUTH_ROW, factor=0.8),
        Goal("pose_err", "<=", ref_row="baseline: copy identity source", factor=0.5),
        Goal("expr_err", "<=", ref_row="baseline: copy identity source", factor=0.5),
        Goal("lnd_err_px", "<=", ref_row="baseline: copy identity source", factor=0.5),
    ),
    "content_transfer": (
        Goal("transfer_l1_in", "<=", 0.30),
        Goal("swap_l1_in", "<", ref_row="baseline: copy target"),
        Goal("removal_l1_in", "<=", 0.20),
        Goal("common_probe", "<=", 0.75),
        Goal("transfer_psnr", ">=", ref_row="baseline: copy target", methods=("mask_ct",)),
    ),
}


def check(board: dict) -> list[dict]:
    """[{"row", "method", "goal", "value", "bar", "met"}] for every method row of ``board`` and every goal of its
    task that applies to the method (a goal whose value or bar is missing is reported with ``met`` None)."""
    values = {r["row"]: r["values"] for r in board["rows"]}
    out = []
    for r in board["rows"]:
        if not r["method"]:
            continue
        for g in GOALS.get(board["task"], ()):
            if g.methods and r["method"] not in g.methods:
                continue
            v, bar = r["values"].get(g.column), g.bar(values)
            met = None if v is None or bar is None else bool(OPS[g.op](v, bar))
            out.append({"row": r["row"], "method": r["method"], "goal": g.text, "value": v, "bar": bar, "met": met})
    return out


def render_markdown(results: list[dict]) -> str:
    """Rows: runs; columns: goals; cells ``value vs bar met|MISSED`` (``—`` where a goal does not apply)."""
    if not results:
        return ""
    goals = list(dict.fromkeys(e["goal"] for e in results))
    table = {}
    for e in results:
        row = table.setdefault(e["row"], {"run": e["row"], "method": e["method"]})
        if e["met"] is None:
            row[e["goal"]] = "n/a"
        else:
            row[e["goal"]] = f"{e['value']:.4g} vs {e['bar']:.4g} {'met' if e['met'] else 'MISSED'}"
    rows = [{**r, **{g: r.get(g, "—") for g in goals}} for r in table.values()]
    met = sum(1 for e in results if e["met"])
    return (f"Reference goals ({met} of {len(results)} met):\n\n"
            + markdown_table(rows, ["run", "method", *goals]))

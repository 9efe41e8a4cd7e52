"""Cross-method leaderboards: several trained runs of one task on the same synthetic test set.

Every run is re-evaluated at one common setting, never compared from its own numbers:
- the same test pairs (the first run's synthetic world: ``data.seed`` must agree, else an error; the leaderboard's
  ``n`` pairs), each method fed them at its own resolution, outputs scored at one scoring size (default: the
  smallest run's; larger outputs are area-averaged down);
- the same judges (identity swap: ``--identity-judge`` / ``--analysis-judge``, default the first run's);
- the copy baselines as rows; a rank per column (1 = best); the identity-swap board adds the true swap scored by
  the same judges (``ground truth (true swap)``: each judge column's ceiling, unranked);
- the reference goals of the task (``evaluation/goals.py``) checked on every method row.
Writes ``leaderboard-<task>.md`` / ``.json`` / ``.png`` (bar charts) and ``leaderboard-<task>-grid.png`` (the
same inputs in every row: the inputs, one row per method, the ground truth).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch.nn.functional as F

from core.figures import image_grid, save_png
from data.synthetic import WORLD_KEYS
from data.synthetic.counterfactual import content_transfer_truth, identity_swap_pairs, stack
from evaluation import content_transfer as ct
from evaluation import goals
from evaluation import identity_swap as idswap
from metrics.tables import _atomic_write_text, _json_safe, markdown_table


class LeaderboardError(ValueError):
    """Runs that cannot share a leaderboard (another task, another synthetic world, ...)."""


def _check(task: str, runs: list, keys: tuple[str, ...]) -> None:
    if not runs:
        raise LeaderboardError("a leaderboard needs at least one run")
    for name, method, cfg in runs:
        if task not in method.tasks:
            raise LeaderboardError(f"run {name!r} ({cfg.method}) does not implement task {task!r} "
                                   f"(its tasks: {list(method.tasks) or 'none'})")
        if cfg.data.name not in ("synthetic", "w_codes"):
            raise LeaderboardError(f"run {name!r} trained on data.name={cfg.data.name!r}: leaderboards score "
                                   "against the synthetic ground truth only")
    first_name, _, first = runs[0]
    for name, _, cfg in runs[1:]:
        for key in keys:
            if cfg.data[key] != first.data[key]:
                raise LeaderboardError(
                    f"runs {first_name!r} and {name!r} differ in data.{key} ({first.data[key]!r} vs "
                    f"{cfg.data[key]!r}): they live in different synthetic worlds and cannot share test pairs")


def _world(cfg, size: int, n: int):
    d = copy.deepcopy(cfg.data)
    d.size, d.test_length = size, max(n, 1)
    return d


def _rank(rows: list[dict], columns: list[dict]) -> None:
    """``rank`` per column (1 = best; ties share the better rank; rows without the value get none)."""
    for c in columns:
        vals = [(r["values"].get(c["name"]), i) for i, r in enumerate(rows) if not r.get("truth")]
        vals = [(v, i) for v, i in vals if v is not None]
        sign = -1.0 if c["better"] == "higher" else 1.0
        keyed = sorted((sign * (abs(v - 0.5) if c["better"] == "chance" else v), i) for v, i in vals)
        for v, i in keyed:
            rows[i].setdefault("ranks", {})[c["name"]] = 1 + sum(1 for w, _ in keyed if w < v)


# --- content transfer ----------------------------------------------------------------------------------
CT_COLUMNS = [
    {"name": "transfer_l1_in", "label": "transfer L1 in region", "better": "lower"},
    {"name": "transfer_psnr", "label": "transfer PSNR", "better": "higher"},
    {"name": "swap_l1_in", "label": "swap L1 in region", "better": "lower"},
    {"name": "removal_l1_in", "label": "removal L1 in region", "better": "lower"},
    {"name": "removal_psnr", "label": "removal PSNR", "better": "higher"},
    {"name": "common_probe", "label": "common-code domain probe (chance 0.5)", "better": "chance"},
    {"name": "colour_r2_separate", "label": "attribute colour R2, separate code", "better": "higher"},
    {"name": "colour_r2_common", "label": "attribute colour R2, common code", "better": "lower"},
]


def _ct_values(pred: dict, truth: dict) -> dict:
    v = {}
    for task in ct.EDITS:
        if task in pred:
            e = ct.errors(pred[task], truth[task], truth[f"mask_{task}"])
            v[f"{task}_l1_in"] = e["l1_in_mask"]
            if task != "swap":
                v[f"{task}_psnr"] = e["psnr"]
    return v


def content_transfer_board(runs: list, n: int, size: int | None = None):
    _check("content_transfer", runs, ("seed", "attribute", "n_identities", *WORLD_KEYS))
    from data import synthetic_domains

    size = size or min(cfg.data.size for _, _, cfg in runs)
    ref = runs[0][2]
    score = synthetic_domains(_world(ref, size, n), "test")
    n = min(n, len(score["a"]))
    a, b = stack(score["a"], n), stack(score["b"], n)
    truth = content_transfer_truth(score["a"], score["b"], n, ref.data.attribute, size)
    rows, shown = [], {}
    for name, method, cfg in runs:
        test = synthetic_domains(_world(ref, cfg.data.size, n), "test")
        ta, tb = stack(test["a"], n).to(method.device), stack(test["b"], n).to(method.device)
        pred = {k: v.cpu() for k, v in ct.outputs(method, ta, tb, cfg.eval.batch_size, size).items()}
        values = _ct_values(pred, truth)
        probes = {(r["task"], r["method"].rsplit(": ", 1)[-1]): r for r in ct.domain_probes(method, cfg, ta, tb, test["a"])}
        values["common_probe"] = probes[("domain probe", "common code")]["accuracy"]
        for code in ("separate", "common"):
            if ("attribute probe", f"{code} code") in probes:
                values[f"colour_r2_{code}"] = probes[("attribute probe", f"{code} code")]["r2_colour"]
        rows.append({"row": name, "method": cfg.method, "values": values})
        shown[name] = pred["transfer"]
    base = ct.baselines(a, b)
    for label, pick in (("baseline: copy target", "copy target"), ("baseline: copy source", "copy source")):
        pred = {t: base[t][pick] for t in ct.EDITS if pick in base[t]}
        if pick == "copy target":
            pred["removal"] = base["removal"]["copy input"]
        rows.append({"row": label, "method": "", "values": _ct_values(pred, truth)})
    k = min(8, n)
    grid = [list(a[:k]), list(b[:k])] + [list(v[:k]) for v in shown.values()] + [list(truth["transfer"][:k])]
    labels = ["source (has the content)", "target"] + [f"{r} transfer" for r in shown] + ["ground truth"]
    setting = {"pairs": n, "scoring size": size, "data.seed": ref.data.seed, "attribute": ref.data.attribute}
    return rows, CT_COLUMNS, (grid, labels), setting


# --- identity swap ---------------------------------------------------------------------------------------
ID_COLUMNS = [
    {"name": "gt_psnr", "label": "PSNR vs true swap", "better": "higher"},
    {"name": "gt_l1", "label": "L1 vs true swap", "better": "lower"},
    {"name": "id_sim", "label": "identity similarity (judge)", "better": "higher"},
    {"name": "id_closer", "label": "closer to identity source", "better": "higher"},
    {"name": "pose_err", "label": "pose error (judge)", "better": "lower"},
    {"name": "expr_err", "label": "expression error (judge)", "better": "lower"},
    {"name": "lnd_err_px", "label": "landmark error px (judge)", "better": "lower"},
]


def identity_swap_board(runs: list, n: int, size: int | None = None, identity_judge=None, analysis_judge=None,
                        identity_judge_kind: str | None = None):
    _check("identity_swap", runs, ("seed", *WORLD_KEYS))
    from evaluation.identity_judge import build_identity_judge
    from models.nets.face_small import build_landmark_net, check_world

    size = size or min(method.image_size for _, method, _ in runs)
    ref = runs[0][2]
    dev = runs[0][1].device
    id_path = identity_judge or ref.eval.get("identity_judge")
    kind = identity_judge_kind or ref.eval.get("identity_judge_kind") or "small"
    an_path = analysis_judge or ref.eval.get("analysis_judge")
    ident = build_identity_judge(kind, id_path, dev) if id_path or kind == "dlib" else None
    analysis = build_landmark_net(an_path, dev) if an_path else None
    for role, judge, path in (("identity judge", ident, id_path), ("analysis judge", analysis, an_path)):
        try:
            check_world(judge, ref.data, role, path)
        except ValueError as e:
            raise LeaderboardError(str(e)) from None
    d = _world(ref, size, n)
    truth = {k: v.to(dev) for k, v in identity_swap_pairs(d, n, size, size).items()}
    rows, shown = [], {}
    for name, method, cfg in runs:
        pairs = identity_swap_pairs(d, n, method.image_size, size)
        out = idswap.outputs(method, pairs, cfg.eval.batch_size, size).to(dev)
        rows.append({"row": name, "method": cfg.method, "values": idswap.score(out, truth, ident, analysis)})
        shown[name] = out.cpu()
    for label, key in idswap.BASELINES.items():
        rows.append({"row": f"baseline: {label}", "method": "",
                     "values": idswap.score(truth[key], truth, ident, analysis)})
    rows.append({"row": idswap.TRUTH, "method": "", "truth": True, "values": idswap.truth_score(truth, ident, analysis)})
    k = min(8, truth["gt"].shape[0])
    grid = [list(truth["id_ref"][:k].cpu()), list(truth["attr_ref"][:k].cpu())] + \
        [list(v[:k]) for v in shown.values()] + [list(truth["gt"][:k].cpu())]
    labels = ["identity source", "attribute source"] + list(shown) + ["ground truth"]
    setting = {"pairs": truth["gt"].shape[0], "scoring size": size, "data.seed": ref.data.seed,
               "identity judge": f"{kind}: {id_path}" if id_path else ("dlib" if kind == "dlib" else "none"),
               "analysis judge": an_path or "none"}
    return rows, ID_COLUMNS, (grid, labels), setting


BOARDS = {"content_transfer": content_transfer_board, "identity_swap": identity_swap_board}


def leaderboard(task: str, runs: list, n: int = 256, size: int | None = None, **judges) -> dict:
    """``runs``: [(name, method, cfg)]. Returns {task, setting, columns, rows (values + ranks), grid}."""
    if task not in BOARDS:
        raise LeaderboardError(f"no leaderboard for task {task!r}; choose one of {sorted(BOARDS)}")
    board = BOARDS[task]
    rows, columns, grid, setting = board(runs, n, size, **judges) if judges else board(runs, n, size)
    columns = [c for c in columns if any(r["values"].get(c["name"]) is not None for r in rows)]
    _rank(rows, columns)
    board = {"task": task, "setting": setting, "columns": columns, "rows": rows, "grid": grid}
    board["goals"] = goals.check(board)
    return board


def render_markdown(board: dict) -> str:
    cols = board["columns"]
    table = []
    for r in board["rows"]:
        cells = {"run": r["row"], "method": r["method"]}
        for c in cols:
            v = r["values"].get(c["name"])
            if v is None:
                cells[c["label"]] = "—"
            else:
                cells[c["label"]] = f"{v:.4g} ({'truth' if r.get('truth') else r['ranks'][c['name']]})"
        table.append(cells)
    arrows = {"higher": "higher is better", "lower": "lower is better", "chance": "closest to 0.5 is best"}
    setting = ", ".join(f"{k} {v}" for k, v in board["setting"].items())
    legend = "; ".join(f"{c['label']}: {arrows[c['better']]}" for c in cols)
    rows = ", ".join(board["grid"][1])
    return (f"Leaderboard: {board['task']} ({setting}). Cells: value (rank, 1 = best).\n\n"
            + markdown_table(table) + f"\n\n{legend}.\n\nGrid rows (the same pairs in every column): {rows}."
            + (f"\n\n{goals.render_markdown(board['goals'])}" if board.get("goals") else ""))


def write(board: dict, out_dir) -> dict[str, Path]:
    """``leaderboard-<task>.md`` / ``.json`` / ``.png`` and ``-grid.png`` in ``out_dir``."""
    from evaluation.paper_tables import draw_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"leaderboard-{board['task']}"
    paths = {"md": stem.with_suffix(".md"), "json": stem.with_suffix(".json"), "png": stem.with_suffix(".png"),
             "grid": out / f"leaderboard-{board['task']}-grid.png"}
    _atomic_write_text(paths["md"], render_markdown(board) + "\n")
    data = {k: v for k, v in board.items() if k != "grid"}
    data["grid_rows"] = board["grid"][1]
    _atomic_write_text(paths["json"], json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")
    figure = {"title": f"leaderboard: {board['task']}",
              "columns": [{**c, "better": c["better"] if c["better"] != "chance" else "none"} for c in board["columns"]],
              "rows": [{"run": r["row"], "row": r["method"] or ("truth" if r.get("truth") else "baseline"), "numbers": "ours",
                        "values": {c["name"]: r["values"].get(c["name"]) for c in board["columns"]}}
                       for r in board["rows"]]}
    draw_figure(figure, paths["png"])
    grid, _ = board["grid"]
    scale = max(1, 96 // grid[0][0].shape[-1])  # small renders: nearest-neighbour zoom, so a reader sees them
    cells = [[F.interpolate(t[None].float().clamp(-1, 1), scale_factor=scale, mode="nearest")[0] for t in row]
             for row in grid]
    save_png(image_grid(cells), paths["grid"])
    return paths


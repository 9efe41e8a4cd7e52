"""Paper tables: each paper's quantitative table layout with our numbers beside the published ones.

A table is ``configs/tables/<name>.yaml``:

- ``name``, ``method`` (the checkpoints it accepts), ``title``, ``paper``, ``source`` and ``note`` (where the
  published numbers come from; ``run_label``: a template naming each run's rows, default ``"{run}"``);
- ``columns``: ``name``, ``label``, ``key`` (a metric key of the method's ``metrics.json`` rows, or null for a
  quantity the paper reports and we do not measure), optional ``select`` (fields the metric row must match),
  ``better`` (``higher`` / ``lower``), ``fmt`` and ``optional`` (true: a missing key shows "—", e.g. scores that
  need an ``eval.`` judge or dataset; false: it is an error);
- ``rows``: our rows, repeated for every run: ``label``, ``select`` (field -> value or glob pattern, formatted
  with ``{run} {method} {attribute} {data} {step}``) and optional ``cells`` (the columns the row fills);
- ``published``: ``source``, ``note`` and ``rows``: ``row`` (an our-row label, or a paper-only row such as a
  baseline), optional ``run`` (a run label), ``values`` (column name -> number, or null while not retrieved),
  optional ``source`` / ``note``. A published row prints after the last of our rows it names, else at the end.

Cells print "n/r" for a published value that is null (not retrieved) and "—" where nothing applies.
"""
from __future__ import annotations

import difflib
import fnmatch
import json
import math
from pathlib import Path

import yaml

from metrics.tables import _atomic_write_text, _json_safe, markdown_table

TABLE_DIR = Path(__file__).resolve().parent.parent / "configs" / "tables"
NOT_RETRIEVED, NONE = "n/r", "—"
_TOP = {"name", "method", "title", "paper", "source", "note", "run_label", "columns", "rows", "published"}
_COLUMN = {"name", "label", "key", "select", "better", "fmt", "optional"}
_ROW = {"label", "select", "cells"}
_PUBLISHED = {"source", "note", "rows"}
_PUB_ROW = {"row", "run", "values", "source", "note"}


class TableError(ValueError):
    """A bad table config, an unknown table, or metrics that do not fill it."""


def list_tables(table_dir: Path = TABLE_DIR) -> list[str]:
    return sorted(p.stem for p in Path(table_dir).glob("*.yaml"))


def _check_keys(d, allowed: set, where: str) -> None:
    if not isinstance(d, dict):
        raise TableError(f"{where}: expected a mapping, got {type(d).__name__}")
    bad = sorted(set(d) - allowed)
    if bad:
        near = difflib.get_close_matches(bad[0], sorted(allowed), n=1)
        raise TableError(f"{where}: unknown key {bad[0]!r}" + (f"; did you mean {near[0]!r}?" if near else ""))


def load_table(name: str, table_dir: Path = TABLE_DIR) -> dict:
    """Read and check ``<table_dir>/<name>.yaml``; an unknown name fails with the closest one."""
    path = Path(table_dir) / f"{name}.yaml"
    if not path.is_file():
        names = list_tables(table_dir)
        near = [n for n in names if name.lower() in n] or difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise TableError(f"unknown table {name!r}; {hint}known: {', '.join(names) or 'none'} "
                         f"(python eval.py --table list)")
    t = yaml.safe_load(path.read_text())
    where = str(path)
    _check_keys(t, _TOP, where)
    for k in ("name", "method", "title", "paper", "columns", "rows", "published"):
        if k not in t:
            raise TableError(f"{where}: missing key {k!r}")
    if t["name"] != name:
        raise TableError(f"{where}: name {t['name']!r} differs from the file name {name!r}")
    t.setdefault("run_label", "{run}")
    cols = set()
    for c in t["columns"]:
        _check_keys(c, _COLUMN, f"{where}: column")
        if "name" not in c or "label" not in c or "key" not in c:
            raise TableError(f"{where}: every column needs name, label and key (key null: not measured by us)")
        if c["name"] in cols:
            raise TableError(f"{where}: duplicate column {c['name']!r}")
        if c.get("better", "higher") not in ("higher", "lower", "none"):
            raise TableError(f"{where}: column {c['name']!r}: better must be higher, lower or none")
        cols.add(c["name"])
    labels = set()
    for r in t["rows"]:
        _check_keys(r, _ROW, f"{where}: row")
        if "label" not in r or "select" not in r:
            raise TableError(f"{where}: every row needs label and select")
        for c in r.get("cells") or []:
            if c not in cols:
                raise TableError(f"{where}: row {r['label']!r} names unknown column {c!r}")
        labels.add(r["label"])
    pub = t["published"]
    _check_keys(pub, _PUBLISHED, f"{where}: published")
    for k in ("source", "note", "rows"):
        if k not in pub:
            raise TableError(f"{where}: published needs {k!r}")
    for p in pub["rows"]:
        _check_keys(p, _PUB_ROW, f"{where}: published row")
        if "row" not in p or not isinstance(p.get("values"), dict):
            raise TableError(f"{where}: every published row needs row and values")
        for c, v in p["values"].items():
            if c not in cols:
                raise TableError(f"{where}: published row {p['row']!r} names unknown column {c!r}")
            if v is not None and not isinstance(v, (int, float)):
                raise TableError(f"{where}: published {p['row']!r}/{c}: {v!r} is not a number or null")
    return t


def _context(run: dict) -> dict:
    cfg = run.get("config") or {}
    data = cfg.get("data") or {}
    ctx = {"run": run["name"], "method": cfg.get("method", ""), "attribute": data.get("attribute") or "",
           "data": data.get("name", ""), "step": run.get("step", "")}
    return ctx


def _matches(metric_row: dict, select: dict, ctx: dict) -> bool:
    for field, want in select.items():
        if field not in metric_row:
            return False
        want = str(want).format_map(ctx)
        if not fnmatch.fnmatchcase(str(metric_row[field]), want):
            return False
    return True


def _lookup(metrics: list[dict], select: dict, key: str, ctx: dict, optional: bool, where: str):
    hits = [m for m in metrics if _matches(m, select, ctx)]
    if len(hits) > 1:
        raise TableError(f"{where}: {len(hits)} metric rows match {select}; make the select unique")
    if not hits or hits[0].get(key) is None:
        if optional:
            return None
        what = "no metric row matches" if not hits else f"metric key {key!r} missing from the row matching"
        raise TableError(f"{where}: {what} {select} (an evaluation from an older version? add --reeval)")
    v = hits[0][key]
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise TableError(f"{where}: metric {key!r} is {v!r}, not a number")
    return float(v)


def fill_table(table: dict, runs: list[dict]) -> dict:
    """Our rows for each run (``{"name", "config", "step", "metrics", "source"}``) and the published rows.

    Returns the table as plain data: title, sources, columns and rows (``run``, ``row``, ``numbers``: ours /
    paper, ``values``: column -> number or None, ``status``: column -> ours / not measured / n/a / published /
    not retrieved / not reported).
    """
    cols = table["columns"]
    pub_rows = table["published"]["rows"]
    out_rows = []
    for run in runs:
        ctx = _context(run)
        if ctx["method"] != table["method"]:
            raise TableError(f"table {table['name']!r} is for method {table['method']!r}; {run['source']} is a "
                             f"{ctx['method']!r} run")
        run_label = table["run_label"].format_map(ctx)
        for r in table["rows"]:
            label = r["label"].format_map(ctx)
            cells = set(r.get("cells") or [c["name"] for c in cols])
            values, status = {}, {}
            for c in cols:
                if c["name"] not in cells:
                    values[c["name"]], status[c["name"]] = None, "n/a"
                elif c["key"] is None:
                    values[c["name"]], status[c["name"]] = None, "not measured"
                else:
                    select = {**r["select"], **(c.get("select") or {})}
                    where = f"table {table['name']!r}, {run['source']}, row {label!r}, column {c['name']!r}"
                    v = _lookup(run["metrics"], select, c["key"], ctx, bool(c.get("optional")), where)
                    values[c["name"]], status[c["name"]] = v, "ours" if v is not None else "not measured"
            out_rows.append({"run": run_label, "row": label, "numbers": "ours", "values": values,
                             "status": status})
    # a published row follows the last of our rows it names (with ``run``: that run's row), else goes last
    after = {}
    for i, p in enumerate(pub_rows):
        hits = [j for j, r in enumerate(out_rows) if r["row"] == p["row"] and p.get("run", r["run"]) == r["run"]]
        after.setdefault(hits[-1] if hits else len(out_rows), []).append(i)
    merged = []
    for j in range(len(out_rows) + 1):
        merged += out_rows[j:j + 1]
        merged += [_published_row(table, pub_rows[i], pub_rows[i].get("run", out_rows[j]["run"] if j < len(out_rows)
                                                                        else NONE)) for i in after.get(j, [])]
    out_rows = merged
    return {"name": table["name"], "method": table["method"], "title": table["title"], "paper": table["paper"],
            "source": table["published"]["source"], "note": table["published"]["note"],
            "columns": [{k: c.get(k) for k in ("name", "label", "key", "better")} for c in cols],
            "runs": [{"name": r["name"], "step": r.get("step"), "metrics": r["source"]} for r in runs],
            "rows": out_rows}


def _published_row(table, p, run_label) -> dict:
    values, status = {}, {}
    for c in table["columns"]:
        n = c["name"]
        if n not in p["values"]:
            values[n], status[n] = None, "not reported"
        else:
            v = p["values"][n]
            values[n], status[n] = v, "published" if v is not None else "not retrieved"
    row = {"run": run_label, "row": p["row"], "numbers": "paper", "values": values, "status": status,
           "source": p.get("source", table["published"]["source"]),
           "note": p.get("note", table["published"]["note"])}
    return row


def _fmt(v, status, fmt) -> str:
    if status == "not retrieved":
        return NOT_RETRIEVED
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return NONE
    return format(v, fmt)


def _header(c) -> str:
    arrow = {"higher": " ↑", "lower": " ↓"}.get(c.get("better") or "none", "")
    return c["label"] + arrow


def render_markdown(result: dict, table: dict) -> str:
    """The table as Markdown: title, sources, one line per row (ours / paper), then the legend."""
    fmts = {c["name"]: c.get("fmt", ".3f") for c in table["columns"]}
    heads = {c["name"]: _header(c) for c in table["columns"]}
    lines = []
    for r in result["rows"]:
        line = {"run": r["run"], "row": r["row"], "numbers": r["numbers"]}
        for n, h in heads.items():
            line[h] = _fmt(r["values"][n], r["status"][n], fmts[n])
        lines.append(line)
    notes = sorted({(r["row"] + ("" if r["run"] == NONE else f" ({r['run']})"), r["source"], r["note"])
                    for r in result["rows"] if r["numbers"] == "paper"})
    text = [f"## {result['title']}", "", f"Paper: {result['paper']}.",
            f"Published numbers: {result['source']}; {result['note']}.", "",
            markdown_table(lines, ["run", "row", "numbers", *heads.values()]), "",
            f"{NOT_RETRIEVED}: published value not retrieved (null in configs/tables/{result['name']}.yaml; "
            f"copy it from the paper). {NONE}: not measured / not applicable / not reported.",
            "Our numbers: " + "; ".join(f"{r['name']} (step {r['step']}): {r['metrics']}" for r in result["runs"])]
    text += [f"- paper row {row}: {src}; {note}" for row, src, note in notes
             if (src, note) != (result["source"], result["note"])]
    return "\n".join(text)


# --- figure (PIL only) ----------------------------------------------------------------------------
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def draw_figure(result: dict, path: Path, panel=(300, 230)) -> Path:
    """One bar chart per column that has numbers: a bar per row (ours filled, published outlined), a y axis
    with ticks and a zero line, the column name and its better direction; a legend numbers the rows."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    bars = [(i, r) for i, r in enumerate(result["rows"])
            if any(v is not None for v in r["values"].values())]
    cols = [c for c in result["columns"] if any(r["values"][c["name"]] is not None for _, r in bars)]
    ncol = max(1, min(3, len(cols)))
    nrow = max(1, math.ceil(len(cols) / ncol))
    pw, ph = panel
    legend_h = 16 * len(bars) + 30
    W, H = pw * ncol + 20, ph * nrow + legend_h + 40
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), result["title"], fill="black", font=font)
    color = {i: _PALETTE[k % len(_PALETTE)] for k, (i, _) in enumerate(bars)}
    for k, c in enumerate(cols):
        x0, y0 = 10 + (k % ncol) * pw, 30 + (k // ncol) * ph
        vals = [(i, r["values"][c["name"]], r["numbers"]) for i, r in bars if r["values"][c["name"]] is not None]
        lo, hi = min(0.0, *(v for _, v, _ in vals)), max(0.0, *(v for _, v, _ in vals))
        if hi == lo:
            hi = lo + 1.0
        better = {"higher": "higher is better", "lower": "lower is better"}.get(c.get("better") or "none", "")
        d.text((x0 + 4, y0 + 2), f"{c['label']}" + (f" ({better})" if better else ""), fill="black", font=font)
        ax_l, ax_r, ax_t, ax_b = x0 + 52, x0 + pw - 10, y0 + 22, y0 + ph - 34

        def y(v):
            return ax_b - (v - lo) / (hi - lo) * (ax_b - ax_t)

        d.line([(ax_l, ax_t), (ax_l, ax_b)], fill="black")
        for tv in sorted({lo, 0.0, hi}):
            d.line([(ax_l - 4, y(tv)), (ax_l, y(tv))], fill="black")
            d.text((x0 + 2, y(tv) - 6), f"{tv:.3g}", fill="black", font=font)
        d.line([(ax_l, y(0.0)), (ax_r, y(0.0))], fill=(120, 120, 120))
        slot = (ax_r - ax_l) / max(1, len(vals))
        for j, (i, v, numbers) in enumerate(vals):
            bx0, bx1 = ax_l + j * slot + slot * 0.15, ax_l + (j + 1) * slot - slot * 0.15
            top, bot = sorted((y(v), y(0.0)))
            if numbers == "paper":
                d.rectangle([bx0, top, bx1, bot], outline=color[i], width=2)
            else:
                d.rectangle([bx0, top, bx1, bot], fill=color[i])
            d.text(((bx0 + bx1) / 2 - 4, ax_b + 3), str(i + 1), fill="black", font=font)
        d.text((ax_l, ax_b + 16), "row (see legend); y: value", fill=(80, 80, 80), font=font)
    ly = 30 + nrow * ph + 8
    d.text((10, ly), "rows (filled: ours, outlined: published):", fill="black", font=font)
    for k, (i, r) in enumerate(bars):
        yy = ly + 18 + 16 * k
        d.rectangle([12, yy + 2, 22, yy + 12], fill=color[i])
        d.text((28, yy), f"{i + 1}. {r['run']} / {r['row']} ({r['numbers']})", fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_table(out_dir, result: dict, table: dict) -> tuple[Path, Path, Path]:
    """``table-<name>.md``, ``.json`` and ``.png`` in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"table-{result['name']}"
    md, js, png = stem.with_suffix(".md"), stem.with_suffix(".json"), stem.with_suffix(".png")
    _atomic_write_text(md, render_markdown(result, table) + "\n")
    _atomic_write_text(js, json.dumps(_json_safe(result), indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    draw_figure(result, png)
    return md, js, png

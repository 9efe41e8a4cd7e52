"""Evaluate a trained checkpoint: ``python eval.py --checkpoint runs/synth_glasses/checkpoint-latest.pt``.

Writes image grids and a metrics table (Markdown + JSON) into ``--out`` (default: ``<run>/eval-<step>/``)
and prints the table. The config is the one saved in the checkpoint; ``--config`` and ``key=value``
overrides are applied on top (e.g. ``eval.max_images=512 device=cpu``).

Paper tables (``configs/tables/<name>.yaml``; ``--table list`` lists them): ``python eval.py --table NAME
--runs runs/a runs/b`` (or ``--checkpoint X`` once per run) fills the paper's table layout with each run's
numbers beside the published ones and writes ``table-NAME.md`` / ``.json`` / ``.png`` into ``--out`` (default:
``<run dir's parent>/tables``). A run's ``eval-<step>/metrics.json`` is reused if present (unless
``--reeval``, ``--config`` or overrides are given), else the checkpoint is evaluated first.

Leaderboards (one task, several methods, one common test set; ``evaluation/leaderboard.py``):
``python eval.py --leaderboard identity_swap --runs runs/id_synth runs/g2g_synth runs/mad_synth_joint`` writes
``leaderboard-<task>.md`` / ``.json`` / ``.png`` and ``-grid.png`` into ``--out`` (default ``runs/leaderboards``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import clear_errors, one_line, user_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", action="append", default=None,
                   help="checkpoint file written by train.py (with --table: may be repeated)")
    p.add_argument("--config", default=None, help="experiment YAML applied over the checkpoint's config")
    p.add_argument("--out", default=None, help="output folder (default: <run>/eval-<step>; tables: <runs>/tables)")
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw weights even if EMA weights exist")
    p.add_argument("--weights", action="append", default=[], metavar="[NAME=]PATH",
                   help="a frozen pretrained network's weight file, if it moved since training (as in train.py)")
    p.add_argument("--table", default=None, help="paper table name (configs/tables/NAME.yaml), or 'list'")
    p.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR",
                   help="with --table: run folders (their checkpoint-latest.pt)")
    p.add_argument("--reeval", action="store_true", help="with --table: evaluate even if metrics.json exists")
    p.add_argument("--leaderboard", default=None, metavar="TASK",
                   help="rank --runs on one task: content_transfer | identity_swap")
    p.add_argument("--pairs", type=int, default=256, help="with --leaderboard: test pairs (default 256)")
    p.add_argument("--size", type=int, default=None, help="with --leaderboard: scoring size (default: smallest run)")
    p.add_argument("--identity-judge", default=None, help="with --leaderboard identity_swap: face_nets checkpoint "
                   "(default: the first run's eval.identity_judge)")
    p.add_argument("--analysis-judge", default=None, help="with --leaderboard identity_swap: as --identity-judge")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p.parse_intermixed_args(argv)


class EvalError(Exception):
    """An evaluation that could not run; ``code`` is the exit status (2: bad input, 1: failed)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = self.exit_code = code


def evaluate_checkpoint(checkpoint, config=None, overrides=(), out=None, no_ema=False, weights=()):
    """Evaluate one checkpoint; writes grids + metrics.md/json. Returns (rows, state, out_dir, md, json)."""
    import evaluation
    from core.runtime import seed_everything
    from metrics.tables import write_metrics
    from models import load_method

    try:
        method, cfg, state = load_method(checkpoint, overrides, config, weights)
    except user_errors() as e:
        raise EvalError(one_line(e), 2) from None
    seed_everything(cfg.seed)
    try:
        out = Path(out) if out else Path(checkpoint).parent / f"eval-{state['step']:07d}"
        rows = evaluation.evaluate(method, cfg, out, use_ema=cfg.eval.use_ema and not no_ema)
    except user_errors() as e:
        raise EvalError(one_line(e), 1) from None
    md, js = write_metrics(out, "metrics", rows)
    return rows, state, out, md, js


def leaderboard_main(args) -> int:
    """``--leaderboard TASK --runs ...``: every run re-evaluated on one common test set, ranked per column."""
    from evaluation.leaderboard import leaderboard, write
    from models import load_method

    paths, overrides = _run_checkpoints(args)
    if not paths:
        print("error: --leaderboard needs --runs RUN_DIR ... (or --checkpoint FILE, repeated)", file=sys.stderr)
        return 2
    runs = []
    try:
        for path in paths:
            method, cfg, _ = load_method(path, overrides)
            if args.no_ema:
                method.ema = None
            runs.append((path.parent.name, method, cfg))
        judges = {k: v for k, v in (("identity_judge", args.identity_judge),
                                    ("analysis_judge", args.analysis_judge)) if v}
        board = leaderboard(args.leaderboard, runs, args.pairs, args.size, **judges)
    except user_errors() as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    out = write(board, Path(args.out) if args.out else paths[0].parent.parent / "leaderboards")
    print(out["md"].read_text(), end="")
    print(f"\nwrote {', '.join(str(p) for p in out.values())}")
    return 0


def _is_override(word: str) -> bool:
    return "=" in word and not Path(word).exists()


def _run_checkpoints(args) -> tuple[list[Path], list[str]]:
    """(checkpoint files of --checkpoint and --runs, overrides). --runs takes every following word: key=value
    words that are not folders are overrides."""
    from core import checkpoint as ckpt

    run_dirs = [r for r in args.runs if not _is_override(r)]
    overrides = [*args.overrides, *(r for r in args.runs if _is_override(r))]
    return [Path(c) for c in args.checkpoint or []] + [Path(r) / ckpt.LATEST for r in run_dirs], overrides


def table_main(args) -> int:
    """``--table NAME``: fill a paper table from the runs' metrics (evaluating where needed)."""
    from core import checkpoint as ckpt
    from evaluation.paper_tables import TableError, fill_table, list_tables, load_table, write_table

    if args.table == "list":
        for name in list_tables():
            t = load_table(name)
            print(f"{name:28s} {t['method']:11s} {t['title']}")
        return 0
    try:
        table = load_table(args.table)
    except TableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths, overrides = _run_checkpoints(args)
    if not paths:
        print("error: --table needs --checkpoint FILE or --runs RUN_DIR ...", file=sys.stderr)
        return 2
    states = []
    for path in paths:  # check every input before evaluating any
        try:
            state = ckpt.load(path)
        except ckpt.CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        method = state["config"].get("method")
        if method != table["method"]:
            print(f"error: table {args.table!r} is for method {table['method']!r}; {path} is a {method!r} "
                  f"checkpoint", file=sys.stderr)
            return 2
        states.append(state)
    runs = []
    for path, state in zip(paths, states):
        metrics = path.parent / f"eval-{state['step']:07d}" / "metrics.json"
        if metrics.is_file() and not (args.reeval or args.config or overrides or args.weights):
            rows = json.loads(metrics.read_text())
            print(f"{path.parent.name}: using {metrics}", file=sys.stderr)
        else:
            print(f"{path.parent.name}: evaluating {path}", file=sys.stderr)
            try:
                rows, state, out, _, metrics = evaluate_checkpoint(path, args.config, overrides,
                                                                   None, args.no_ema, args.weights)
            except EvalError as e:
                print(f"error: {e}", file=sys.stderr)
                return e.code
            rows = json.loads(Path(metrics).read_text())
        runs.append({"name": path.parent.name, "config": state["config"], "step": state["step"],
                     "metrics": rows, "source": str(metrics)})
    try:
        result = fill_table(table, runs)
    except TableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else paths[0].parent.parent / "tables"
    md, js, png = write_table(out, result, table)
    print(md.read_text(), end="")
    print(f"\nwrote {md}, {js}, {png}")
    return 0


@clear_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.table is not None and args.leaderboard is not None:
        print("error: --table and --leaderboard are exclusive", file=sys.stderr)
        return 2
    if args.table is not None:
        return table_main(args)
    if args.leaderboard is not None:
        return leaderboard_main(args)
    if args.runs or args.reeval:
        print("error: --runs goes with --table or --leaderboard; --reeval with --table", file=sys.stderr)
        return 2
    if not args.checkpoint or len(args.checkpoint) > 1:
        print("error: give exactly one --checkpoint (several only with --table)", file=sys.stderr)
        return 2
    from metrics.tables import markdown_table

    try:
        rows, state, out, md, js = evaluate_checkpoint(args.checkpoint[0], args.config, args.overrides,
                                                       args.out, args.no_ema, args.weights)
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    print(markdown_table(rows))
    print(f"\nstep {state['step']}, {state['images'] / 1000:.1f} kimg; wrote {md}, {js} and grids to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

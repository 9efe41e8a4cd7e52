"""Time to quality: wall seconds until a config's run first meets each quality threshold.

    python scripts/time_to_quality.py --config configs/synth_glasses.yaml
    python scripts/time_to_quality.py --config configs/mask_synth_glasses.yaml --every 100 train.steps=600
    python scripts/time_to_quality.py --config X.yaml --threshold "transfer/{method}/l1_in_mask <= 0.25"

Trains the config (in this process, into ``--out``) with a numbered snapshot every ``--every`` steps, then
evaluates every snapshot as ``eval.py`` would. The training clock of a snapshot is the ``time`` field of its
``stats.jsonl`` row (seconds since training started, dataset rendering included); a threshold counts as met
at that clock plus the wall time of evaluating that snapshot. The last line is what the quick start costs:
training wall time plus one evaluation of the final checkpoint (Python start-up excluded, ~2 s a command).
Thresholds (``metrics/thresholds.py``) default to the method's goals (methods 1-2: transfer L1 in the
region <= 0.30, swap L1 in the region below copying the target, transfer PSNR >= copying the target, common
code domain probe <= 0.70). Writes ``time_to_quality.md`` / ``.json`` into the run folder.

Reference curves of a run that is already trained (a reference run keeps numbered snapshots):

    python scripts/time_to_quality.py --run runs/ref_synth_glasses [--pairs 256] [--size N] [--identity-judge P]

scores every snapshot (``checkpoint-NNNNNNN.pt``, and ``checkpoint-latest.pt`` when it is newer) as the
leaderboard of each task the method declares (``eval.py --leaderboard``: same pairs, judges, scoring size), checks
the reference goals (``evaluation/goals.py``) and writes ``reference_curve.md`` / ``.json`` / ``.png`` (each goal's
value against the run's wall clock, the bar as a line) into the run folder. Numbered snapshots that its
``reference_curve.json`` already scored with the same settings are not scored again (a continued run).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.checkpoint import LATEST, snapshots  # noqa: E402
from metrics.tables import _json_safe  # noqa: E402
from metrics.thresholds import DEFAULT_THRESHOLDS, ThresholdError, first_met, parse_thresholds  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="experiment YAML (train it, then score its snapshots)")
    p.add_argument("--run", default=None, help="a trained run folder: score its snapshots against the goals")
    p.add_argument("--pairs", type=int, default=256, help="with --run: test pairs of the leaderboard (256)")
    p.add_argument("--size", type=int, default=None, help="with --run: scoring size (default: the run's)")
    p.add_argument("--identity-judge", default=None, help="with --run: as eval.py --leaderboard")
    p.add_argument("--analysis-judge", default=None, help="with --run: as eval.py --leaderboard")
    p.add_argument("--every", type=int, default=250, help="snapshot (and evaluation) every N steps")
    p.add_argument("--out", default="runs/time_to_quality", help="run folder parent (run name = config name)")
    p.add_argument("--threshold", action="append", default=None, metavar="SPEC",
                   help="'TASK/METHOD/KEY OP VALUE|TASK/METHOD/KEY' (repeatable; default: the method's goals)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.steps=600")
    return p.parse_intermixed_args(argv)


def report(name: str, method: str, every: int, snaps: list[dict], thresholds, train_s: float) -> tuple[str, dict]:
    """Markdown + JSON summary of evaluated snapshots (each {"step", "time", "eval_s", "rows"})."""
    lines = [f"## Time to quality: {name} ({method}), snapshots every {every} steps, wall seconds", "",
             "| step | train s | eval s | " + " | ".join(t.text for t in thresholds) + " |",
             "|---|---|---|" + "---|" * len(thresholds)]
    per_snap = []
    for s in snaps:
        checks = [t.check(s["rows"]) for t in thresholds]
        per_snap.append({"step": s["step"], "train_s": s["time"], "eval_s": s["eval_s"], "checks": checks})
        cells = [f"{c['value']:.3f} vs {c['ref']:.3f}{' met' if c['met'] else ''}" for c in checks]
        lines.append(f"| {s['step']} | {s['time']:.1f} | {s['eval_s']:.1f} | " + " | ".join(cells) + " |")
    first = first_met(snaps, thresholds)
    lines += ["", "| threshold | first met at step | train s | + eval s | seconds to see it |", "|---|---|---|---|---|"]
    summary = []
    for t in thresholds:
        s = first[t.text]
        if s is None:
            lines.append(f"| {t.text} | never | | | |")
            summary.append({"threshold": t.text, "step": None, "seconds": None})
        else:
            total = s["time"] + s["eval_s"]
            lines.append(f"| {t.text} | {s['step']} | {s['time']:.1f} | {s['eval_s']:.1f} | {total:.1f} |")
            summary.append({"threshold": t.text, "step": s["step"], "seconds": total})
    final = snaps[-1]
    total = train_s + final["eval_s"]
    met_all = all(x["step"] is not None for x in summary)
    last = max((x["seconds"] for x in summary), default=0.0) if met_all else math.inf
    lines += ["", f"train + eval: {total:.1f} s (train {train_s:.1f} s to step {final['step']}, "
                  f"eval {final['eval_s']:.1f} s); all thresholds met at: "
                  + (f"{last:.1f} s" if met_all else "never")]
    data = {"config": name, "method": method, "every": every, "snapshots": per_snap, "first_met": summary,
            "train_s": train_s, "final_eval_s": final["eval_s"], "train_plus_eval_s": total,
            "all_met_s": last if met_all else None}
    return "\n".join(lines) + "\n", data


def _clock(stats: Path) -> dict[int, float]:
    """step -> the ``time`` of its ``stats.jsonl`` row (seconds of training, resumes included)."""
    return {r["step"]: r["time"] for r in map(json.loads, stats.read_text().splitlines())}


def curve_chart(name: str, snaps: list[dict], path: Path, panel=(300, 200)) -> None:
    """One panel per goal: the value at each snapshot against wall minutes, the bar as a grey line, met points
    filled."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    names = list(dict.fromkeys(g["goal"] for s in snaps for g in s["goals"]))
    ncol = max(1, min(3, len(names)))
    nrow = max(1, math.ceil(len(names) / ncol))
    pw, ph = panel
    img = Image.new("RGB", (pw * ncol + 20, ph * nrow + 40), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), f"reference curve: {name} (x: wall minutes of training; filled: goal met)", fill="black", font=font)
    tmax = max(s["time"] for s in snaps) / 60 or 1.0
    for k, goal in enumerate(names):
        pts = [(s["time"] / 60, g) for s in snaps for g in s["goals"] if g["goal"] == goal and g["value"] is not None]
        ys = [g["value"] for _, g in pts] + [g["bar"] for _, g in pts if g["bar"] is not None]
        if not ys:
            continue
        lo, hi = min(ys), max(ys)
        lo, hi = (lo - 0.5, hi + 0.5) if hi == lo else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        x0, y0 = 10 + (k % ncol) * pw, 30 + (k // ncol) * ph
        ax_l, ax_r, ax_t, ax_b = x0 + 48, x0 + pw - 12, y0 + 20, y0 + ph - 28

        def xy(t, v):
            return ax_l + t / tmax * (ax_r - ax_l), ax_b - (v - lo) / (hi - lo) * (ax_b - ax_t)

        d.text((x0 + 4, y0 + 2), goal[:46], fill="black", font=font)
        d.line([(ax_l, ax_t), (ax_l, ax_b), (ax_r, ax_b)], fill="black")
        for tv in (lo, hi):
            d.text((x0 + 2, xy(0, tv)[1] - 6), f"{tv:.3g}", fill="black", font=font)
        d.text((ax_r - 30, ax_b + 4), f"{tmax:.0f} min", fill="black", font=font)
        bars = [xy(t, g["bar"]) for t, g in pts if g["bar"] is not None]
        if bars:
            d.line(bars if len(bars) > 1 else [(ax_l, bars[0][1]), (ax_r, bars[0][1])], fill=(150, 150, 150), width=2)
        line = [xy(t, g["value"]) for t, g in pts]
        if len(line) > 1:
            d.line(line, fill=(31, 119, 180), width=2)
        for (t, g), (x, y) in zip(pts, line):
            box = [x - 3, y - 3, x + 3, y + 3]
            d.ellipse(box, fill=(31, 119, 180)) if g["met"] else d.ellipse(box, outline=(31, 119, 180))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _scored(path: Path, settings: dict) -> dict[str, dict]:
    """Numbered snapshots already scored in ``path`` (a run's ``reference_curve.json``) with ``settings``: name ->
    entry. A numbered snapshot never changes, so a continued run (``scripts/reference_runs.sh long_*``) scores only
    its new ones; ``checkpoint-latest.pt`` is always scored again."""
    if not path.is_file():
        return {}
    return {e["checkpoint"]: e for e in json.loads(path.read_text())
            if e.get("settings") == settings and e.get("checkpoint", LATEST) != LATEST}


def run_curve(args) -> int:
    """``--run DIR``: each snapshot scored as the leaderboard scores it, with the reference goals."""
    from evaluation import goals as goal_check
    from evaluation.leaderboard import BOARDS, LeaderboardError, leaderboard
    from metrics.tables import markdown_table
    from models import load_method

    run_dir = Path(args.run)
    paths = snapshots(run_dir) if run_dir.is_dir() else []
    if not paths:
        print(f"error: no checkpoints in {run_dir}", file=sys.stderr)
        return 2
    stats = run_dir / "stats.jsonl"
    clock = _clock(stats) if stats.is_file() else {}
    judges = {k: v for k, v in (("identity_judge", args.identity_judge), ("analysis_judge", args.analysis_judge)) if v}
    settings = {"pairs": args.pairs, "size": args.size, **judges, "overrides": list(args.overrides)}
    scored = _scored(run_dir / "reference_curve.json", settings)
    snaps, cfg = [], None
    for path in paths:
        if path.name in scored and scored[path.name]["step"] in clock:  # a numbered snapshot scored before
            snaps.append({**scored[path.name], "time": clock[scored[path.name]["step"]]})
            print(f"step {snaps[-1]['step']}: scored before ({path.name}, same settings)", file=sys.stderr)
            continue
        method, cfg, state = load_method(path, args.overrides)
        step = state["step"]
        if step not in clock:
            if path.name == LATEST and snaps:  # a run stopped between log rows (SIGTERM): its snapshots stand
                print(f"step {step}: {path.name} skipped, no row in {stats} (a stopped run)", file=sys.stderr)
                continue
            print(f"error: {stats} has no row for step {step} (train.log_every must divide train.snapshot_every)",
                  file=sys.stderr)
            return 2
        t0 = time.time()
        values, met = {}, []
        for task in (t for t in method.tasks if t in BOARDS):
            try:
                board = leaderboard(task, [(run_dir.name, method, cfg)], args.pairs, args.size, **judges)
            except LeaderboardError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            values[task] = {r["row"]: r["values"] for r in board["rows"]}
            met += board["goals"]
        snaps.append({"step": step, "time": clock[step], "eval_s": time.time() - t0, "values": values, "goals": met,
                      "checkpoint": path.name, "settings": settings})
        print(f"scored step {step}: {sum(1 for g in met if g['met'])} of {len(met)} goals met", file=sys.stderr)
    table = [{"step": s["step"], "train min": s["time"] / 60,
              **{g["goal"]: f"{g['value']:.4g}{' met' if g['met'] else ''}" if g["value"] is not None else "—"
                 for g in s["goals"]}} for s in snaps]
    last = snaps[-1]
    if cfg is None:  # every snapshot was scored before
        _, cfg, _ = load_method(paths[-1], args.overrides)
    md = (f"## Reference curve: {run_dir.name} ({cfg.method}), {args.pairs} leaderboard pairs\n\n"
          + markdown_table(table, floatfmt=".1f") + "\n\nLast snapshot:\n\n" + goal_check.render_markdown(last["goals"])
          + "\n")
    (run_dir / "reference_curve.md").write_text(md)
    (run_dir / "reference_curve.json").write_text(json.dumps(_json_safe(snaps), indent=1))
    curve_chart(run_dir.name, snaps, run_dir / "reference_curve.png")
    print(md, end="")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if (args.config is None) == (args.run is None):
        print("error: give --config (train, then score) or --run (score a trained run's snapshots)", file=sys.stderr)
        return 2
    if args.run:
        return run_curve(args)
    import eval as eval_cli
    import train
    from core.config import ConfigError, load_config

    if args.every < 1:
        print("error: --every must be >= 1", file=sys.stderr)
        return 2
    name = Path(args.config).stem
    try:
        cfg = load_config(args.config, args.overrides)
        thresholds = parse_thresholds(args.threshold or DEFAULT_THRESHOLDS.get(cfg.method, ()), cfg.method)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not thresholds:
        print(f"error: no default thresholds for method {cfg.method!r}; give --threshold", file=sys.stderr)
        return 2
    log_every = math.gcd(cfg.train.log_every, args.every)  # a stats row (with its clock) at every snapshot
    run_dir = Path(args.out) / name
    t0 = time.time()
    rc = train.main(["--config", args.config, *args.overrides, f"run.dir={args.out}", f"run.name={name}",
                     f"train.snapshot_every={args.every}", f"train.log_every={log_every}", "--force"])
    train_s = time.time() - t0
    if rc:
        return rc
    clock = _clock(run_dir / "stats.jsonl")
    paths = snapshots(run_dir)
    snaps = []
    for path in paths:
        t0 = time.time()
        try:
            rows, state, *_ = eval_cli.evaluate_checkpoint(path)  # into <run>/eval-<step>
        except eval_cli.EvalError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.code
        snaps.append({"step": state["step"], "time": clock[state["step"]], "eval_s": time.time() - t0,
                      "rows": rows})
        print(f"evaluated step {state['step']}", file=sys.stderr)
    try:
        md, data = report(name, cfg.method, args.every, snaps, thresholds, train_s)
    except ThresholdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    (run_dir / "time_to_quality.md").write_text(md)
    (run_dir / "time_to_quality.json").write_text(json.dumps(data, indent=1))
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

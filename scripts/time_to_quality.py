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

from metrics.thresholds import DEFAULT_THRESHOLDS, ThresholdError, first_met, parse_thresholds  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML")
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


def main(argv=None) -> int:
    args = parse_args(argv)
    import eval as eval_cli
    import train
    from core import checkpoint as ckpt
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
    clock = {r["step"]: r["time"] for r in map(json.loads, (run_dir / "stats.jsonl").read_text().splitlines())}
    paths = sorted(run_dir.glob("checkpoint-[0-9]*.pt"))
    if cfg.train.steps not in {int(p.stem.split("-")[1]) for p in paths}:
        paths.append(run_dir / ckpt.LATEST)
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

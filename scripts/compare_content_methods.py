"""Compare content-transfer checkpoints (e.g. method 2 vs method 1) on the same test data: one Markdown table.

    # evaluate two trained checkpoints
    python scripts/compare_content_methods.py --checkpoints runs/synth_glasses/checkpoint-latest.pt \\
        runs/mask_synth_glasses/checkpoint-latest.pt --out runs/compare_glasses
    # or train the configs first (into <out>/runs/<config name>; reruns resume / skip finished runs)
    python scripts/compare_content_methods.py --configs configs/synth_glasses.yaml \\
        configs/mask_synth_glasses.yaml --steps 500 --out runs/compare_glasses data.cache_dir=.cache

``key=value`` overrides apply to every training and evaluation, so use keys all configs share. Each
evaluation (grids, metrics.md) goes to ``<out>/<run name>/``; the combined table to
``<out>/comparison.md`` and ``.json``. Baseline rows, identical for the same data, appear once.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.cli import clear_errors  # noqa: E402

# data keys that define the test images; they must agree for the comparison to mean anything
TEST_DATA_KEYS = ("name", "root", "attribute", "size", "crop", "seed", "test_length", "n_identities")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoints", nargs="+", metavar="CKPT", help="checkpoint files written by train.py")
    src.add_argument("--configs", nargs="+", metavar="YAML", help="experiment configs to train first")
    p.add_argument("--steps", type=int, default=None, help="with --configs: train.steps for every run")
    p.add_argument("--out", default="runs/compare", help="output folder")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p.parse_intermixed_args(argv)


def train_configs(configs, steps, out: Path, overrides) -> list[Path]:
    import train

    ckpts = []
    for c in configs:
        extra = [f"train.steps={steps}"] if steps else []
        name = Path(c).stem
        argv = ["--config", c, f"run.dir={out / 'runs'}", f"run.name={name}", "--resume", "auto", *overrides, *extra]
        code = train.main(argv)
        if code != 0:  # train.py printed the error line
            raise SystemExit(code)
        ckpts.append(out / "runs" / name / "checkpoint-latest.pt")
    return ckpts


def check_same_test_data(configs: dict) -> None:
    seen = {name: ({k: cfg.data[k] for k in TEST_DATA_KEYS}, cfg.eval.max_images) for name, cfg in configs.items()}
    first_name, first = next(iter(seen.items()))
    for name, other in seen.items():
        if other != first:
            raise ValueError(f"{name} and {first_name} use different test data or eval.max_images: {other} vs {first}")


def combine(results: list[tuple[str, list[dict]]]) -> list[dict]:
    """All rows grouped by task (first-seen order); baseline rows kept once."""
    rows, seen = [], set()
    for _, rs in results:
        for r in rs:
            key = (r["task"], r["method"])
            if r["method"].startswith("baseline") and key in seen:
                continue
            seen.add(key)
            rows.append(r)
    order = list(dict.fromkeys(r["task"] for r in rows))
    return sorted(rows, key=lambda r: order.index(r["task"]))  # stable: runs keep their order within a task


@clear_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    import eval as evaluate
    from core import checkpoint as ckpt
    from core.config import load_config
    from metrics.tables import markdown_table, write_metrics

    out = Path(args.out)
    ckpts = ([Path(c) for c in args.checkpoints] if args.checkpoints
             else train_configs(args.configs, args.steps, out, args.overrides))
    states = {}
    for c in ckpts:
        state = ckpt.load(c)
        cfg = load_config(None, args.overrides, base=state["config"])
        states[cfg.run.name or c.parent.name] = (c, state, cfg)
    if len(states) != len(ckpts):
        raise SystemExit("checkpoints must come from runs with different run names")
    check_same_test_data({name: cfg for name, (_, _, cfg) in states.items()})

    methods = [cfg.method for _, _, cfg in states.values()]
    results, header = [], []
    for name, (c, state, cfg) in states.items():
        if evaluate.main(["--checkpoint", str(c), "--out", str(out / name), *args.overrides]) != 0:
            raise SystemExit(f"evaluating {c} failed")
        rows = json.loads((out / name / "metrics.json").read_text())
        if len(set(methods)) < len(methods):  # same method twice: label rows by run name
            for r in rows:
                if not r["method"].startswith("baseline"):
                    r["method"] = r["method"].replace(cfg.method, name, 1)
        results.append((name, rows))
        header.append(f"- {name}: method {cfg.method}, {state['step']} steps ({state['images'] / 1000:.1f} kimg), {c}")
    rows = combine(results)
    md, js = write_metrics(out, "comparison", rows)
    text = "\n".join(header) + "\n\n" + markdown_table(rows)
    md.write_text(text + "\n")
    print(text)
    print(f"\nwrote {md}, {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

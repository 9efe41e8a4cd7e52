"""Train a method: ``python train.py --config configs/synth_glasses.yaml [key=value ...]``.

Multi-GPU / multi-node: ``torchrun --nproc_per_node N train.py --config ...`` (gloo on CPU, NCCL on CUDA).

Exit status: 0 finished; 2 bad config or arguments; 1 the run failed (one ``error:`` line; a first attempt that
saved no checkpoint leaves no run folder behind); 143 / 130 stopped by SIGTERM / SIGINT after saving a
checkpoint (continue with ``--resume auto``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.cli import clear_errors, report, user_errors


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML under configs/")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="continue a run: 'auto' = this run's checkpoint-latest.pt if present, else start fresh")
    p.add_argument("--init", default=None, metavar="PATH", help="start from a checkpoint's weights only")
    p.add_argument("--force", action="store_true", help="start over even if the run folder has a checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--weights", action="append", default=[], metavar="[NAME=]PATH",
                   help="a pretrained network's public weight file (repeatable; NAME picks which, e.g. "
                        "g2g: class | vgg16, id_mapper: generator | identity | landmarks | attr)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.steps=100")
    args = p.parse_intermixed_args(argv)
    if args.resume and args.init:
        p.error("--resume and --init are exclusive (resume continues a run; init loads weights only)")
    return args


def training_hooks(method, cfg):
    """The loop's hooks, with the method's task evaluation every ``train.eval_every`` steps (if set)."""
    from core.hooks import default_hooks

    if not cfg.train.eval_every:
        return default_hooks()
    import evaluation

    metric, mode = evaluation.best_metric(method, cfg)
    return default_hooks(lambda m: evaluation.scores(m, cfg, cfg.train.eval_images), cfg.train.eval_every,
                         metric, mode)


@clear_errors
def main(argv=None) -> int:
    started = time.time()
    args = parse_args(argv)
    from core.config import load_config

    from models import weights_overrides

    cfg = load_config(args.config, args.overrides)  # bad config: one error line, exit status 2
    if args.weights:  # the method (hence its weight keys) is known once the config is read
        cfg = load_config(args.config, [*args.overrides, *weights_overrides(cfg.method, args.weights)])
    if cfg.run.name is None:
        cfg.run.name = Path(args.config).stem
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0

    from core import checkpoint as ckpt
    from core import dist
    from core.trainer import Trainer, remove_unfinished, setup
    from models import build_method

    finished = False
    try:
        device, run_dir, created = setup(cfg, resume=args.resume, force=args.force)
        try:
            method = build_method(cfg, device)
            trainer = Trainer(method, cfg, run_dir, training_hooks(method, cfg), started)
            trainer.resume_or_init(args.resume, args.init)
            trainer.run()  # a stop by signal raises RunStopped (exit status 128 + its number)
        except BaseException:
            if created and ckpt.find_latest(run_dir) is None:
                remove_unfinished(run_dir)  # a failed first attempt leaves nothing that looks like a run
            raise
        if dist.rank() == 0:
            print(f"run folder: {run_dir}")
        finished = True
    except user_errors() as e:  # the run failed (a stop by signal: 128 + its number)
        return report(e, getattr(e, "exit_code", 1))
    finally:
        dist.cleanup(wait_for_all=finished)
    return 0


if __name__ == "__main__":
    sys.exit(main())

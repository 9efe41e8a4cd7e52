"""The training loop shared by every method.

``setup`` joins the process group, picks the device, seeds and prepares the run folder; the caller builds the
method; :class:`Trainer` feeds it batches. The method's ``train_step`` owns the update order; the loop counts
optimizer steps and images seen (all processes, all datasets) and runs its side jobs as hooks
(``core/hooks.py``: NaN guard, stats + TensorBoard, sample grids, evaluation, signals, checkpoints).

Determinism: the batch of a step is a pure function of (seed, stream, step, rank, world) (``data/sampler.py``),
and a resumed run restores every RNG just before its first step, so it continues bit for bit.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from core import checkpoint as ckpt
from core import dist
from core.cli import RunError
from core.config import dump_config
from core.hooks import default_hooks
from core.runtime import compile_nets, pick_device, run_metadata, seed_everything, to_channels_last, to_device
from core.step import StepContext
from data.sampler import make_stream


class RunFolderError(RunError):
    """The run folder cannot be used as asked (it holds a checkpoint, or is not a folder)."""


class RunStopped(RunError):
    """SIGTERM/SIGINT stopped the run after saving a checkpoint; exit status 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def prepare_run_dir(cfg, resume: str | None, force: bool) -> tuple[Path, bool]:
    """``(run folder, whether this call created it)``."""
    run_dir = Path(cfg.run.dir) / str(cfg.run.name)
    created = False
    if dist.rank() == 0:
        if resume is None and ckpt.find_latest(run_dir) and not force:
            raise RunFolderError(
                f"{run_dir} already holds a checkpoint; continue it with --resume auto, "
                f"start over with --force, or pick another run.name=...")
        if run_dir.exists() and not run_dir.is_dir():
            raise RunFolderError(f"run folder {run_dir} exists and is not a folder")
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    return run_dir, created


RUN_FILES = ("config.yaml", "meta.json", "stats.jsonl", "tensorboard", "grids")


def remove_unfinished(run_dir: Path) -> None:
    """Delete what a failed first attempt wrote into the run folder it created (no checkpoint was saved),
    so no later command mistakes it for a run; anything else in it is left, and then the folder too."""
    import shutil

    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink(missing_ok=True)
    for tmp in run_dir.glob("*.tmp"):
        tmp.unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:  # something else is in it: keep
        pass


def setup(cfg, resume: str | None = None, force: bool = False) -> tuple[torch.device, Path, bool]:
    """Process group, device, seeds (``cfg.seed + rank``) and run folder; call before building the method.
    Returns ``(device, run folder, whether this call created the folder)``."""
    _, _, local_rank = dist.init_distributed("cuda" if pick_device(cfg.device).type == "cuda" else "cpu")
    device = pick_device(cfg.device, local_rank)
    seed_everything(cfg.seed + dist.rank())
    run_dir, created = prepare_run_dir(cfg, resume, force)
    return device, run_dir, created


class Trainer:
    """Runs ``method.train_step`` for ``cfg.train.steps`` steps with ``hooks`` (default: ``default_hooks()``)."""

    def __init__(self, method, cfg, run_dir: Path, hooks=None, started: float | None = None):
        self.method, self.cfg, self.run_dir = method, cfg, Path(run_dir)
        self.started = time.time() if started is None else started  # wall clock of stats.jsonl's "time"
        self.device = method.device
        self.rank, self.world = dist.rank(), dist.world_size()
        self.hooks = list(default_hooks() if hooks is None else hooks)
        names = [h.name for h in self.hooks]
        if len(set(names)) != len(names):
            raise ValueError(f"hook names must be unique, got {names}")
        if cfg.channels_last and self.device.type == "cuda":
            to_channels_last(method)
        method.init_ema()
        if cfg.train.compile:
            compile_nets(method, cfg.train.compile)
        self.ctx = StepContext(self.device, cfg.amp, cfg.cpu_amp)
        self.step = self.images = 0
        self.total = cfg.train.steps
        self.logs: dict = {}
        self.stats = None  # the StatsWriter hook, if any, sets itself here
        self.stop_signal = None  # set by the SignalStop hook
        self.save_best = False
        self._resume_rng = None

    # --- state -----------------------------------------------------------------------------------
    def resume_or_init(self, resume: str | None = None, init: str | None = None) -> None:
        """``resume``: None | 'auto' | checkpoint path (everything restored); ``init``: weights only."""
        path = ckpt.find_latest(self.run_dir) if resume == "auto" else (Path(resume) if resume else None)
        if path is not None:
            state = ckpt.load(path)
            if state["method"] != self.cfg.method:
                raise ckpt.CheckpointError(f"{path} is a {state['method']} checkpoint, not {self.cfg.method}")
            self.method.load_training_state(state)
            self.ctx.load_state_dict(state.get("scalers", {}))
            self.step, self.images = state["step"], state["images"]
            for h in self.hooks:
                h.load_state_dict(state.get("hooks", {}).get(h.name, {}))
            rngs = state["rng"]
            self._resume_rng = rngs[self.rank] if len(rngs) == self.world else rngs[0]
        elif init:
            self.method.load_training_state(ckpt.load(init), weights_only=True)
        else:
            dist.broadcast_module(self.method)

    def save(self, names) -> None:
        """Write the full training state to each file name in ``names`` (rank 0; every rank adds its RNG)."""
        rngs = dist.all_gather_object(ckpt.rng_state())
        sums = dist.all_gather_object(float(sum(p.detach().double().sum() for p in self.method.nets.parameters())))
        if len(set(sums)) > 1:
            raise RuntimeError(f"ranks hold different weights at step {self.step} (parameter sums {sums})")
        if self.rank != 0:
            return
        payload = {
            "format": ckpt.FORMAT, "method": self.cfg.method, "config": self.cfg.to_dict(),
            "step": self.step, "images": self.images, "world_size": self.world, "rng": rngs,
            "scalers": self.ctx.state_dict(), "meta": run_metadata(),
            "hooks": {h.name: h.state_dict() for h in self.hooks}, **self.method.training_state(),
        }
        for name in names:
            ckpt.save_atomic(payload, self.run_dir / name)

    # --- loop ------------------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        if self.rank == 0:
            dump_config(cfg, self.run_dir / "config.yaml")
            (self.run_dir / "meta.json").write_text(json.dumps(run_metadata(), indent=1))
        datasets = self.method.datasets(cfg, "train")
        bs = cfg.data.batch_size
        streams = {k: make_stream(ds, bs, cfg.seed, k, self.rank, self.world, self.step, cfg.data.hflip,
                                  cfg.data.workers, pin_memory=self.device.type == "cuda")
                   for k, ds in datasets.items()}
        self.images_per_step = bs * self.world * len(streams)
        self.bar = tqdm(total=self.total, initial=self.step, disable=self.rank != 0, dynamic_ncols=True,
                        desc=cfg.run.name)
        try:
            for h in self.hooks:
                h.before_train(self)
            if self._resume_rng is not None:
                # after building the streams: iter(DataLoader) draws from the global RNG, a straight run did so
                # earlier
                ckpt.set_rng_state(self._resume_rng)
            while self.step < self.total:
                batch = {k: to_device(next(s), self.device, cfg.channels_last) for k, s in streams.items()}
                self.logs = self.method.train_step(batch, self.step, self.ctx)
                self.method.update_ema(self.images_per_step)
                self.step += 1
                self.images += self.images_per_step
                self.bar.update(1)
                for h in self.hooks:
                    h.after_step(self)
                if self.stop_signal:
                    break
        finally:
            self.bar.close()
            for h in self.hooks:
                h.after_train(self)
        if self.stop_signal:  # an unfinished run must not look finished to `train.py ... && eval.py ...`
            import signal

            raise RunStopped(f"stopped by {self.stop_signal} at step {self.step} of {self.total}; checkpoint saved "
                             f"in {self.run_dir}; continue with the same command plus --resume auto",
                             int(getattr(signal, self.stop_signal)))
        return self.run_dir

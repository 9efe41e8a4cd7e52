"""The training loop shared by every method.

Counts optimizer steps and images seen (all processes, all datasets), writes stats.jsonl +
TensorBoard scalars, fixed sample grids (PNG + TensorBoard) and atomic checkpoints. The method's
``train_step`` owns the update order; this loop only feeds it batches.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core import checkpoint as ckpt
from core import dist
from core.cli import RunError
from core.config import dump_config
from data.sampler import images_to_float, make_stream
from models import build_method
from models.base import StepContext


class NonFiniteLossError(RunError):
    """A loss became NaN or infinite; training stops and the last good checkpoint is kept."""


class RunStopped(RunError):
    """SIGTERM/SIGINT stopped the run after saving a checkpoint; exit status 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def pick_device(kind: str, local_rank: int = 0) -> torch.device:
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RunError("device=cuda was requested but CUDA is not available; use device=cpu or auto")
        return torch.device("cuda", local_rank)
    if kind != "cpu":
        raise ValueError(f"device must be auto|cpu|cuda, got {kind!r}")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_channels_last(method) -> None:
    """channels_last for every 4-d parameter and buffer of ``method`` (``Module.to(memory_format=...)`` refuses
    modules that also hold 5-d weights, such as StyleGAN2's modulated convs)."""
    for t in list(method.parameters()) + list(method.buffers()):
        if t.dim() == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)


def compile_nets(method, setting) -> None:
    """``torch.compile`` every network's forward in place (``Module.compile``): parameter names, state_dict
    keys and checkpoints stay those of the uncompiled nets. ``setting``: true (inductor) or a backend name."""
    if setting is not True and not isinstance(setting, str):
        raise ValueError(f"train.compile must be false, true or a torch.compile backend name, got {setting!r}")
    for net in method.nets.values():
        net.compile(backend="inductor" if setting is True else setting)


def to_device(batch, device, channels_last=False):
    if isinstance(batch, dict):
        return images_to_float({k: to_device(v, device, channels_last) for k, v in batch.items()})
    if torch.is_tensor(batch):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def fixed_batch(datasets: dict, n: int) -> dict:
    """The first ``n`` images of each dataset (unflipped): the same grid at every step and after resume."""
    return {k: torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))]) for k, ds in datasets.items()}


def run_metadata() -> dict:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return {"argv": sys.argv, "git": rev, "torch": torch.__version__, "python": sys.version.split()[0]}


class _StopFlag:
    """Set by SIGTERM/SIGINT: the loop saves a checkpoint at the end of the current step and exits."""

    def __init__(self):
        self.set = False
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.set:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.set, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def save_checkpoint(method, ctx, cfg, step, images, run_dir, snapshot=False) -> Path | None:
    """Rank 0 writes checkpoint-latest.pt (and a numbered snapshot); every rank contributes its RNG state."""
    rngs = dist.all_gather_object(ckpt.rng_state())
    sums = dist.all_gather_object(float(sum(p.detach().double().sum() for p in method.nets.parameters())))
    if len(set(sums)) > 1:
        raise RuntimeError(f"ranks hold different weights at step {step} (parameter sums {sums})")
    if dist.rank() != 0:
        return None
    payload = {
        "format": ckpt.FORMAT, "method": cfg.method, "config": cfg.to_dict(),
        "step": step, "images": images, "world_size": dist.world_size(), "rng": rngs,
        "scalers": ctx.state_dict(), "meta": run_metadata(), **method.training_state(),
    }
    path = ckpt.save_atomic(payload, Path(run_dir) / ckpt.LATEST)
    if snapshot:
        ckpt.save_atomic(payload, Path(run_dir) / f"checkpoint-{step:07d}.pt")
    return path


class RunFolderError(RunError):
    """The run folder cannot be used as asked (it holds a checkpoint, or is not a folder)."""


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


def train(cfg, resume: str | None = None, init: str | None = None, force: bool = False) -> Path:
    """Train ``cfg``; returns the run directory. ``resume``: None | 'auto' | checkpoint path."""
    t_start = time.time()
    rank, world, local_rank = dist.init_distributed("cuda" if pick_device(cfg.device).type == "cuda" else "cpu")
    device = pick_device(cfg.device, local_rank)
    seed_everything(cfg.seed + rank)
    run_dir, created = prepare_run_dir(cfg, resume, force)
    try:
        return _train(cfg, resume, init, run_dir, rank, world, device)
    except BaseException:
        if created and ckpt.find_latest(run_dir) is None:
            remove_unfinished(run_dir)
        raise


def _train(cfg, resume, init, run_dir: Path, rank: int, world: int, device: torch.device) -> Path:
    method = build_method(cfg, device)
    if cfg.channels_last and device.type == "cuda":
        to_channels_last(method)
    method.init_ema()
    if cfg.train.compile:
        compile_nets(method, cfg.train.compile)
    ctx = StepContext(device, cfg.amp)
    step, images = 0, 0
    resume_rng = None

    resume_path = None
    if resume == "auto":
        resume_path = ckpt.find_latest(run_dir)
    elif resume:
        resume_path = Path(resume)
    if resume_path is not None:
        state = ckpt.load(resume_path)
        if state["method"] != cfg.method:
            raise ckpt.CheckpointError(f"{resume_path} is a {state['method']} checkpoint, not {cfg.method}")
        method.load_training_state(state)
        ctx.load_state_dict(state.get("scalers", {}))
        step, images = state["step"], state["images"]
        rngs = state["rng"]
        resume_rng = rngs[rank] if len(rngs) == world else rngs[0]  # restored just before the first step
    elif init:
        state = ckpt.load(init)
        method.load_training_state(state, weights_only=True)
    else:
        dist.broadcast_module(method)

    if rank == 0:
        dump_config(cfg, run_dir / "config.yaml")
        (run_dir / "meta.json").write_text(json.dumps(run_metadata(), indent=1))

    datasets = method.datasets(cfg, "train")
    bs = cfg.data.batch_size
    streams = {k: make_stream(ds, bs, cfg.seed, k, rank, world, step, cfg.data.hflip, cfg.data.workers,
                              pin_memory=device.type == "cuda") for k, ds in datasets.items()}
    images_per_step = bs * world * len(streams)
    fixed = to_device(fixed_batch(method.datasets(cfg, "test"), cfg.train.grid_size), device) if rank == 0 else None

    writer = stats = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        # a fresh (--force) run starts new logs; a resumed one drops what was logged after its checkpoint
        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step)
        stats_path = run_dir / "stats.jsonl"
        kept = [ln for ln in stats_path.read_text().splitlines() if json.loads(ln)["step"] <= step] \
            if step and stats_path.is_file() else []
        stats = open(stats_path, "w")
        stats.writelines(ln + "\n" for ln in kept)
        t_start -= json.loads(kept[-1]).get("time", 0.0) if kept else 0.0  # a resumed run's clock continues
        if step == 0:
            _write_grids(method, fixed, run_dir, writer, step)

    if resume_rng is not None:
        # after building the streams: iter(DataLoader) draws from the global RNG, a straight run did so earlier
        ckpt.set_rng_state(resume_rng)
    total = cfg.train.steps
    bar = tqdm(total=total, initial=step, disable=rank != 0, dynamic_ncols=True, desc=cfg.run.name)
    t0, last_logged = time.time(), step
    try:
        with _StopFlag() as stop:
            while step < total:
                batch = {k: to_device(next(s), device, cfg.channels_last) for k, s in streams.items()}
                logs = method.train_step(batch, step, ctx)
                bad = [k for k, v in logs.items() if not math.isfinite(v)]
                if bad:
                    last = ckpt.find_latest(run_dir)
                    raise NonFiniteLossError(
                        f"non-finite {', '.join(bad)} at step {step}; stopping. Last good checkpoint: "
                        f"{last or 'none yet'} (try a lower learning rate, amp=none, or a smaller clip_norm)")
                method.update_ema(images_per_step)
                step += 1
                images += images_per_step
                bar.update(1)
                if rank == 0 and (step % cfg.train.log_every == 0 or step == total):
                    dt = time.time() - t0
                    rate = (step - last_logged) * images_per_step / max(dt, 1e-9)
                    t0, last_logged = time.time(), step
                    rec = {"step": step, "kimg": images / 1000, "img_per_s": rate,
                           "time": round(time.time() - t_start, 3), **logs}
                    stats.write(json.dumps(rec) + "\n")
                    stats.flush()
                    for k, v in rec.items():
                        if k != "step":
                            writer.add_scalar(k if "/" in k else f"progress/{k}", v, step)
                    bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
                if rank == 0 and step % cfg.train.image_every == 0:
                    _write_grids(method, fixed, run_dir, writer, step)
                snap = cfg.train.snapshot_every and step % cfg.train.snapshot_every == 0
                if step % cfg.train.ckpt_every == 0 or step == total or snap or stop.set:
                    save_checkpoint(method, ctx, cfg, step, images, run_dir, snapshot=bool(snap))
                if stop.set:
                    name = signal.Signals(stop.signum).name
                    raise RunStopped(f"stopped by {name} at step {step} of {total}; checkpoint saved in {run_dir}; "
                                     "continue with the same command plus --resume auto", stop.signum)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
            stats.close()
    return run_dir


def _write_grids(method, fixed, run_dir, writer, step):
    from metrics.grid import image_grid, save_png

    grids_dir = run_dir / "grids"
    grids_dir.mkdir(exist_ok=True)
    for name, rows in method.sample_grids(fixed).items():
        img = image_grid(rows)
        save_png(img, grids_dir / f"{name}-{step:07d}.png")
        writer.add_image(f"grids/{name}", img, step, dataformats="HWC")

"""Side jobs of the training loop, one small class each. ``default_hooks`` gives their fixed order.

A hook sees the :class:`core.trainer.Trainer` (``tr``): ``tr.step`` / ``tr.images`` (already counted for the
step just taken), ``tr.logs`` (that step's losses), ``tr.rank``, ``tr.cfg``, ``tr.run_dir``. What a hook must
keep across a resume goes in ``state_dict`` (saved in every checkpoint under ``hooks/<name>``).
"""
from __future__ import annotations

import json
import math
import signal
import time

from core import checkpoint as ckpt
from core import dist
from core.cli import RunError
from core.figures import image_grid, save_png
from core.runtime import preserved_rng, to_device


class NonFiniteLossError(RunError):
    """A loss became NaN or infinite; training stops and the last good checkpoint is kept."""


class Hook:
    name = ""

    def before_train(self, tr) -> None:
        pass

    def after_step(self, tr) -> None:
        pass

    def after_train(self, tr) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _every(step: int, every, total: int, at_end: bool = True) -> bool:
    return bool(every) and step % every == 0 or (at_end and step == total)


class NonFiniteGuard(Hook):
    """Stops at the first NaN / inf loss, naming the last good checkpoint."""

    name = "nonfinite"

    def after_step(self, tr):
        bad = [k for k, v in tr.logs.items() if not math.isfinite(v)]
        if bad:
            last = ckpt.find_latest(tr.run_dir)
            raise NonFiniteLossError(
                f"non-finite {', '.join(bad)} at step {tr.step - 1}; stopping. Last good checkpoint: "
                f"{last or 'none yet'} (try a lower learning rate, amp=none, or a smaller clip_norm)")


class StatsWriter(Hook):
    """Rank 0: ``stats.jsonl`` and TensorBoard scalars every ``train.log_every`` steps; other hooks log through
    :meth:`write`. Every line has ``time``: wall seconds since the trainer's ``started`` (train.py: the command's
    start, so building the method and rendering data count), continued over resumes. A
    resumed run drops the lines logged after its checkpoint."""

    name = "stats"

    def __init__(self):
        self.writer = self.file = None
        self.t0 = self.last = None

    def before_train(self, tr):
        tr.stats = self
        if tr.rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(tr.run_dir / "tensorboard"), purge_step=tr.step)
        path = tr.run_dir / "stats.jsonl"
        kept = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= tr.step] \
            if tr.step and path.is_file() else []
        self.file = open(path, "w")
        self.file.writelines(ln + "\n" for ln in kept)
        self.t0, self.last = time.time(), tr.step
        self.start = tr.started - (json.loads(kept[-1]).get("time", 0.0) if kept else 0.0)

    def write(self, record: dict) -> None:
        """One stats.jsonl line (``step`` + scalars) and the same scalars in TensorBoard (rank 0 only)."""
        if self.file is None:
            return
        record = {"step": record["step"], "time": round(time.time() - self.start, 3),
                  **{k: v for k, v in record.items() if k != "step"}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for k, v in record.items():
            if k != "step":
                self.writer.add_scalar(k if "/" in k else f"progress/{k}", v, record["step"])

    def after_step(self, tr):
        if self.file is None or not _every(tr.step, tr.cfg.train.log_every, tr.total):
            return
        dt = time.time() - self.t0
        rate = (tr.step - self.last) * tr.images_per_step / max(dt, 1e-9)
        self.t0, self.last = time.time(), tr.step
        self.write({"step": tr.step, "kimg": tr.images / 1000, "img_per_s": rate, **tr.logs})
        tr.bar.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in tr.logs.items()}, refresh=False)

    def after_train(self, tr):
        if self.file is not None:
            self.writer.close()
            self.file.close()
            self.file = None


class GridWriter(Hook):
    """Rank 0: the method's sample grids of a fixed test batch at step 0 and every ``train.image_every`` steps
    (PNG in ``grids/`` and TensorBoard)."""

    name = "grids"

    def before_train(self, tr):
        if tr.rank != 0:
            return
        n = tr.cfg.train.grid_size
        test = tr.method.datasets(tr.cfg, "test")
        import torch

        # the first n images of each test dataset (unflipped): the same grid at every step and after resume
        fixed = {k: torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))]) for k, ds in test.items()}
        self.fixed = to_device(fixed, tr.device)
        if tr.step == 0:
            self.write(tr)

    def write(self, tr):
        folder = tr.run_dir / "grids"
        folder.mkdir(exist_ok=True)
        for name, rows in tr.method.sample_grids(self.fixed).items():
            img = image_grid(rows)
            save_png(img, folder / f"{name}-{tr.step:07d}.png")
            tr.stats.writer.add_image(f"grids/{name}", img, tr.step, dataformats="HWC")

    def after_step(self, tr):
        if tr.rank == 0 and _every(tr.step, tr.cfg.train.image_every, tr.total, at_end=False):
            self.write(tr)


class PeriodicEval(Hook):
    """Every ``every`` steps rank 0 runs ``evaluate(method) -> {name: float}`` on a fixed
    small test subset, without moving any RNG, and logs the scalars (``eval/<name>``). When ``metric`` improves
    (``mode`` min or max) the checkpointer also writes ``checkpoint-best.pt``; the best value survives resume."""

    name = "eval"

    def __init__(self, evaluate, every: int, metric: str | None = None, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"best-checkpoint mode must be min or max, got {mode!r}")
        self.evaluate, self.every, self.metric, self.mode = evaluate, every, metric, mode
        self.best = None  # {"step", "value"}

    def better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best["value"] if self.mode == "min" else value > self.best["value"]

    def after_step(self, tr):
        if not _every(tr.step, self.every, tr.total, at_end=False):
            return
        improved = False
        if tr.rank == 0:
            with preserved_rng():
                scores = self.evaluate(tr.method)
            tr.stats.write({"step": tr.step, **{f"eval/{k}": float(v) for k, v in scores.items()}})
            if self.metric is not None:
                if self.metric not in scores:
                    raise ValueError(f"best-checkpoint metric {self.metric!r} is not among the evaluation's "
                                   f"scalars {sorted(scores)}")
                improved = self.better(float(scores[self.metric]))
                if improved:
                    self.best = {"step": tr.step, "value": float(scores[self.metric])}
        tr.save_best = dist.all_gather_object(improved)[0]  # every rank takes part in the save
        if dist.world_size() > 1:
            self.best = dist.all_gather_object(self.best)[0]

    def state_dict(self):
        return {"best": self.best, "metric": self.metric, "mode": self.mode}

    def load_state_dict(self, state):
        if state.get("metric") == self.metric and state.get("mode") == self.mode:
            self.best = state.get("best")


class SignalStop(Hook):
    """SIGTERM / SIGINT: finish the current step, checkpoint, stop (a second signal aborts at once)."""

    name = "signals"

    def __init__(self):
        self.old = {}

    def before_train(self, tr):
        def handle(signum, frame):
            if tr.stop_signal:  # second signal: give up immediately
                raise KeyboardInterrupt
            tr.stop_signal = signal.Signals(signum).name

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.old[sig] = signal.signal(sig, handle)
            except ValueError:  # not in the main thread
                pass

    def after_train(self, tr):
        for sig, old in self.old.items():
            signal.signal(sig, old)
        self.old = {}


class Checkpointer(Hook):
    """``checkpoint-latest.pt`` every ``train.ckpt_every`` steps, at the end and on a stop signal; a numbered
    snapshot every ``train.snapshot_every``; ``checkpoint-best.pt`` when the evaluation says so."""

    name = "checkpoints"

    def after_step(self, tr):
        c = tr.cfg.train
        snap = bool(c.snapshot_every) and tr.step % c.snapshot_every == 0
        paths = []
        if _every(tr.step, c.ckpt_every, tr.total) or snap or tr.stop_signal:
            paths.append(ckpt.LATEST)
            if snap:
                paths.append(f"checkpoint-{tr.step:07d}.pt")
        if tr.save_best:
            paths.append(ckpt.BEST)
            tr.save_best = False
        if paths:
            tr.save(paths)


def default_hooks(evaluate=None, eval_every: int = 0, metric: str | None = None, mode: str = "min") -> list[Hook]:
    """The loop's side jobs in their fixed order: guard, stats, grids, evaluation, signals, checkpoints."""
    hooks = [NonFiniteGuard(), StatsWriter(), GridWriter()]
    if evaluate is not None and eval_every:
        hooks.append(PeriodicEval(evaluate, eval_every, metric, mode))
    return hooks + [SignalStop(), Checkpointer()]


"""Train-step throughput of every method, plus the synthetic loader.

For each config: build the method (through ``models.METHODS``, so any registered method works) on the
chosen device, then time ``--steps`` train steps after ``--warmup`` untimed ones, exactly as the training
loop feeds them (``to_device``, ``train_step``, ``update_ema``). Inputs: random images in [-1, 1] for
image-folder data (no dataset needed), the first batches of the method's own datasets for synthetic / W-code
data (methods 3's networks also read labels and w). Prints a Markdown table.

    python scripts/benchmark.py                                   # the four default configs, device auto
    python scripts/benchmark.py configs/synth_glasses.yaml --device cuda --amp bf16 --channels-last
    python scripts/benchmark.py synth_glasses data.batch_size=8 model.width=1.0 --steps 20
    python scripts/benchmark.py --loader                          # also time the synthetic data stream
    python scripts/benchmark.py --paper --random-weights --device cuda --amp bf16 --channels-last
    python scripts/benchmark.py --paper --random-weights --out cache/bench-weights  # keep the files for reuse

``--paper`` adds one row per method at its paper resolution (``PAPER_CONFIGS``: the CelebA configs of methods
1-2, ``configs/bench/*.yaml`` for the others; face_nets is this repo's own and has none). ``--random-weights``
writes a randomly initialised file, in the public format its loader reads strictly, for every weight key the
config needs and leaves null (StyleGAN2 ``g_ema``/``latent_avg``, ArcFace IR-SE50, VGGFace2 ResNet-50, torchvision
VGG16 / InceptionV3 state_dicts, face_nets checkpoints for the landmark net), so the real paper-size networks are
timed without any download. They go to a temporary folder deleted at the end, or with ``--out DIR`` to DIR,
where a later run reuses them (files are named by kind, resolution and width).
id_mapper without ``data.root`` gets batches of the (random) generator's own samples
and their w, the shapes a W-code dataset feeds. Synthetic renders stop at 256 px: larger sizes (stylegan2 at 1024) are
rendered at 256 and upsampled. ``bench/stylegan2_1024`` (full width) is CUDA-sized; on CPU
time it at ``data.batch_size=1`` or reduce ``model.width``.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset per config); on CPU the growth of the
process's peak RSS (``resource.getrusage(...).ru_maxrss``) during that config, a high-water mark: a config
that stays below an earlier config's peak shows 0, so run a single config for an exact CPU figure.
``--loader`` times ``data.sampler.make_stream`` (+ ``to_device``, as in the loop) over synthetic domains rendered at each config's size with a
small ``data.train_length`` (``--loader-length``; paper configs point at CelebA folders, so the loader is
always the synthetic one) and does not write the synthetic dataset cache.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from core.cli import clear_errors, report, user_errors  # noqa: E402
from core.config import CONFIG_DIR, Config, ConfigError, load_config  # noqa: E402
from core.runtime import pick_device, seed_everything, to_channels_last, to_device  # noqa: E402
from models import build_method  # noqa: E402
from core.step import StepContext  # noqa: E402
from data.synthetic import MAX_SIZE as SYNTH_MAX_SIZE  # noqa: E402

DEFAULT_CONFIGS = ["synth_glasses", "mask_synth_glasses", "celeba_glasses", "mask_celeba_glasses"]
PAPER_CONFIGS = ["celeba_glasses", "mask_celeba_glasses", "bench/stylegan2_1024", "bench/id_mapper_256",
                 "bench/g2g_224", "bench/mad_256"]
DOMAINS = ("a", "b")  # the loop draws data.batch_size images from each; every method reads batch[k]["image"]


def resolve_config(name: str) -> Path:
    """A config path, or a bare name looked up in configs/ (``synth_glasses`` -> configs/synth_glasses.yaml)."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml") if q.stem != "base")
    raise ConfigError(f"unknown config {name!r}: not a file and not in {CONFIG_DIR}; known: {', '.join(known)}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def random_weight_overrides(cfg, folder: Path, width: float = 1.0) -> list[str]:
    """``key=path`` overrides for every weight file ``cfg`` needs and leaves null, each written to ``folder``
    with random weights in the format its loader checks strictly (``Method.stub_weights``). ``width``: StyleGAN2
    channel multiplier."""
    from models import METHODS
    from models.stub_weights import StubWeights

    stub = StubWeights(cfg, folder, width)
    METHODS[cfg.method].stub_weights(cfg, stub)
    return stub.overrides


@torch.no_grad()
def generator_w_batches(cfg, method, device: torch.device, generator: torch.Generator, n: int) -> list[dict]:
    """id_mapper without a W-code folder: ``n`` batches of the frozen generator's own samples and their w,
    as ``data/w_codes.py`` items (image at the generator's size, w, index) for the id / attr streams."""
    g, bs = method.frozen["g"], cfg.data.batch_size
    out = []
    for j in range(n):
        b = {}
        for k in ("id", "attr"):
            w = g.mapping(torch.randn(bs, g.style_dim, generator=generator).to(device))
            img = g.synthesis(w, noise_mode=cfg.model.noise_mode).clamp_(-1, 1)
            b[k] = {"image": img, "w": w, "index": torch.arange(bs, device=device)}
        if cfg.model.train_real_attr:
            b["real"] = random_batch(cfg, device, generator)["a"]
        out.append(to_device(b, device))
    return out


def random_batch(cfg, device: torch.device, generator: torch.Generator) -> dict:
    bs, size = cfg.data.batch_size, cfg.data.size
    return {k: {"image": torch.rand(bs, 3, size, size, generator=generator).mul_(2).sub_(1)} for k in DOMAINS}


def example_batches(cfg, method, device: torch.device, generator: torch.Generator, n: int) -> list[dict]:
    """``n`` batches shaped as the loop feeds ``method``: random a/b images for image-folder data (CelebA
    configs need no dataset here); real first batches of the method's own datasets for data that is cheap to
    read (synthetic renders, generated W datasets), since those methods also read labels or w codes."""
    if cfg.data.name == "w_codes" and not cfg.data.root:
        return generator_w_batches(cfg, method, device, generator, n)
    if cfg.data.name not in ("synthetic", "w_codes"):
        return [to_device(random_batch(cfg, device, generator), device) for _ in range(n)]
    from data.sampler import make_stream

    c = Config(cfg)
    c.data = Config(cfg.data)
    c.data.update(train_length=min(cfg.data.train_length, 4 * cfg.data.batch_size), cache_dir=None)
    group = cfg.model.get("group_size")
    if group:  # identity groups (mad): few identities, so each of the short set's identities fills a group
        c.data.update(train_length=min(cfg.data.train_length, 4 * cfg.data.batch_size * group),
                      n_identities=min(cfg.data.n_identities, cfg.data.batch_size))
    if cfg.data.name == "synthetic" and cfg.data.size > SYNTH_MAX_SIZE:  # e.g. stylegan2 at 1024 px
        c.data.size = SYNTH_MAX_SIZE  # renders stop at 256 px: render there, upsample the images below
    streams = {k: make_stream(ds, c.data.batch_size, cfg.seed, k, 0, 1, 0, False)
               for k, ds in method.datasets(c, "train").items()}
    out = [{k: next(s) for k, s in streams.items()} for _ in range(n)]
    if c.data.size != cfg.data.size:
        size = (cfg.data.size, cfg.data.size)
        out = [{k: {n_: torch.nn.functional.interpolate(v, size=size, mode="bilinear", align_corners=False)
                    if n_.startswith("image") and torch.is_tensor(v) and v.dim() == 4 else v
                    for n_, v in items.items()} for k, items in b.items()} for b in out]
    return [to_device(b, device) for b in out]


def count_images(batch: dict) -> int:
    """Training images in one batch: every ``image*`` tensor of every stream, (..., 3, H, W) -> the leading dims."""
    n = 0
    for items in batch.values():
        for k, v in items.items():
            if k.startswith("image") and torch.is_tensor(v) and v.dim() >= 4:
                n += v[..., 0, 0, 0].numel()
    return n


def bench_train(cfg, device: torch.device, amp: str, channels_last: bool, steps: int, warmup: int) -> dict:
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = _rss_mib()
    method = build_method(cfg, device)
    if channels_last:
        to_channels_last(method)
    method.init_ema()
    ctx = StepContext(device, amp, cpu_amp=amp if amp == "bf16" else "none")
    g = torch.Generator().manual_seed(cfg.seed)
    # a few distinct random batches, made up front so their creation is not timed
    batches = example_batches(cfg, method, device, g, min(2, steps + warmup))
    if channels_last:
        batches = [to_device(b, device, True) for b in batches]
    images_per_step = cfg.data.batch_size * len(batches[0])  # what the loop counts (EMA, kimg)
    images_seen = count_images(batches[0])  # images through the nets: pairs and identity groups count in full
    step = 0
    for _ in range(warmup):
        method.train_step(batches[step % len(batches)], step, ctx)
        method.update_ema(images_per_step)
        step += 1
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        method.train_step(batches[step % len(batches)], step, ctx)
        method.update_ema(images_per_step)
        step += 1
    _sync(device)
    dt = (time.perf_counter() - t) / max(steps, 1)
    if device.type == "cuda":
        mem = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (cuda max alloc)"
    else:
        mem = f"{_rss_mib() - rss0:.0f} MiB (RSS peak delta)"
    del method, batches
    return {"method": cfg.method, "size": cfg.data.size, "batch": images_seen, "amp": ctx.amp,
            "s_step": dt, "img_s": images_seen / dt, "mem": mem}


def bench_loader(cfg, device: torch.device, length: int, steps: int, warmup: int) -> float:
    """img/s of the synthetic stream (both domains) through make_stream + to_device, as the loop draws it."""
    from data import synthetic_domains
    from data.sampler import make_stream

    d = Config(cfg.data)
    d.update(name="synthetic", train_length=length, cache_dir=None)
    if d.attribute not in ("glasses", "facial_hair"):
        d.attribute = "glasses"
    domains = synthetic_domains(d, "train")
    bs = d.batch_size
    streams = {k: make_stream(ds, bs, cfg.seed, k, 0, 1, 0, d.hflip, d.workers, pin_memory=device.type == "cuda")
               for k, ds in domains.items()}
    for _ in range(max(warmup, 1)):  # at least one: starts the workers
        for s in streams.values():
            to_device(next(s), device)
    n = max(steps, 1)
    _sync(device)
    t = time.perf_counter()
    for _ in range(n):
        for s in streams.values():
            to_device(next(s), device)
    _sync(device)
    dt = time.perf_counter() - t
    del streams
    return n * bs * len(domains) / dt


@clear_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("args", nargs="*", metavar="CONFIG|key=value",
                    help=f"config files or names in configs/ (default: {' '.join(DEFAULT_CONFIGS)}) and "
                         "key=value overrides applied to every config (e.g. data.batch_size=8)")
    ap.add_argument("--device", default="auto", help="cpu | cuda | auto (default)")
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast; on CPU only bf16, where the CPU has bf16 units (else fp32)")
    ap.add_argument("--channels-last", action="store_true", help="channels_last nets and inputs")
    ap.add_argument("--steps", type=int, default=10, help="timed train steps per config")
    ap.add_argument("--warmup", type=int, default=3, help="untimed train steps first")
    ap.add_argument("--loader", action="store_true", help="also time the synthetic data stream (make_stream)")
    ap.add_argument("--loader-length", type=int, default=512, help="synthetic images per domain for --loader")
    ap.add_argument("--paper", action="store_true",
                    help=f"add one config per method at its paper resolution: {' '.join(PAPER_CONFIGS)}")
    ap.add_argument("--random-weights", action="store_true",
                    help="write random weight files (public formats) for every weight key a config leaves null")
    ap.add_argument("--out", default=None, metavar="DIR",
                    help="with --random-weights: write the files to DIR and keep them (reused when present)")
    ap.add_argument("--random-width", type=float, default=1.0,
                    help="channel multiplier of the random StyleGAN2 generator file (1.0 = config F)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_intermixed_args(argv)

    overrides = [a for a in args.args if "=" in a]
    names = [a for a in args.args if "=" not in a] + (PAPER_CONFIGS if args.paper else [])
    names = names or DEFAULT_CONFIGS
    if args.steps < 1 or args.warmup < 0:
        raise ValueError("--steps must be >= 1 and --warmup >= 0")
    if args.out and not args.random_weights:
        raise ValueError("--out keeps the files of --random-weights; give both")
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        return _run(args, names, overrides, out)
    tmp = tempfile.TemporaryDirectory(prefix="bench-weights-") if args.random_weights else None
    try:
        return _run(args, names, overrides, Path(tmp.name) if tmp else None)
    finally:
        if tmp:
            tmp.cleanup()


def _run(args, names: list[str], overrides: list[str], weights_dir: Path | None) -> int:
    try:
        device = pick_device(args.device)
        cfgs = []
        for n in names:
            path, extra = resolve_config(n), overrides + [f"device={args.device}"]
            cfg = load_config(path, extra)
            if weights_dir is not None:
                cfg = load_config(path, extra + random_weight_overrides(cfg, weights_dir, args.random_width))
            rp, root = path.resolve(), CONFIG_DIR.resolve()
            cfgs.append((str(rp.relative_to(root).with_suffix("")) if rp.is_relative_to(root) else rp.stem, cfg))
    except user_errors() as e:
        return report(e, 2)
    if args.threads:
        torch.set_num_threads(args.threads)

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__}, device {dev_name}, {args.steps} timed steps after {args.warmup} warm-up"
          + (f", overrides: {' '.join(overrides)}" if overrides else "")
          + (f", random weight files (StyleGAN2 width {args.random_width})" if weights_dir else ""))
    print()
    header = ["config", "method", "resolution", "batch (img/step)", "device", "amp", "channels_last",
              "s/step", "img/s", "peak memory"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    loader_rows = []
    for name, cfg in cfgs:
        r = bench_train(cfg, device, args.amp, args.channels_last, args.steps, args.warmup)
        print(f"| {name} | {r['method']} | {r['size']} | {r['batch']} | {device.type} | {r['amp']} | "
              f"{args.channels_last} | {r['s_step']:.3f} | {r['img_s']:.1f} | {r['mem']} |", flush=True)
    if args.loader:  # after all train steps, so loader workers never run beside a timed train step
        for name, cfg in cfgs:
            loader_rows.append((name, cfg, bench_loader(cfg, device, args.loader_length, args.steps, args.warmup)))
        print()
        print("| config | loader resolution | batch (img/step) | workers | synthetic stream img/s |")
        print("|---|---|---|---|---|")
        for name, cfg, rate in loader_rows:
            print(f"| {name} | {cfg.data.size} | {cfg.data.batch_size * len(DOMAINS)} | {cfg.data.workers} | "
                  f"{rate:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

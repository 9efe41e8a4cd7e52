"""Loader throughput: JPEG decoding vs the uint8 memmap cache, through the training DataLoader.

Builds a temporary CelebA-like fixture (synthetic faces rendered at 256 px, resized to 178x178 and padded to
the 178x218 aligned frame, saved as JPEG quality 95), builds the cache, then times the same
``data.sampler.make_stream`` pipeline (flips on) over both datasets for each worker count.

    python scripts/benchmark_loader.py --count 2000 --size 128 --crop 178 --workers 0 2
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.cli import clear_errors  # noqa: E402
from data.cache import PathLoader, build_cache, cache_name, fingerprint, open_domain_cache, path_keys  # noqa: E402
from data.folders import ImageDomain  # noqa: E402
from data.sampler import images_to_float, make_stream  # noqa: E402
from data.synthetic import render, sample_factors  # noqa: E402


def write_fixture(folder: Path, count: int, unique: int) -> list[Path]:
    """``count`` 178x218 JPEGs cycling through ``unique`` rendered faces (shifted so files differ)."""
    faces = []
    for i in range(unique):
        face = Image.fromarray(render(sample_factors(0, i), 256)["image"]).resize((178, 178), Image.BICUBIC)
        frame = np.asarray(face)
        faces.append(np.concatenate([np.repeat(frame[:1], 20, 0), frame, np.repeat(frame[-1:], 20, 0)]))
    paths = []
    for k in range(count):
        p = folder / f"{k + 1:06d}.jpg"
        Image.fromarray(np.roll(faces[k % unique], k // unique, axis=1)).save(p, quality=95)
        paths.append(p)
    return paths


def rate(dataset, batch: int, workers: int, images: int) -> float:
    """Images per second over ``images`` images after a warm-up of 2 batches (workers started)."""
    stream = make_stream(dataset, batch, seed=0, name="bench", rank=0, world=1, start_step=0, flip=True,
                         workers=workers)
    for _ in range(2):
        next(stream)
    n = max(1, images // batch)
    t = time.perf_counter()
    for _ in range(n):
        images_to_float(next(stream))  # workers send uint8: the conversion back counts too
    dt = time.perf_counter() - t
    del stream
    return n * batch / dt


@clear_errors
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000, help="fixture images")
    ap.add_argument("--unique", type=int, default=64, help="distinct rendered faces in the fixture")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--crop", type=int, default=178)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--images", type=int, default=2000, help="images timed per measurement")
    ap.add_argument("--dir", help="keep the fixture here instead of a temporary folder")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads of the main process (DataLoader workers always use 1); on a "
                         "busy 2-core machine more threads make default_collate's torch.stack wait on each other")
    args = ap.parse_args(argv)
    if min(args.count, args.unique, args.size, args.batch, args.images, args.threads) <= 0 or args.crop < 0:
        raise ValueError("--count, --unique, --size, --batch, --images and --threads must be positive")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp)
        (root / "jpg").mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        paths = write_fixture(root / "jpg", args.count, args.unique)
        print(f"fixture: {len(paths)} JPEGs 178x218 in {time.perf_counter() - t:.1f}s ({root / 'jpg'})")
        t = time.perf_counter()
        base = root / "cache" / cache_name("bench", args.size, args.crop)
        build_cache(base, PathLoader(paths, args.size, args.crop), len(paths), args.size, args.crop,
                    fingerprint(path_keys(paths)), workers=max(args.workers))
        dt = time.perf_counter() - t
        print(f"cache build ({max(args.workers)} workers): {len(paths) / dt:.0f} img/s, "
              f"{len(paths) * 3 * args.size ** 2 / 2 ** 20:.0f} MiB")
        jpeg = ImageDomain(paths, args.size, args.crop)
        cached = open_domain_cache(root / "cache", "bench", paths, args.size, args.crop, mode="require")
        print(f"\nloader img/s  (batch {args.batch}, {args.size}px, crop {args.crop}, flips on, "
              f"{os.cpu_count()} CPUs, {args.threads} torch thread(s) in the main process)")
        print(f"{'workers':>8} {'jpeg':>10} {'cache':>10} {'ratio':>8}")
        for w in args.workers:
            r_jpeg = rate(jpeg, args.batch, w, min(args.images, 640))
            r_cache = rate(cached, args.batch, w, args.images * 5)
            print(f"{w:>8} {r_jpeg:>10.0f} {r_cache:>10.0f} {r_cache / r_jpeg:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of the synthetic face renderer and of SyntheticFaces construction (single process).

    python scripts/benchmark_synthetic.py --count 500 --sizes 32 64 128 256
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.cli import clear_errors  # noqa: E402
from data.synthetic import SyntheticFaces, render, sample_factors  # noqa: E402


def _rate(fn, count: int) -> float:
    t = time.perf_counter()
    fn()
    return count / (time.perf_counter() - t)


@clear_errors
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500, help="images per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--dataset-size", type=int, default=64, help="image size for the dataset timing")
    args = ap.parse_args(argv)
    n = args.count
    if n <= 0:
        raise ValueError("--count must be positive")

    rate = _rate(lambda: [sample_factors(0, i) for i in range(n)], n)
    print(f"sample_factors            {rate:10.0f} factors/s")
    factors = [sample_factors(0, i) for i in range(n)]
    for size in args.sizes:
        for f in factors[:10]:  # warm-up (grid cache)
            render(f, size)
        rate = _rate(lambda: [render(f, size) for f in factors], n)
        print(f"render {size:3d}px                {rate:10.0f} img/s")

    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(size=args.dataset_size, length=n, cache_dir=tmp)
        rate = _rate(lambda: SyntheticFaces(**kw), n)
        print(f"SyntheticFaces build {args.dataset_size}px  {rate:10.0f} img/s  (render + cache write)")
        rate = _rate(lambda: SyntheticFaces(**kw), n)
        print(f"SyntheticFaces load {args.dataset_size}px   {rate:10.0f} img/s  (from cache)")
        ds = SyntheticFaces(**kw)
        rate = _rate(lambda: [ds[(i, i % 2 == 1)] for i in range(n)], n)
        print(f"SyntheticFaces __getitem__ {rate:10.0f} items/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

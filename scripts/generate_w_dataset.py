"""Sample (w, image) pairs from a StyleGAN2 generator: the training data of method 3 (Nitzan et al. 2020).

    python scripts/generate_w_dataset.py --generator runs/stylegan2_synth/checkpoint-latest.pt \\
        --out cache/w_synth --count 6000 --truncation 0.7

--generator is a public-format StyleGAN2 checkpoint (g_ema + latent_avg) or a stylegan2 run's checkpoint.
z_i is row i of numpy's ``default_rng(seed).standard_normal((count, style_dim))`` as float32 (the same z for any
--batch; w may differ in the last bits), w_i = w_avg + truncation * (mapping(z_i) - w_avg), image_i =
synthesis(w_i) with the generator's constant noise, optionally resized to --size (bilinear, antialiased).
Writes (the layout data/w_codes.py reads):

    OUT/images/{i // 1000:05d}/{i:06d}.png    uint8 RGB
    OUT/w.npy                                 float32 (count, style_dim)
    OUT/meta.json                             written last and atomically: without it the folder is incomplete

A non-empty OUT is refused unless --force, which first removes OUT/meta.json, OUT/w.npy and OUT/images/.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.cli import clear_errors, report, user_errors  # noqa: E402
from core.runtime import pick_device  # noqa: E402
from data.w_codes import write_w_dataset  # noqa: E402
from models.nets.stylegan2 import load_generator  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="StyleGAN2 checkpoint (public format or a stylegan2 run's)")
    p.add_argument("--out", required=True, help="output folder (must be empty or absent unless --force)")
    p.add_argument("--count", type=int, required=True, help="number of samples")
    p.add_argument("--truncation", type=float, default=0.7, help="w truncation toward w_avg (1 = none)")
    p.add_argument("--size", type=int, default=None, help="resize images to this size (default: the generator's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the z sequence")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--force", action="store_true", help="overwrite the dataset files in a non-empty --out")
    args = p.parse_args(argv)
    if args.count <= 0 or args.batch <= 0 or (args.size is not None and args.size <= 0):
        p.error("--count, --batch and --size must be positive")
    return args


def prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty; pick another --out or add --force to overwrite")
        (out / "meta.json").unlink(missing_ok=True)  # first: the folder reads as incomplete from here on
        (out / "w.npy").unlink(missing_ok=True)
        shutil.rmtree(out / "images", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


@clear_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    out = Path(args.out)
    try:
        g, w_avg = load_generator(args.generator, device)
        prepare_out(out, args.force)
    except user_errors() as e:
        return report(e, 1)
    write_w_dataset(g, w_avg, out, args.count, args.seed, args.truncation, args.size, args.batch,
                    str(args.generator), progress=True)
    print(f"wrote {args.count} samples to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

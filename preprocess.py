"""Prepare content-transfer domains from local files: CelebA attribute splits or custom A/B folders.

Writes OUT/{trainA,trainB,testA,testB}.txt (one absolute image path per line; the official split also
writes valA/valB.txt), OUT/preprocess.json (what was selected and how), and, unless --no-cache, the
uint8 memmap cache OUT/cache/<domain>_<size>_<crop>.u8 + .json that training reads instead of JPEGs.

  python preprocess.py --celeba PATH --preset glasses --out data/celeba_glasses --size 128 --crop 178
  python preprocess.py --celeba PATH --attributes "Eyeglasses & ~Male" --out OUT --dry-run
  python preprocess.py --folders SRC --out OUT --size 128
  python preprocess.py --align ffhq --images PHOTOS --out ALIGNED --size 256   (face photos: see --help)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core.cli import clear_errors, report
from data.align import PRESETS as ALIGN_PRESETS
from data.attributes import PRESET_ALIASES, PRESETS, check_preset, resolve
from data.cache import PathLoader, build_cache, cache_name, check_cache, fingerprint, path_keys
from data.celeba import read_celeba, split_domains
from data.folders import DatasetLayoutError, list_domain

DOMAINS = ("trainA", "trainB", "valA", "valB", "testA", "testB")

EPILOG = """
presets (A = images WITH the content, the originals' code convention):
""" + "\n".join(f"  {k:15s} A: {p.a}\n  {'':15s} B: {p.b}" for k, p in PRESETS.items()) + f"""
  aliases: {', '.join(f'{a} -> {b}' for a, b in PRESET_ALIASES.items())}

expressions: attribute names of list_attr_celeba.txt combined with ~ (not), & (and), | (or) and
parentheses; NAME is true where the file has 1. --attributes gives A; B is --attributes-b or, by
default, ~(A) -- every image without the content (the originals' "every other image" B, which for
CelebA's binary labels is the same set as the proper negative). A and B must not overlap.

split: first-n (default, the originals' rule): the first --num-test images of each domain in file order
are test, the rest train. official: list_eval_partition.txt (0 train, 1 valid -> valA/valB, 2 test).

Differences from the original preprocess scripts: integer options are integers (they were strings);
--folders works (it crashed); B rules that the originals implied by if/elif order are explicit, so
A and B are disjoint; paths are absolute.

--align PRESET --images PHOTOS --out OUT: every face photo aligned into OUT/<name>.png (dlib landmarks; needs
pip install -r requirements-faces.txt); OUT/align_report.txt has one line per unreadable file, photo without
a face, or photo with several faces (the largest is kept; --all keeps each as <name>_0.png, <name>_1.png, ...),
one per photo renamed because another would get the same output name (a.jpg and a.png: a_jpg.png, a_png.png),
and the counts of files, aligned photos, failures and images written. OUT must not be PHOTOS (a sub-folder of
it is fine); a run that would write a file OUT already holds refuses to start unless --force. Exit status: 0
if every file was aligned, 1 if any failed, 2 on bad arguments.
"""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _summary(domains: dict[str, list[Path]]) -> str:
    rows = ["domain     train      val     test    total"]
    for d in ("A", "B"):
        n = [len(domains[f"{s}{d}"]) if f"{s}{d}" in domains else None for s in ("train", "val", "test")]
        cells = " ".join(f"{'-' if v is None else v:>8}" for v in n)
        rows.append(f"{d:6s} {cells} {sum(v or 0 for v in n):>8}")
    return "\n".join(rows)


def celeba_domains(args) -> tuple[dict[str, list[Path]], dict]:
    if args.preset and args.attributes:
        raise DatasetLayoutError("give --preset or --attributes, not both")
    if args.attributes_b and not args.attributes:
        raise DatasetLayoutError("--attributes-b needs --attributes (a preset defines B itself)")
    rule_a, rule_b, label = resolve(args.attributes or check_preset(args.preset or "glasses"), args.attributes_b)
    table = read_celeba(args.celeba)
    rows = split_domains(table, rule_a, rule_b, args.split, args.num_test)
    domains = {k: table.paths(v) for k, v in rows.items()}
    info = {"source": "celeba", "root": str(table.root.resolve()), "images": len(table.files), "preset": label,
            "A": rule_a, "B": rule_b, "split": args.split,
            "num_test": args.num_test if args.split == "first-n" else None}
    print(f"CelebA {table.root}: {len(table.files)} images; {label}: A = {rule_a} | B = {rule_b}; split {args.split}"
          + (f" ({args.num_test} test per domain)" if args.split == "first-n" else ""))
    return domains, info


def folder_domains(args) -> tuple[dict[str, list[Path]], dict]:
    src = Path(args.folders)
    if not src.is_dir():
        raise DatasetLayoutError(f"--folders {src} does not exist")
    domains = {d: list_domain(src, d) for d in ("trainA", "trainB", "testA", "testB")}
    print(f"folders {src}")
    return domains, {"source": "folders", "root": str(src.resolve())}


def align_photos(args) -> int:
    """--align: 0 if every file of --images was aligned, 1 if any failed, 2 on bad arguments."""
    from data.align_folder import REPORT, align_folder
    from data.dlib_faces import FaceExtrasMissing

    try:
        if not args.images or not args.out:
            raise DatasetLayoutError("--align needs --images PHOTOS and --out FOLDER")
        if args.size is not None and args.size <= 0:
            raise DatasetLayoutError("--size must be positive")
        _, failed, lines = align_folder(args.images, args.out, args.align, args.size, args.all, force=args.force)
    except (DatasetLayoutError, FaceExtrasMissing) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"report: {Path(args.out) / REPORT}")
    return 1 if failed else 0


@clear_errors  # any other bad input (unreadable, unwritable, non-UTF-8 files) also ends in one error line
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--celeba", help="aligned CelebA folder (img_align_celeba/ + list_attr_celeba.txt ...)")
    src.add_argument("--folders", help="custom dataset: folder with trainA/ trainB/ testA/ testB/ (or .txt lists)")
    src.add_argument("--align", choices=ALIGN_PRESETS, help="align the face photos of --images: ffhq (FFHQ/StyleGAN "
                     "crop), celeba (CelebA's 178x218 aligned frame), arcface (insightface's 112 px crop)")
    ap.add_argument("--images", help="--align: folder of photos (searched recursively)")
    ap.add_argument("--all", action="store_true", help="--align: every face of a photo (default: the largest)")
    ap.add_argument("--force", action="store_true", help="--align: overwrite the files of an earlier run in --out")
    ap.add_argument("--out", help="output folder (required unless --dry-run)")
    ap.add_argument("--preset", help=f"CelebA preset: {', '.join(PRESETS)} (default glasses)")
    ap.add_argument("--attributes", help='CelebA expression for domain A, e.g. "Eyeglasses & ~Male"')
    ap.add_argument("--attributes-b", help="CelebA expression for domain B (default: ~(A))")
    ap.add_argument("--split", choices=("first-n", "official"), default="first-n", help="CelebA test rule")
    ap.add_argument("--num-test", type=int, default=64, help="first-n: test images per domain (default 64)")
    ap.add_argument("--size", type=int, default=None, help="cache resolution (= data.size; default 128); --align: "
                    "output size (default ffhq 256, celeba 178 = the frame's width, arcface 112)")
    ap.add_argument("--crop", type=int, default=None,
                    help="centre crop in px before resizing (= data.crop); default 178 for CelebA, none for "
                         "folders; 0 = none")
    ap.add_argument("--resize-filter", choices=("bilinear", "bicubic"), default="bilinear",
                    help="cache resize filter (= data.resize_filter; default bilinear, as the originals)")
    ap.add_argument("--no-cache", action="store_true", help="write the lists only")
    ap.add_argument("--rebuild-cache", action="store_true", help="rebuild caches even if up to date")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="decoding processes")
    ap.add_argument("--dry-run", action="store_true", help="print counts per domain and split, write nothing")
    args = ap.parse_args(argv)
    if args.align:
        return align_photos(args)
    args.size = 128 if args.size is None else args.size

    try:
        if args.folders and (args.preset or args.attributes or args.attributes_b):
            raise DatasetLayoutError("--preset/--attributes apply to --celeba only")
        if args.size <= 0 or args.num_test <= 0:
            raise DatasetLayoutError("--size and --num-test must be positive")
        crop = (178 if args.celeba else None) if args.crop is None else (args.crop or None)
        if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
            raise DatasetLayoutError(f"--out {args.out} exists and is not a folder")
        domains, info = celeba_domains(args) if args.celeba else folder_domains(args)
        print(_summary(domains))
        if args.dry_run:
            return 0
        if not args.out:
            raise DatasetLayoutError("--out is required (or use --dry-run)")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for d in DOMAINS:
            if d in domains:
                _write_atomic(out / f"{d}.txt", "\n".join(str(p.resolve()) for p in domains[d]) + "\n")
            elif (out / f"{d}.txt").exists():
                (out / f"{d}.txt").unlink()  # stale list from an earlier run with another split
        info.update(counts={d: len(v) for d, v in domains.items()}, size=args.size, crop=crop,
                    resize_filter=args.resize_filter,
                    cache=None if args.no_cache else str((out / "cache").resolve()))
        _write_atomic(out / "preprocess.json", json.dumps(info, indent=1) + "\n")
        print(f"wrote lists to {out}")
        if not args.no_cache:
            for d, paths in domains.items():
                base = out / "cache" / cache_name(d, args.size, crop)
                fp = fingerprint(path_keys(paths))
                f = args.resize_filter
                if not args.rebuild_cache and check_cache(base, len(paths), args.size, crop, fp, f) is None:
                    print(f"cache {base}.u8 is up to date")
                    continue
                build_cache(base, PathLoader(paths, args.size, crop, f), len(paths), args.size, crop, fp,
                            workers=args.workers, progress=True, resample=f)
                print(f"cache {base}.u8: {len(paths)} images at {args.size}px")
    except DatasetLayoutError as e:
        return report(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Datasets. ``DOMAIN_BUILDERS`` maps ``data.name`` to a function returning the two attribute domains.

Domain ``a`` holds images WITH the content attribute (e.g. glasses), domain ``b`` images without it
(the code convention of the content-transfer papers' repositories; their papers call these B and A).

``folders`` and ``celeba`` serve images from the uint8 memmap cache (``data/cache.py``, written by
``preprocess.py``) when ``data.cache`` allows and a valid cache for the list, size, crop and filter exists;
otherwise they decode the image files. Caches live outside the dataset (see :func:`_cache_dir`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from data.cache import open_domain_cache
from data.folders import DatasetLayoutError, ImageDomain, list_domain


def synthetic_domains(d, split: str) -> dict:
    from data.synthetic import CONTENT_ATTRIBUTES, SyntheticFaces, world_args

    if d.attribute not in CONTENT_ATTRIBUTES:
        raise ValueError(f"data.attribute {d.attribute!r} is not a synthetic content attribute; "
                         f"choose one of {list(CONTENT_ATTRIBUTES)}")
    length = d.train_length if split == "train" else d.test_length
    common = dict(size=d.size, length=length, seed=d.seed, n_identities=d.n_identities,
                  cache_dir=d.cache_dir, **world_args(d))
    # each domain is its own image stream: split names keep them disjoint and deterministic
    return {
        "a": SyntheticFaces(split=f"{split}-a", attributes={d.attribute: True}, **common),
        "b": SyntheticFaces(split=f"{split}-b", attributes={d.attribute: False}, **common),
    }


def _domain(d, cache_dir: Path, name: str, paths) -> torch.utils.data.Dataset:
    """The cached dataset for ``paths`` if ``data.cache`` allows and one is valid, else decoding."""
    cached = open_domain_cache(cache_dir, name, paths, d.size, d.crop, d.cache, d.workers, d.resize_filter)
    return cached if cached is not None else ImageDomain(paths, d.size, d.crop, d.resize_filter)


def _cache_dir(d, root: Path) -> Path:
    """Where the uint8 caches of dataset folder ``root`` live, never inside it unless asked for.

    ``data.cache_root`` if set; for a folder written by ``preprocess.py`` (it holds ``preprocess.json``),
    the ``cache/`` folder preprocess.py built in it; else ``<folder of data.cache_dir>/<root's name>-<hash of
    root's absolute path>`` (``cache/celeba-1f2e3d4c`` by default), so datasets on read-only storage work and two datasets
    never share a cache folder.
    """
    if d.cache_root:
        return Path(d.cache_root)
    root = Path(root).resolve()
    made = root / "preprocess.json"
    if made.is_file():
        try:
            cached = json.loads(made.read_text(encoding="utf-8")).get("cache")
        except (ValueError, AttributeError) as e:
            raise DatasetLayoutError(f"{made}: not a preprocess.py record ({e})") from None
        if cached:  # preprocess.py --no-cache records null
            return root / "cache"
    parent = Path(d.cache_dir).parent if d.cache_dir else Path("cache")
    return parent / f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


def folder_domains(d, split: str) -> dict:
    if not d.root:
        raise DatasetLayoutError("data.root must point to a folder with trainA/trainB/testA/testB")
    root = Path(d.root)
    if not root.is_dir():
        raise DatasetLayoutError(f"data.root {root} does not exist")
    names = {k: f"{split}{k.upper()}" for k in ("a", "b")}
    return {k: _domain(d, _cache_dir(d, root), n, list_domain(root, n)) for k, n in names.items()}


def celeba_domains(d, split: str) -> dict:
    """A/B straight from the CelebA attribute file: ``data.attribute`` is a preset or an expression."""
    from data.attributes import resolve
    from data.celeba import _cached_table, find_root, split_domains

    if not d.root:
        raise DatasetLayoutError("data.root must point to the CelebA folder "
                                 "(img_align_celeba/ + list_attr_celeba.txt)")
    root = find_root(d.root)
    table = _cached_table(str(root.resolve()))
    rule_a, rule_b, _ = resolve(d.attribute, d.attribute_b)
    rows = split_domains(table, rule_a, rule_b, d.split_rule, d.num_test)
    names = {k: f"{split}{k.upper()}" for k in ("a", "b")}
    return {k: _domain(d, _cache_dir(d, root), n, table.paths(rows[n])) for k, n in names.items()}


DOMAIN_BUILDERS = {
    "synthetic": synthetic_domains,
    "folders": folder_domains,
    "celeba": celeba_domains,
}


def build_domains(data_cfg, split: str) -> dict:
    """The ``{"a": Dataset, "b": Dataset}`` pair for ``split`` in {"train", "test"}."""
    try:
        builder = DOMAIN_BUILDERS[data_cfg.name]
    except KeyError:
        raise ValueError(f"unknown data.name {data_cfg.name!r}; choose one of {sorted(DOMAIN_BUILDERS)}") from None
    return builder(data_cfg, split)

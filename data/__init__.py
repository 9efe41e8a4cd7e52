"""Datasets. ``DOMAIN_BUILDERS`` maps ``data.name`` to a function returning the two attribute domains.

Domain ``a`` holds images WITH the content attribute (e.g. glasses), domain ``b`` images without it
(the code convention of the content-transfer papers' repositories; their papers call these B and A).
"""
from __future__ import annotations

from pathlib import Path

from data.folders import DatasetLayoutError, ImageDomain, list_domain


def synthetic_domains(d, split: str) -> dict:
    from data.synthetic import CONTENT_ATTRIBUTES, SyntheticFaces

    if d.attribute not in CONTENT_ATTRIBUTES:
        raise ValueError(f"data.attribute {d.attribute!r} is not a synthetic content attribute; "
                         f"choose one of {list(CONTENT_ATTRIBUTES)}")
    length = d.train_length if split == "train" else d.test_length
    common = dict(size=d.size, length=length, seed=d.seed, n_identities=d.n_identities,
                  cache_dir=d.cache_dir)
    # each domain is its own image stream: split names keep them disjoint and deterministic
    return {
        "a": SyntheticFaces(split=f"{split}-a", attributes={d.attribute: True}, **common),
        "b": SyntheticFaces(split=f"{split}-b", attributes={d.attribute: False}, **common),
    }


def folder_domains(d, split: str) -> dict:
    if not d.root:
        raise DatasetLayoutError("data.root must point to a folder with trainA/trainB/testA/testB")
    root = Path(d.root)
    if not root.is_dir():
        raise DatasetLayoutError(f"data.root {root} does not exist")
    return {k: ImageDomain(list_domain(root, f"{split}{k.upper()}"), d.size, d.crop) for k in ("a", "b")}


DOMAIN_BUILDERS = {
    "synthetic": synthetic_domains,
    "folders": folder_domains,
}


def build_domains(data_cfg, split: str) -> dict:
    """The ``{"a": Dataset, "b": Dataset}`` pair for ``split`` in {"train", "test"}."""
    try:
        builder = DOMAIN_BUILDERS[data_cfg.name]
    except KeyError:
        raise ValueError(f"unknown data.name {data_cfg.name!r}; choose one of {sorted(DOMAIN_BUILDERS)}") from None
    return builder(data_cfg, split)

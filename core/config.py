"""YAML configs: a schema (base.yaml + the method's defaults), experiment files on top, dotted CLI overrides.

Resolution order, later wins:
  1. ``configs/base.yaml``                 common keys (run, data, train, eval)
  2. ``configs/methods/<method>.yaml``     the method's ``model:`` keys and its own defaults
  3. the experiment file(s)                may only set keys that 1+2 define (``_base_`` chains allowed)
  4. ``a.b.c=value`` overrides             same rule; values parsed with ``yaml.safe_load``

An unknown key anywhere in 3 or 4 is an error that names the closest valid key. Keys listed in ``CHOICES``
take one of fixed words and boolean keys take true/false; anything else is an error naming where it came from.
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path

import yaml

from core.cli import read_utf8

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# where ``<method>.yaml`` (a method's ``model:`` keys and defaults) is looked up, in order; a method defined
# outside the repo (e.g. a test's toy method) adds its folder here
METHOD_CONFIG_DIRS: list[Path] = [CONFIG_DIR / "methods"]


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


# Keys whose value is one of fixed words (their YAML comments list the same words; a test checks both).
# YAML 1.1 reads off/on/yes/no as booleans, in a file and on the command line alike; such a boolean is
# taken back as the word when the key offers it (``data.cache: off`` -> "off").
CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "amp": ("none", "bf16", "fp16"),
    "cpu_amp": ("none", "bf16"),
    "data.cache": ("auto", "build", "require", "off"),
    "data.split_rule": ("first-n", "official"),
    "data.resize_filter": ("bilinear", "bicubic"),
    "model.norm": ("instance", "batch", "none"),
    "model.recon": ("mse", "l1"),
    "model.confusion_target": ("b", "flip", "half"),
    "model.lr_schedule": ("cosine", "constant"),
    "model.class_encoder": ("resnet50_vggface2", "small", "face_nets"),
    "model.content_norm": ("in", "none"),
    "model.gan_mode": ("lsgan", "vanilla"),
    "model.perceptual": ("vgg16", "l1"),
    "model.identity": ("ir_se50", "small"),
    "model.noise_mode": ("const", "random", "none"),
    "model.attr_encoder": ("inception_v3", "small"),
    "model.attr_bn": ("auto", "running", "batch"),
    "model.id_loss": ("l1", "cosine"),
    "model.pixel_mask": ("gaussian", "uniform"),
    "model.phase": ("ae", "disentangle", "joint"),
    "model.encoder": ("resnet18", "compact"),
    "train.best_mode": ("min", "max"),
    "eval.identity_judge_kind": ("small", "ir_se50", "dlib"),
    "eval.features": ("inception", "face_identity"),
}
_BOOL_WORDS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}


def check_choice(key: str, value, origin: str):
    """``value`` of a ``CHOICES`` key, a YAML boolean turned back into its word; ConfigError if not listed."""
    choices = CHOICES[key]
    if isinstance(value, bool):
        value = next((w for w in _BOOL_WORDS[value] if w in choices), value)
    if value not in choices:
        shown = f"{str(value).lower()} (YAML reads off/no/on/yes as booleans)" if isinstance(value, bool) \
            else repr(value)
        raise ConfigError(f"config key {key!r} (from {origin}) must be one of {' | '.join(choices)}, got {shown}")
    return value


class Config(dict):
    """A dict with attribute access for nested keys (``cfg.train.steps``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name, value):
        self[name] = value

    def __deepcopy__(self, memo):
        return Config({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in self.items()}


def _to_config(d):
    if isinstance(d, dict):
        return Config({k: _to_config(v) for k, v in d.items()})
    return d


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(read_utf8(path, ConfigError)) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{at}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _flat_keys(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        keys.append(prefix + k)
        if isinstance(v, dict):
            keys += _flat_keys(v, prefix + k + ".")
    return keys


def _unknown_key(key: str, schema: dict, origin: str) -> ConfigError:
    valid = _flat_keys(schema)
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if not near:  # try the last component alone, e.g. 'train.stpes' -> 'train.steps'
        leaf = key.rsplit(".", 1)[-1]
        near = [k for k in valid if difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]], cutoff=0.75)][:1]
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return ConfigError(f"unknown config key {key!r} (from {origin}){hint}")


def merge_strict(schema: dict, update: dict, origin: str, prefix: str = "", root: dict | None = None) -> None:
    """Merge ``update`` into ``schema`` in place; every key must already exist in ``schema``."""
    root = schema if root is None else root
    for k, v in update.items():
        full = prefix + k
        if k not in schema:
            raise _unknown_key(full, root, origin)
        if isinstance(schema[k], dict):
            if v is None:
                continue
            if not isinstance(v, dict):
                raise ConfigError(f"config key {full!r} (from {origin}) is a section; give its sub-keys, not {v!r}")
            merge_strict(schema[k], v, origin, full + ".", root)
        else:
            if isinstance(schema[k], bool) and not isinstance(v, bool):
                raise ConfigError(f"config key {full!r} (from {origin}) must be true or false, got {v!r}")
            schema[k] = check_choice(full, v, origin) if full in CHOICES else copy.deepcopy(v)


def merge_open(base: dict, update: dict) -> None:
    """Merge ``update`` into ``base`` in place, adding new keys (used for schema files only)."""
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_open(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def parse_override(text: str) -> dict:
    """``'train.steps=100'`` -> ``{'train': {'steps': 100}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed
    return out


def _experiment_chain(path: Path, seen=()) -> list[tuple[Path, dict]]:
    """The experiment file and its ``_base_`` ancestors, oldest first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"_base_ cycle through {path}")
    data = _read_yaml(path)
    bases = data.pop("_base_", None) or []
    if isinstance(bases, str):
        bases = [bases]
    chain = []
    for b in bases:
        chain += _experiment_chain((path.parent / b), seen + (path,))
    return chain + [(path, data)]


def known_methods() -> list[str]:
    return sorted({p.stem for d in METHOD_CONFIG_DIRS for p in Path(d).glob("*.yaml")})


def method_schema(method) -> Path:
    """The ``<method>.yaml`` of ``METHOD_CONFIG_DIRS`` (the first that has one)."""
    for d in METHOD_CONFIG_DIRS:
        path = Path(d) / f"{method}.yaml"
        if isinstance(method, str) and path.is_file():
            return path
    raise ConfigError(f"unknown method {method!r}; choose one of {known_methods()}")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = (), base: dict | None = None) -> Config:
    """Resolve a config from an experiment file (or a saved resolved config ``base``) plus overrides.

    ``base`` (a checkpoint's config) is laid over the current schema of its method, so runs saved before a
    key existed load with that key's default.
    """
    layers: list[tuple[str, dict]] = []
    if path is not None:
        layers += [(str(p), d) for p, d in _experiment_chain(Path(path))]
    layers += [(f"override {o!r}", parse_override(o)) for o in overrides]

    schema = _read_yaml(CONFIG_DIR / "base.yaml")
    method = schema.get("method") if base is None else base.get("method")
    for _, d in ([] if base is not None else layers):
        method = d.get("method", method)
    merge_open(schema, _read_yaml(method_schema(method)))
    schema["method"] = method
    if base is not None:
        # a saved run's values win; keys added to the schema since it was saved get today's defaults
        merge_open(schema, base)
    for origin, d in layers:
        if base is not None and "method" in d and d["method"] != schema["method"]:
            raise ConfigError(f"{origin}: cannot change method of a saved run ({schema['method']} -> {d['method']})")
        merge_strict(schema, d, origin)
    for key in CHOICES:  # defaults and saved configs (runs saved before a value was checked)
        *parents, leaf = key.split(".")
        node = schema
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = check_choice(key, node[leaf], "the saved run's config" if base is not None else "the schema")
    return _to_config(schema)


def dump_config(cfg: dict, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg.to_dict() if isinstance(cfg, Config) else cfg, f, sort_keys=False)
    os.replace(tmp, path)

"""Factors of the synthetic faces: sampling, edits (swap / remove / mirror) and flat factor vectors.

Every face is a pure function of ``(seed, split, index)``: :func:`sample_factors` draws the generative factors
(grouped as identity / pose / expression / style plus the two content attributes glasses and facial hair).
"""
from __future__ import annotations

import copy
import math
import zlib
from functools import lru_cache

import numpy as np

MAX_EXPRESSION_SCALE = 3.0  # at 3 already ~3 % of faces open the mouth past the chin line and ~12 % lower the
# brows onto the eyes (painter.expression_overlaps; none up to 2): a cartoon, and the most this painter allows
GROUPS = ("identity", "pose", "expression", "style", "glasses", "facial_hair")
CONTENT_ATTRIBUTES = ("glasses", "facial_hair")
DEFAULT_ATTRIBUTE_PROBS = {"glasses": 0.5, "facial_hair": 0.3}
N_LANDMARKS = 12
LANDMARK_NAMES = ("eye_l", "eye_r", "brow_l", "brow_r", "nose_tip", "mouth_l", "mouth_r",
                  "upper_lip", "lower_lip", "chin", "jaw_l", "jaw_r")
FLIP_PAIRS = ((0, 1), (2, 3), (5, 6), (10, 11))
# Landmark permutation applied after mirroring an image horizontally.
FLIP_PERM = np.arange(N_LANDMARKS)
for _a, _b in FLIP_PAIRS:
    FLIP_PERM[_a], FLIP_PERM[_b] = _b, _a
del _a, _b

HAIR_STYLES = ("short", "long", "bald")
GLASSES_SHAPES = ("round", "rect", "aviator")
FACIAL_HAIR_TYPES = ("moustache", "goatee", "beard")
MIN_SIZE, MAX_SIZE = 32, 256
# Bump whenever sampling or rendering changes: invalidates dataset caches.
RENDER_VERSION = 3

_IDENTITY_TAG = 2 ** 32 + 17  # outside the crc32 range used for split ids

_SKIN_LIGHT = (0.98, 0.85, 0.76)
_SKIN_DARK = (0.40, 0.26, 0.18)
_HAIR_COLOURS = ((0.07, 0.06, 0.06), (0.24, 0.15, 0.09), (0.45, 0.29, 0.16),
                 (0.88, 0.74, 0.44), (0.64, 0.27, 0.10), (0.70, 0.70, 0.72))
_IRIS_COLOURS = ((0.36, 0.21, 0.10), (0.22, 0.45, 0.78), (0.28, 0.55, 0.32),
                 (0.50, 0.56, 0.62), (0.12, 0.08, 0.05))
_FRAME_COLOURS = ((0.03, 0.03, 0.04), (0.03, 0.03, 0.04), (0.20, 0.10, 0.05),
                  (0.05, 0.10, 0.40), (0.62, 0.04, 0.08), (0.04, 0.32, 0.16))
_TINT_COLOURS = ((0.08, 0.08, 0.10), (0.35, 0.20, 0.05), (0.08, 0.20, 0.45))
_SHIRT_COLOURS = ((0.85, 0.85, 0.88), (0.15, 0.20, 0.35), (0.55, 0.12, 0.12),
                  (0.20, 0.45, 0.30), (0.30, 0.30, 0.32), (0.85, 0.65, 0.20))


# ----------------------------------------------------------------------------- sampling

class _Draws:
    """Sequential reader over one block of uniforms (fixed layout -> stable streams)."""

    def __init__(self, rng: np.random.Generator, n: int):
        self._u = rng.random(n).tolist()
        self._i = 0

    def rand(self) -> float:
        x = self._u[self._i]
        self._i += 1
        return x

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.rand()

    def choice(self, n: int) -> int:
        return min(int(self.rand() * n), n - 1)

    def colour(self, base, jitter: float) -> list:
        return [min(max(c + jitter * (2.0 * self.rand() - 1.0), 0.0), 1.0) for c in base]


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _contrast(colour: list, against: list, min_diff: float) -> list:
    """Darken (or, on dark skin, lighten) ``colour`` until its luma differs by ``min_diff``."""
    lc, la = _luma(colour), _luma(against)
    if abs(lc - la) >= min_diff:
        return colour
    if la - min_diff >= 0.03:
        k = (la - min_diff) / max(lc, 1e-3)
        return [min(c * k, 1.0) for c in colour]
    t = min((la + min_diff - lc) / max(1.0 - lc, 1e-3), 1.0)
    return [c + (1.0 - c) * t for c in colour]


def _split_id(split: str) -> int:
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, got {type(split).__name__}")
    return zlib.crc32(split.encode("utf-8"))


@lru_cache(maxsize=65536)
def _identity_cached(seed: int, identity_id: int) -> tuple:
    d = _Draws(np.random.default_rng([seed, _IDENTITY_TAG, identity_id]), 32)
    t = d.rand()
    skin = [lo + (hi - lo) * t for lo, hi in zip(_SKIN_DARK, _SKIN_LIGHT)]
    p = {
        "face_w": d.uniform(0.40, 0.49),
        "face_h": d.uniform(0.53, 0.62),
        "skin": d.colour(skin, 0.04),
        "eye_spacing": d.uniform(0.16, 0.21),
        "eye_y": d.uniform(-0.08, -0.02),
        "eye_w": d.uniform(0.075, 0.095),
        "eye_h": d.uniform(0.048, 0.064),
        "iris": d.colour(_IRIS_COLOURS[d.choice(len(_IRIS_COLOURS))], 0.06),
        "hair": d.colour(_HAIR_COLOURS[d.choice(len(_HAIR_COLOURS))], 0.06),
        "hair_style": int(np.searchsorted((0.4, 0.8), d.rand(), side="right")),  # short/long/bald
        "hair_volume": d.uniform(0.03, 0.11),
        "brow_thickness": d.uniform(0.04, 0.065),
        "brow_length": d.uniform(0.08, 0.11),
        "nose_size": d.uniform(0.8, 1.25),
        "mouth_w": d.uniform(0.11, 0.155),
        "lip_thickness": d.uniform(0.018, 0.030),
    }
    return tuple(p.items())


def _identity_params(seed: int, identity_id: int) -> dict:
    return {k: (list(v) if isinstance(v, list) else v)
            for k, v in _identity_cached(int(seed), int(identity_id))}


def _attribute_probs(attributes) -> dict:
    """Normalise an ``attributes`` argument into ``{name: probability of presence}``."""
    probs = dict(DEFAULT_ATTRIBUTE_PROBS)
    for name, val in (attributes or {}).items():
        if name not in CONTENT_ATTRIBUTES:
            raise ValueError(f"unknown attribute {name!r}; valid attributes: {CONTENT_ATTRIBUTES}")
        if val is None:
            continue
        if isinstance(val, (bool, np.bool_)):
            probs[name] = 1.0 if val else 0.0
            continue
        p = float(val)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"attribute {name!r}: probability must be in [0, 1], got {val!r}")
        probs[name] = p
    return probs


POSE_CENTRE = {"tx": 0.0, "ty": -0.13, "roll": 0.0, "scale": 1.425}  # the middle of each pose range


def sample_factors(seed: int, index: int, n_identities: int = 1000, attributes: dict | None = None,
                   split: str = "train", pose_range: float = 1.0, expression_scale: float = 1.0) -> dict:
    """Factors of image ``index`` of the stream ``(seed, split)``; a pure function of its arguments.

    Identity parameters depend only on ``(seed, identity_id)``. ``attributes`` maps a content
    attribute to True (force present), False (force absent) or a presence probability; the
    attribute's parameters are sampled either way, so forcing never changes the other factors.
    ``pose_range`` scales each pose factor's spread about the middle of its range (1: the world's; 0: every face
    at one position, roll and scale, as aligned photos); the random draws are the same at any value.
    ``expression_scale`` multiplies how far the expression moves the brows and the mouth in the picture (1: the
    world's); the expression factors themselves (and so every label) stay the same. It is kept in the expression
    group as ``amplitude`` when not 1.
    """
    if not 0.0 <= pose_range <= 1.0:
        raise ValueError(f"pose_range must be in [0, 1], got {pose_range}")
    if not 0.0 <= expression_scale <= MAX_EXPRESSION_SCALE:
        raise ValueError(f"expression_scale must be in [0, {MAX_EXPRESSION_SCALE}], got {expression_scale}")
    probs = _attribute_probs(attributes)
    if n_identities < 1:
        raise ValueError("n_identities must be >= 1")
    if index < 0 or seed < 0:
        raise ValueError("seed and index must be non-negative")
    d = _Draws(np.random.default_rng([int(seed), _split_id(split), int(index)]), 64)
    identity_id = d.choice(int(n_identities))
    identity = _identity_params(seed, identity_id)
    pose = {
        "tx": d.uniform(-0.12, 0.12),
        "ty": d.uniform(-0.2, -0.06),
        "roll": d.uniform(-0.25, 0.25),
        "scale": d.uniform(1.3, 1.55),  # faces fill the frame like aligned CelebA crops
    }
    if pose_range != 1.0:
        pose = {k: POSE_CENTRE[k] + pose_range * (v - POSE_CENTRE[k]) for k, v in pose.items()}
    expression = {
        "smile": d.uniform(-0.5, 1.0),
        "mouth_open": max(0.0, d.uniform(-0.4, 1.0)),
        "brow_raise": d.uniform(-0.6, 1.0),
    }
    if expression_scale != 1.0:  # the world's own amplitude keeps the factors (and caches) it always had
        expression["amplitude"] = float(expression_scale)
    style = {
        "bg_a": d.colour((d.uniform(0.2, 0.85),) * 3, 0.25),
        "bg_b": d.colour((d.uniform(0.2, 0.85),) * 3, 0.25),
        "bg_angle": d.uniform(-math.pi, math.pi),
        "light_azimuth": d.uniform(-math.pi, math.pi),
        "light_elevation": d.uniform(0.45, 1.2),
        "light_intensity": d.uniform(0.15, 0.5),
        "shirt": d.colour(_SHIRT_COLOURS[d.choice(len(_SHIRT_COLOURS))], 0.08),
    }
    has_glasses = d.rand() < probs["glasses"]
    _tinted, _tint = d.rand() < 0.35, d.uniform(0.25, 0.6)
    glasses = {
        "shape": d.choice(len(GLASSES_SHAPES)),
        "colour": d.colour(_FRAME_COLOURS[d.choice(len(_FRAME_COLOURS))], 0.03),
        "thickness": d.uniform(0.035, 0.055),
        "lens_w": d.uniform(0.10, 0.13),
        "lens_h": d.uniform(0.075, 0.095),
        "tint": _tint if _tinted else 0.0,
        "tint_colour": d.colour(_TINT_COLOURS[d.choice(len(_TINT_COLOURS))], 0.03),
    }
    has_hair = d.rand() < probs["facial_hair"]
    near_hair, other = d.rand() < 0.75, _HAIR_COLOURS[d.choice(len(_HAIR_COLOURS))]
    base = [c * 0.75 for c in identity["hair"]] if near_hair else other
    facial_hair = {
        "type": d.choice(len(FACIAL_HAIR_TYPES)),
        "colour": _contrast(d.colour(base, 0.05), identity["skin"], 0.28),
        "density": d.uniform(0.8, 1.0),
    }
    return {
        "identity_id": identity_id,
        "identity": identity,
        "pose": pose,
        "expression": expression,
        "style": style,
        "glasses": glasses if has_glasses else None,
        "facial_hair": facial_hair if has_hair else None,
    }


def _as_groups(groups) -> tuple:
    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    for g in groups:
        if g not in GROUPS:
            raise ValueError(f"unknown group {g!r}; valid groups: {GROUPS}")
    return groups


def swap(target: dict, source: dict, groups) -> dict:
    """Deep copy of ``target`` with ``groups`` (a name or iterable) taken from ``source``."""
    out = copy.deepcopy(target)
    for g in _as_groups(groups):
        out[g] = copy.deepcopy(source[g])
        if g == "identity":
            out["identity_id"] = source["identity_id"]
    return out


def remove(factors: dict, attribute: str) -> dict:
    """Copy of ``factors`` with the content attribute ``attribute`` absent."""
    if attribute not in CONTENT_ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; valid attributes: {CONTENT_ATTRIBUTES}")
    out = copy.deepcopy(factors)
    out[attribute] = None
    return out


def mirror(factors: dict) -> dict:
    """Factors of the horizontally mirrored scene: ``render(mirror(f))`` ~= ``flip(render(f))``.

    Landmarks of the mirrored render equal the flipped landmarks with :data:`FLIP_PERM` applied.
    """
    out = copy.deepcopy(factors)
    out["pose"]["tx"] = -out["pose"]["tx"]
    out["pose"]["roll"] = -out["pose"]["roll"]
    st = out["style"]
    st["bg_angle"] = math.atan2(math.sin(st["bg_angle"]), -math.cos(st["bg_angle"]))
    st["light_azimuth"] = math.atan2(math.sin(st["light_azimuth"]), -math.cos(st["light_azimuth"]))
    return out


# Length of each factor_vectors() entry.
FACTOR_DIMS = {"identity": 24, "pose": 4, "expression": 3, "style": 15, "glasses": 14, "facial_hair": 8}


def _one_hot(i: int, n: int) -> list:
    v = [0.0] * n
    v[i] = 1.0
    return v


def factor_vectors(factors: dict) -> dict:
    """Numeric ground truth per group (fixed length per key) for probes and disentanglement scores.

    identity (24): face w/h, skin rgb, eye spacing/y/w/h, iris rgb, hair rgb, hair style one-hot (3),
    hair volume, brow thickness/length, nose size, mouth width, lip thickness.
    pose (4): tx, ty, roll, scale. expression (3): smile, mouth_open, brow_raise.
    style (15): bg_a rgb, bg_b rgb, cos/sin bg angle, cos/sin light azimuth, light elevation,
    light intensity, shirt rgb.
    glasses (14): presence, shape one-hot (3), frame rgb, thickness, lens w/h, tint, tint rgb.
    facial_hair (8): presence, type one-hot (3), rgb, density. Attribute vectors are zeros if absent.
    """
    i, p, e, s = (factors[k] for k in ("identity", "pose", "expression", "style"))
    ident = [i["face_w"], i["face_h"], *i["skin"], i["eye_spacing"], i["eye_y"], i["eye_w"],
             i["eye_h"], *i["iris"], *i["hair"], *_one_hot(i["hair_style"], len(HAIR_STYLES)),
             i["hair_volume"], i["brow_thickness"], i["brow_length"], i["nose_size"],
             i["mouth_w"], i["lip_thickness"]]
    style = [*s["bg_a"], *s["bg_b"], math.cos(s["bg_angle"]), math.sin(s["bg_angle"]),
             math.cos(s["light_azimuth"]), math.sin(s["light_azimuth"]), s["light_elevation"],
             s["light_intensity"], *s["shirt"]]
    g = factors["glasses"]
    glasses = ([1.0, *_one_hot(g["shape"], len(GLASSES_SHAPES)), *g["colour"], g["thickness"],
                g["lens_w"], g["lens_h"], g["tint"], *g["tint_colour"]] if g else [0.0] * 14)
    h = factors["facial_hair"]
    fh = ([1.0, *_one_hot(h["type"], len(FACIAL_HAIR_TYPES)), *h["colour"], h["density"]]
          if h else [0.0] * 8)
    vec = {
        "identity": ident,
        "pose": [p["tx"], p["ty"], p["roll"], p["scale"]],
        "expression": [e["smile"], e["mouth_open"], e["brow_raise"]],
        "style": style,
        "glasses": glasses,
        "facial_hair": fh,
    }
    return {k: np.asarray(v, dtype=np.float32) for k, v in vec.items()}

"""Procedural synthetic faces with full ground truth: the project's default, embedded dataset.

Every image is a pure function of ``(seed, split, index)``: :func:`sample_factors` draws the
generative factors (grouped as identity / pose / expression / style plus the two content
attributes glasses and facial hair), :func:`render` turns them into an RGB image, one soft
content mask per attribute and a set of landmarks.

Coordinates. The image plane is ``(u, v)`` in ``[-1, 1]`` (u right, v down); the pixel
coordinate is ``x = (u + 1) * size / 2 - 0.5`` so pixel centres sit on integers. The face is
modelled in a local frame ``(X, Y)`` and placed rigidly by the pose:
``(u, v) = (tx, ty) + scale * R(roll) @ (X, Y)``. All geometry is in these normalised units,
so the same factors give the same face at every size.

Landmarks (``N_LANDMARKS = 12``, order of :data:`LANDMARK_NAMES`; "l" / "r" is the viewer's
left / right in the face frame, i.e. negative / positive local X):
eye centre l/r, brow centre l/r, nose tip, mouth corner l/r, upper lip, lower lip, chin, jaw l/r.

Masks. ``render(f)["masks"][a]`` is the visible opacity of attribute ``a`` after everything
drawn above it (and the lighting), so ``render(f)`` and ``render(remove(f, a))`` differ only
where the mask is non-zero.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import tempfile
import zlib
from functools import lru_cache

import numpy as np

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


def sample_factors(seed: int, index: int, n_identities: int = 1000, attributes: dict | None = None,
                   split: str = "train") -> dict:
    """Factors of image ``index`` of the stream ``(seed, split)``; a pure function of its arguments.

    Identity parameters depend only on ``(seed, identity_id)``. ``attributes`` maps a content
    attribute to True (force present), False (force absent) or a presence probability; the
    attribute's parameters are sampled either way, so forcing never changes the other factors.
    """
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
    expression = {
        "smile": d.uniform(-0.5, 1.0),
        "mouth_open": max(0.0, d.uniform(-0.4, 1.0)),
        "brow_raise": d.uniform(-0.6, 1.0),
    }
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


# ----------------------------------------------------------------------------- rendering

@lru_cache(maxsize=None)
def _grid(size: int):
    c = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    return c[None, :], c[:, None]


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ValueError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
    return int(size)


def _rgb(c):
    return np.asarray(c, dtype=np.float32).reshape(3, 1, 1)


class _Canvas:
    """Channel-first float canvas with the face frame, soft coverage and back-to-front 'over'."""

    def __init__(self, size: int, pose: dict):
        self.size = size
        ur, vc = _grid(size)
        s, r = pose["scale"], pose["roll"]
        self.tx, self.ty, self.s = pose["tx"], pose["ty"], s
        self.cos, self.sin = math.cos(r), math.sin(r)
        du, dv = ur - np.float32(self.tx), vc - np.float32(self.ty)
        a, b = np.float32(self.cos / s), np.float32(self.sin / s)
        self.X = du * a + dv * b
        self.Y = dv * a - du * b
        self.px = s * size / 2.0  # pixels per local unit
        self.img = np.empty((3, size, size), np.float32)
        self.masks = {}

    def to_pixels(self, pts) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        x, y = pts[:, 0], pts[:, 1]
        u = self.tx + self.s * (self.cos * x - self.sin * y)
        v = self.ty + self.s * (self.sin * x + self.cos * y)
        h = self.size / 2.0
        return np.stack([(u + 1.0) * h - 0.5, (v + 1.0) * h - 0.5], axis=1)

    def box(self, x0, x1, y0, y1):
        """Pixel slices covering the local box [x0, x1] x [y0, y1] (None if off-image)."""
        c, s, k = self.cos, self.sin, self.s
        xs = (x0, x1, x0, x1)
        ys = (y0, y0, y1, y1)
        h = self.size / 2.0
        us = [(self.tx + k * (c * x - s * y) + 1.0) * h for x, y in zip(xs, ys)]
        vs = [(self.ty + k * (s * x + c * y) + 1.0) * h for x, y in zip(xs, ys)]
        i0, i1 = max(int(min(us)) - 2, 0), min(int(max(us)) + 3, self.size)
        j0, j1 = max(int(min(vs)) - 2, 0), min(int(max(vs)) + 3, self.size)
        if i0 >= i1 or j0 >= j1:
            return None
        return slice(j0, j1), slice(i0, i1)

    def cov(self, d, opacity: float = 1.0):
        """Anti-aliased coverage (~1 px ramp) of the region ``d < 0`` of a local-units SDF."""
        a = d * np.float32(-self.px * opacity)
        a += np.float32(0.5 * opacity)
        np.maximum(a, _ZERO, out=a)
        return np.minimum(a, np.float32(opacity), out=a)

    def paint(self, sl, alpha, colour, attr: str | None = None):
        """Composite ``colour`` (rgb or (3,h,w)) with ``alpha`` over the region ``sl``."""
        ys, xs = sl
        if colour.ndim == 1:
            colour = colour.reshape(3, 1, 1)
        view = self.img[:, ys, xs]
        view += alpha * (colour - view)
        for name, m in self.masks.items():
            if name != attr:
                m[ys, xs] *= 1.0 - alpha
        if attr is not None:
            m = self.masks.get(attr)
            if m is None:
                m = self.masks[attr] = np.zeros((self.size, self.size), np.float32)
            mv = m[ys, xs]
            mv += alpha * (1.0 - mv)


def _ellipse(X, Y, cx, cy, rx, ry):
    """Approximate SDF of an axis-aligned ellipse (exact on circles)."""
    dx = (X - np.float32(cx)) * np.float32(1.0 / rx)
    dy = (Y - np.float32(cy)) * np.float32(1.0 / ry)
    k = np.sqrt(dx * dx + dy * dy)
    k -= np.float32(1.0)
    k *= np.float32(min(rx, ry))
    return k


def _round_box(X, Y, cx, cy, hx, hy, r):
    qx = np.abs(X - np.float32(cx)) - np.float32(hx - r)
    qy = np.abs(Y - np.float32(cy)) - np.float32(hy - r)
    out = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    out += np.minimum(np.maximum(qx, qy), 0.0)
    out -= np.float32(r)
    return out


_ZERO = np.float32(0.0)
_FACE_CY = 0.05  # face ellipse centre (local y)


def _layout(i: dict, e: dict) -> dict:
    """Derived feature positions (local units) shared by the renderer and the landmarks."""
    ey = i["eye_y"]
    ny = ey + 0.16 * i["nose_size"] ** 0.3 + 0.02
    return {
        "brow_y": ey - i["eye_h"] - 0.055 - 0.045 * e["brow_raise"],  # brow baseline
        "nose_y": ny,                                                 # nostrils / nose tip
        "mouth_y": max(i["face_h"] * 0.46 + 0.05, ny + 0.13),         # mouth corners
        "mouth_w": i["mouth_w"] * (1.0 + 0.12 * max(e["smile"], 0.0)),  # half width
        "smile_depth": 0.055 * e["smile"],                            # centre drop vs corners
        "half_open": 0.055 * e["mouth_open"] + 0.004,
        "lip": i["lip_thickness"] + 0.006,
    }


def _landmarks_local(f: dict) -> np.ndarray:
    i, L = f["identity"], _layout(f["identity"], f["expression"])
    sp, ey, a, b, cy = i["eye_spacing"], i["eye_y"], i["face_w"], i["face_h"], _FACE_CY
    by, ny, my, w = L["brow_y"] - 0.012, L["nose_y"], L["mouth_y"], L["mouth_w"]
    mc, edge = my + L["smile_depth"], L["half_open"] + L["lip"]
    ja, jb = a * math.cos(math.radians(50)), b * math.sin(math.radians(50))
    return np.array([
        (-sp, ey), (sp, ey), (-sp, by), (sp, by), (0.0, ny), (-w, my), (w, my),
        (0.0, mc - edge), (0.0, mc + edge), (0.0, cy + b), (-ja, cy + jb), (ja, cy + jb)],
        dtype=np.float64)


def render(factors: dict, size: int = 64) -> dict:
    """Render factors to ``{"image": uint8 (H,W,3), "masks": {attr: float32 (H,W)}, "landmarks": (12,2)}``."""
    size = _check_size(size)
    i, p, e, st = factors["identity"], factors["pose"], factors["expression"], factors["style"]
    gl, fh = factors["glasses"], factors["facial_hair"]
    cv = _Canvas(size, p)
    X, Y = cv.X, cv.Y
    f32 = np.float32

    # Background: linear gradient between two colours.
    ur, vc = _grid(size)
    ga = st["bg_angle"]
    t = ur * f32(0.5 * math.cos(ga)) + vc * f32(0.5 * math.sin(ga))
    t += f32(0.5)
    np.clip(t, f32(0.0), f32(1.0), out=t)
    bga, bgb = _rgb(st["bg_a"]), _rgb(st["bg_b"])
    cv.img[...] = bga + t * (bgb - bga)

    a, b, cy = i["face_w"], i["face_h"], _FACE_CY
    skin = np.asarray(i["skin"], np.float32)
    hair = np.asarray(i["hair"], np.float32)
    style = HAIR_STYLES[i["hair_style"]]
    vol = i["hair_volume"]
    sp, ey, ew, eh = i["eye_spacing"], i["eye_y"], i["eye_w"], i["eye_h"]
    fg = np.zeros((size, size), np.float32)  # head coverage, receives the lighting

    def head(sl, alpha, colour):
        cv.paint(sl, alpha, colour)
        v = fg[sl]
        v += alpha * (1.0 - v)

    # Shirt / shoulders.
    sl = cv.box(-1.4, 1.4, cy + b * 0.8, 3.0)
    if sl:
        d = _ellipse(X[sl], Y[sl], 0.0, cy + b + 0.62, 0.95, 0.55)
        head(sl, cv.cov(d), _rgb(st["shirt"]))
    # Long hair behind the head.
    if style == "long":
        sl = cv.box(-a - 0.15, a + 0.15, cy - b - vol - 0.1, cy + b * 0.9)
        if sl:
            xs, ys = X[sl], Y[sl]
            d = np.maximum(_ellipse(xs, ys, 0.0, cy - 0.02, a + 0.08 + vol * 0.4, b + vol + 0.04),
                           ys - f32(cy + b * 0.75))
            head(sl, cv.cov(d), hair * f32(0.85))
    # Neck.
    sl = cv.box(-a * 0.6, a * 0.6, cy, cy + b + 0.7)
    if sl:
        xs, ys = X[sl], Y[sl]
        d = np.maximum(np.abs(xs) - f32(a * 0.5), np.abs(ys - f32(cy + b * 0.5 + 0.3)) - f32(b * 0.5 + 0.25))
        head(sl, cv.cov(d), skin * f32(0.8))
    # Ears.
    sl = cv.box(-a - 0.08, a + 0.08, ey - 0.06, ey + 0.18)
    if sl:
        d = _ellipse(np.abs(X[sl]), Y[sl], a - 0.005, ey + 0.06, 0.055, 0.085)
        head(sl, cv.cov(d), skin * f32(0.9))
    # Face.
    sl = cv.box(-a - 0.02, a + 0.02, cy - b - 0.02, cy + b + 0.02)
    if sl:
        head(sl, cv.cov(_ellipse(X[sl], Y[sl], 0.0, cy, a, b)), skin)
    # Nose: soft bridge shadow and nostrils.
    ns = i["nose_size"]
    L = _layout(i, e)
    ny = L["nose_y"]
    sl = cv.box(-0.08, 0.08, ny - 0.12, ny + 0.04)
    if sl:
        xs, ys = X[sl], Y[sl]
        d = _ellipse(xs, ys, 0.0, ny - 0.03, 0.04 * ns, 0.06 * ns)
        cv.paint(sl, cv.cov(d, 0.45), skin * f32(0.78))
        d = _ellipse(np.abs(xs), ys, 0.028 * ns, ny, 0.02 * ns, 0.013)
        cv.paint(sl, cv.cov(d, 0.85), skin * f32(0.45))
    # Eyes: dark outline, sclera, iris, pupil (symmetric in |X|).
    sl = cv.box(-sp - ew - 0.03, sp + ew + 0.03, ey - eh - 0.03, ey + eh + 0.03)
    if sl:
        xs, ys = np.abs(X[sl]), Y[sl]
        d = _ellipse(xs, ys, sp, ey, ew, eh)
        cv.paint(sl, cv.cov(d - f32(0.014)), skin * f32(0.3))
        cv.paint(sl, cv.cov(d), _rgb((0.97, 0.97, 0.95)))
        di = _ellipse(xs, ys, sp, ey, eh * 0.9, eh * 0.9)
        cv.paint(sl, cv.cov(np.maximum(di, d)), _rgb(i["iris"]))
        di += f32(eh * 0.45)
        cv.paint(sl, cv.cov(di), _rgb((0.04, 0.03, 0.03)))
    # Brows: arched capsules, raised by the expression.
    bl, bt = i["brow_length"], i["brow_thickness"]
    by = L["brow_y"]
    sl = cv.box(-sp - bl - 0.05, sp + bl + 0.05, by - 0.08, by + 0.06)
    if sl:
        xs, ys = np.abs(X[sl]) - f32(sp), Y[sl]
        q = np.clip(xs * f32(1.0 / bl), f32(-1.0), f32(1.0))
        yc = f32(by) - f32(0.012) * (1.0 - q * q)
        dx = xs - q * f32(bl)
        dy = ys - yc
        d = np.sqrt(dx * dx + dy * dy) - f32(bt * 0.5) * (1.0 - f32(0.35) * q * q)
        brow = _contrast([c * 0.7 for c in i["hair"]], i["skin"], 0.25)
        cv.paint(sl, cv.cov(d), _rgb(brow))
    # Hair cap (short / long) or side tufts (bald).
    sl = cv.box(-a - 0.15, a + 0.15, cy - b - vol - 0.08, cy + b * 0.3)
    if sl:
        xs, ys = X[sl], Y[sl]
        d = _ellipse(xs, ys, 0.0, cy - vol * 0.6, a + 0.03 + vol * 0.3, b + vol * 0.6 + 0.01)
        hl = f32(cy - 0.62 * b) + f32(0.62 * b / (a * a)) * xs * xs
        d = np.maximum(d, (ys - hl) * f32(0.7))
        if style == "bald":
            d = np.maximum(d, np.maximum(f32(0.7 * a) - np.abs(xs), f32(cy - 0.45 * b) - ys))
        head(sl, cv.cov(d), hair)

    # Mouth geometry (needed by facial hair).
    my, w, depth, ho = L["mouth_y"], L["mouth_w"], L["smile_depth"], L["half_open"]
    lip = L["lip"] - 0.006

    # Facial hair (content attribute).
    if fh is not None:
        kind = FACIAL_HAIR_TYPES[fh["type"]]
        sl = cv.box(-a - 0.03, a + 0.03, ny - 0.1, cy + b + 0.05)
        if sl:
            xs, ys = X[sl], Y[sl]
            ax = np.abs(xs)
            q = np.minimum(ax * f32(1.0 / (w + 0.05)), f32(1.0))
            q2 = q * q
            top0 = max(my + depth - ho - lip - 0.035, ny + 0.055)  # stays below the nose
            top = f32(top0) - f32(depth + 0.01) * q2
            d = np.maximum(np.abs(ys - top) - f32(0.038) * (1.0 - f32(0.3) * q2), ax - f32(w + 0.05))
            if kind == "moustache":  # horseshoe: strokes down the sides of the mouth
                ds = np.maximum(np.abs(ax - f32(w + 0.03)) - f32(0.026),
                                np.abs(ys - f32(my + 0.035)) - f32(0.095))
                d = np.minimum(d, ds)
            elif kind == "goatee":
                dg = np.maximum(_ellipse(xs, ys, 0.0, my + 0.055, w + 0.035, 0.125), f32(my - 0.02) - ys)
                d = np.minimum(d, dg)
            elif kind == "beard":
                # upper edge: cheekbone level at the sides, just under the nose at the centre
                side = np.maximum(1.0 - ax * ax * f32(1.0 / (a * a)), 0.0)
                cut = f32(ey + 0.13) + f32((ny + 0.02) - (ey + 0.13)) * side
                db = np.maximum(_ellipse(xs, ys, 0.0, cy + 0.01, a + 0.012, b + 0.03), (cut - ys) * f32(0.7))
                d = np.minimum(d, db)
            cv.paint(sl, cv.cov(d, fh["density"]), _rgb(fh["colour"]), attr="facial_hair")

    # Mouth: lips and opening along a parabola (smile lifts the corners).
    sl = cv.box(-w - 0.03, w + 0.03, my - 0.1, my + depth + ho + lip + 0.05)
    if sl:
        xs, ys = X[sl], Y[sl]
        q = np.minimum(np.abs(xs) * f32(1.0 / w), f32(1.0))
        q2 = q * q
        c = f32(my + depth) - f32(depth) * q2
        slope = np.sqrt(1.0 + (f32(2.0 * depth / w) * q) ** 2)
        dist = np.abs(ys - c) / slope
        env = 1.0 - q2
        open_ = f32(ho) * env
        dl = np.maximum(dist - open_ - f32(lip) * np.sqrt(env) - f32(0.006), np.abs(xs) - f32(w))
        lipc = np.clip(skin * f32(0.85) + np.float32([0.12, -0.12, -0.08]), 0.0, 1.0)
        cv.paint(sl, cv.cov(dl), lipc.reshape(3, 1, 1))
        do = np.maximum(dist - open_, np.abs(xs) - f32(w))
        cv.paint(sl, cv.cov(do), _rgb((0.22, 0.04, 0.06)))

    # Glasses (content attribute): lenses centred on the eyes.
    if gl is not None:
        th = gl["thickness"]
        lw = min(gl["lens_w"], sp - 0.045)
        lh = gl["lens_h"]
        sl = cv.box(-a - 0.03, a + 0.03, ey - lh * 1.4 - th, ey + lh * 1.4 + th)
        if sl:
            xs, ys = X[sl], Y[sl]
            ax = np.abs(xs)
            px, py = ax - f32(sp), ys - f32(ey)
            shape = GLASSES_SHAPES[gl["shape"]]
            if shape == "round":
                d = _ellipse(px, py, 0.0, 0.0, lw * 0.95, min(lh * 1.1, lw * 0.95))
            elif shape == "rect":
                d = _round_box(px, py, 0.0, 0.0, lw, lh * 0.85, 0.03)
            else:
                ry = np.where(py < 0, f32(lh * 0.75), f32(lh * 1.15))
                pxs = px + f32(0.35) * np.maximum(py, 0.0)
                k = np.sqrt((pxs * f32(1.0 / lw)) ** 2 + (py / ry) ** 2)
                d = (k - 1.0) * f32(min(lw, lh * 0.75))
            if gl["tint"] > 0:
                cv.paint(sl, cv.cov(d, gl["tint"]), _rgb(gl["tint_colour"]), attr="glasses")
            frame = np.abs(d) - f32(th * 0.5)
            bar_y = f32(ey - lh * 0.3)
            bridge = np.maximum(np.abs(ys - bar_y) - f32(th * 0.4), ax - f32(sp - lw * 0.7))
            temple = np.maximum(np.abs(ys - bar_y) - f32(th * 0.4),
                                np.maximum(f32(sp + lw * 0.8) - ax, ax - f32(a + 0.015)))
            frame = np.minimum(frame, np.minimum(bridge, temple))
            cv.paint(sl, cv.cov(frame), _rgb(gl["colour"]), attr="glasses")

    # Lighting: Lambert shading of an ellipsoidal head, applied to the head layers only.
    az, el, li = st["light_azimuth"], st["light_elevation"], st["light_intensity"]
    lx, ly, lz = math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)
    llx = cv.cos * lx + cv.sin * ly  # light direction in the face frame
    lly = -cv.sin * lx + cv.cos * ly
    nx = X * f32(1.0 / a)
    ny_ = (Y - f32(cy)) * f32(1.0 / b)
    r2 = nx * nx + ny_ * ny_
    nz = np.sqrt(np.maximum(1.0 - r2, 0.0))
    inv = 1.0 / np.sqrt(np.maximum(r2, 1.0))
    ndl = (nx * f32(llx) + ny_ * f32(lly)) * inv + nz * f32(lz)
    shade = np.maximum(ndl, 0.0) * f32(1.25 * li)
    shade += f32(-li)  # shade in [-li, 0.25 li]
    shade *= fg
    shade += f32(1.0)
    img = cv.img
    img *= shade
    np.clip(img, f32(0.0), f32(1.0), out=img)
    img *= f32(255.0)
    img += f32(0.5)
    image = np.ascontiguousarray(img.astype(np.uint8).transpose(1, 2, 0))

    zeros = None
    masks = {}
    for name in CONTENT_ATTRIBUTES:
        m = cv.masks.get(name)
        if m is None:
            if zeros is None:
                zeros = np.zeros((size, size), np.float32)
            m = zeros.copy()
        masks[name] = m
    landmarks = cv.to_pixels(_landmarks_local(factors)).astype(np.float32)
    return {"image": image, "masks": masks, "landmarks": landmarks}


# ----------------------------------------------------------------------------- dataset

def _cache_key(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:20]


try:
    import torch
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover - the renderer itself does not need torch
    torch = None
    _TorchDataset = object


class SyntheticFaces(_TorchDataset):
    """Pre-rendered in-memory synthetic faces (optionally cached as an .npz under ``cache_dir``).

    Items: ``image`` float32 (3,H,W) in [-1,1], ``mask`` float32 (len(CONTENT_ATTRIBUTES),H,W),
    ``landmarks`` float32 (N_LANDMARKS,2) pixel (x,y), ``identity`` / ``index`` int64 scalars,
    ``attrs`` float32 presence. Index with ``(i, flip)`` for a deterministic horizontal mirror.
    Raw arrays: ``images`` (N,H,W,3) uint8, ``masks`` (N,A,H,W) uint8 (x255), ``landmarks``,
    ``identities`` int64, ``attrs`` uint8.
    """

    def __init__(self, size: int = 64, length: int = 10000, seed: int = 0, split: str = "train",
                 n_identities: int = 1000, attributes: dict | None = None, cache_dir: str | None = None,
                 progress: bool = False):
        self.size = _check_size(size)
        if length < 0:
            raise ValueError("length must be >= 0")
        self.length, self.seed, self.split = int(length), int(seed), split
        self.n_identities = int(n_identities)
        self.attributes = attributes
        self._probs = _attribute_probs(attributes)
        params = {"version": RENDER_VERSION, "size": self.size, "length": self.length,
                  "seed": self.seed, "split": split, "n_identities": self.n_identities,
                  "attributes": self._probs}
        self.cache_key = _cache_key(params)
        self.cache_path = None
        data = None
        if cache_dir is not None:
            os.makedirs(cache_dir, exist_ok=True)
            self.cache_path = os.path.join(cache_dir, f"synthetic_{self.cache_key}.npz")
            data = self._load(self.cache_path)
        if data is None:
            data = self._generate(progress)
            if self.cache_path is not None:
                self._save(self.cache_path, data)
        self.images, self.masks = data["images"], data["masks"]
        self.landmarks, self.identities, self.attrs = data["landmarks"], data["identities"], data["attrs"]

    # -- generation / cache
    def _generate(self, progress: bool) -> dict:
        n, s, A = self.length, self.size, len(CONTENT_ATTRIBUTES)
        out = {"images": np.empty((n, s, s, 3), np.uint8),
               "masks": np.empty((n, A, s, s), np.uint8),
               "landmarks": np.empty((n, N_LANDMARKS, 2), np.float32),
               "identities": np.empty((n,), np.int64),
               "attrs": np.empty((n, A), np.uint8)}
        it = range(n)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc=f"synthetic faces {self.split} {s}px", unit="img")
        for k in it:
            f = self.factors(k)
            r = render(f, s)
            out["images"][k] = r["image"]
            for j, name in enumerate(CONTENT_ATTRIBUTES):
                m = r["masks"][name] * 255.0 + 0.5
                out["masks"][k, j] = m.astype(np.uint8)
                out["attrs"][k, j] = f[name] is not None
            out["landmarks"][k] = r["landmarks"]
            out["identities"][k] = f["identity_id"]
        return out

    def _expected_shapes(self) -> dict:
        n, s, A = self.length, self.size, len(CONTENT_ATTRIBUTES)
        return {"images": ((n, s, s, 3), np.uint8), "masks": ((n, A, s, s), np.uint8),
                "landmarks": ((n, N_LANDMARKS, 2), np.float32), "identities": ((n,), np.int64),
                "attrs": ((n, A), np.uint8)}

    def _load(self, path: str):
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != self.cache_key:
                    return None
                data = {}
                for k, (shape, dtype) in self._expected_shapes().items():
                    arr = z[k]  # zip CRC is verified on read
                    if arr.shape != shape or arr.dtype != dtype:
                        return None
                    data[k] = arr
            return data
        except Exception:  # corrupt / truncated / foreign file: regenerate
            return None

    def _save(self, path: str, data: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".synthetic_", suffix=".tmp", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, key=np.array(self.cache_key), **data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    # -- access
    def __len__(self) -> int:
        return self.length

    def factors(self, i: int) -> dict:
        return sample_factors(self.seed, int(i), self.n_identities, self._probs, split=self.split)

    def __getitem__(self, i):
        flip = False
        if isinstance(i, tuple):
            i, flip = i
        i = int(i)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} samples")
        img, mask, lm = self.images[i], self.masks[i], self.landmarks[i]
        if flip:
            img, mask = img[:, ::-1], mask[:, :, ::-1]
            lm = lm[FLIP_PERM].copy()
            lm[:, 0] = (self.size - 1) - lm[:, 0]
        image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)
        mask_t = torch.from_numpy(np.ascontiguousarray(mask)).float().div_(255.0)
        return {
            "image": image,
            "mask": mask_t,
            "landmarks": torch.from_numpy(np.array(lm, dtype=np.float32)),
            "identity": torch.tensor(int(self.identities[i]), dtype=torch.int64),
            "attrs": torch.from_numpy(self.attrs[i].astype(np.float32)),
            "index": torch.tensor(i, dtype=torch.int64),
        }

"""The painter: :func:`render` turns factors into an RGB image, one soft content mask per attribute and
landmarks (coordinates and mask semantics: ``data/synthetic/__init__.py``)."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from data.synthetic.factors import (
    CONTENT_ATTRIBUTES, FACIAL_HAIR_TYPES, GLASSES_SHAPES, HAIR_STYLES, MAX_SIZE, MIN_SIZE, _contrast,
)


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
    amp = e.get("amplitude", 1.0)  # the world's expression_scale
    return {
        "brow_y": ey - i["eye_h"] - 0.055 - amp * 0.045 * e["brow_raise"],  # brow baseline
        "nose_y": ny,                                                 # nostrils / nose tip
        "mouth_y": max(i["face_h"] * 0.46 + 0.05, ny + 0.13),         # mouth corners
        "mouth_w": i["mouth_w"] * (1.0 + amp * 0.12 * max(e["smile"], 0.0)),  # half width
        "smile_depth": amp * 0.055 * e["smile"],                      # centre drop vs corners
        "half_open": amp * 0.055 * e["mouth_open"] + 0.004,
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


def expression_overlaps(factors: dict) -> dict:
    """Where a large ``expression_scale`` pushes the features past each other (local units, before pose):
    ``lip_past_chin`` (the lower lip's middle below the chin line) and ``brow_on_eye`` (the brow's baseline below
    the eye's top). Both are False for every face of the world at 1."""
    i, L = factors["identity"], _layout(factors["identity"], factors["expression"])
    lm = _landmarks_local(factors)
    return {"lip_past_chin": bool(lm[8, 1] > lm[9, 1]), "brow_on_eye": bool(L["brow_y"] > i["eye_y"] - i["eye_h"])}


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
    sl = cv.box(-w - 0.03, w + 0.03, my + min(depth, 0.0) - ho - lip - 0.05, my + max(depth, 0.0) + ho + lip + 0.05)
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

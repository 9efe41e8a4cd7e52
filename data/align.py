"""Face alignment presets from 68 landmarks (iBUG/300-W order, as dlib gives them): pure geometry.

- ``ffhq``: the FFHQ / StyleGAN alignment. An oriented square ("quad") from the eye centres and mouth
  corners; the photo is shrunk by an integer factor when the quad is over 2x the output, cropped to the quad
  plus a border, reflect-padded (blurred and faded to the median colour) where the quad leaves the photo,
  sampled to 4x the output size and Lanczos-resized to the output. Methods 3 and pSp-style encoders expect it.
- ``celeba``: CelebA's aligned frame (178 x 218 at ``size`` 178; other sizes scale it): the nonreflective
  similarity taking both eye centres and the mouth centre onto :data:`CELEBA_TEMPLATE` (least squares),
  bicubic, edge pixels replicated outside the photo. Methods 1, 2 and 4 centre-crop it (``data.crop 178``).
- ``arcface``: insightface's 112 x 112 crop: the similarity taking the 5 points (eye centres, nose tip,
  mouth corners) onto :data:`ARCFACE_TEMPLATE` (least squares), bilinear, black outside the photo; other
  sizes scale the template.

Points use pixel-centre coordinates (pixel ``i`` covers ``[i - 0.5, i + 0.5)``). Every function returns the
image and the 2 x 3 affine ``A`` that maps photo points to output points (``out = A @ [x, y, 1]``), so a
caller can move landmarks along. ``celeba`` and ``arcface`` first shrink photos whose face is over twice the
output scale by an integer factor (Lanczos), as ``ffhq`` does; their originals sample the photo directly.
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage
from PIL import Image

PRESETS = ("ffhq", "celeba", "arcface")
DEFAULT_SIZE = {"ffhq": 256, "celeba": 178, "arcface": 112}

# CelebA's alignment function (align_face_celeba.m, published with the dataset): `pos_align`, the targets
# of the left eye, right eye and mouth centre (the mean of the two mouth corners) in the 178 x 218 frame,
# in MATLAB's 1-based pixel coordinates [70.745 112; 108.237 112; 89.432 153.514]; minus 1 here. The means of
# list_landmarks_align_celeba.txt (eyes ~(69, 111), (108, 111), mouth corners ~(72, 152), (105, 152)) agree.
CELEBA_FRAME = (178, 218)
CELEBA_TEMPLATE = np.array([[69.745, 111.0], [107.237, 111.0], [88.432, 152.514]])
# insightface's `arcface_dst` (face_align.py) for 112 x 112 crops, 0-based as cv2.warpAffine reads it:
# left eye, right eye, nose tip, left and right mouth corner ("left" = the image's left).
ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])


def five_points(lm68: np.ndarray) -> np.ndarray:
    """(5, 2): left eye centre, right eye centre, nose tip, left and right mouth corner (image left/right)."""
    lm = np.asarray(lm68, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def celeba_points(lm68: np.ndarray) -> np.ndarray:
    """(3, 2): the points CelebA's alignment fits: both eye centres and the mouth centre."""
    p = five_points(lm68)
    return np.stack([p[0], p[1], (p[3] + p[4]) / 2])


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 nonreflective similarity ``[[a, -b, tx], [b, a, ty]]`` minimising ``sum |A src - dst|^2``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    n = len(src)
    m = np.zeros((2 * n, 4))
    m[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)])
    m[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)])
    a, b, tx, ty = np.linalg.lstsq(m, dst.reshape(-1), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def apply_affine(A: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(..., 2)`` points with a 2 x 3 affine."""
    p = np.asarray(points, np.float64)
    return p @ A[:, :2].T + A[:, 2]


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2 x 3 affine of ``outer(inner(p))``."""
    return np.column_stack([outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2] + outer[:, 2]])


def _shrink(img: Image.Image, factor: int) -> tuple[Image.Image, np.ndarray]:
    """Lanczos-resize by ``1 / factor`` (rounded size); the affine of that resize (pixel centres)."""
    w, h = img.size
    rw, rh = int(np.rint(w / factor)), int(np.rint(h / factor))
    sx, sy = rw / w, rh / h
    return img.resize((rw, rh), Image.LANCZOS), np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])


def warp_similarity(img: Image.Image, A: np.ndarray, out_size: tuple[int, int], resample, replicate: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``img`` at ``A^-1`` of each output pixel: (uint8 array of ``out_size`` (w, h), ``A``).

    A photo shrunk first (integer factor) when ``A`` scales below 1/2; outside the photo: its edge pixels
    (``replicate``) or black.
    """
    img, A_photo = img.convert("RGB"), A
    factor = int(np.floor(0.5 / np.sqrt(abs(np.linalg.det(A[:, :2])))))
    if factor > 1:
        img, S = _shrink(img, factor)
        A = _compose(A, np.linalg.inv(np.vstack([S, [0, 0, 1]]))[:2])
    offset = np.zeros(2)
    if replicate:  # pad with edge pixels far enough to cover every output pixel's source
        W, H = out_size
        inv = np.linalg.inv(np.vstack([A, [0, 0, 1]]))[:2]
        corners = apply_affine(inv, np.array([[-0.5, -0.5], [W - 0.5, -0.5], [-0.5, H - 0.5], [W - 0.5, H - 0.5]]))
        w, h = img.size
        lo = np.maximum(0, np.ceil(-corners.min(0)) + 3).astype(int)
        hi = np.maximum(0, np.ceil(corners.max(0) - [w, h]) + 3).astype(int)
        if lo.any() or hi.any():
            arr = np.pad(np.asarray(img), ((lo[1], hi[1]), (lo[0], hi[0]), (0, 0)), mode="edge")
            img, offset = Image.fromarray(arr), lo.astype(np.float64)
    # PIL's AFFINE maps output continuous coordinates (pixel edges at integers) to input ones
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5]])
    A_img = _compose(A, np.column_stack([np.eye(2), -offset]))  # padded image points -> output points
    inv = np.linalg.inv(np.vstack([_compose(shift, A_img), [0, 0, 1]]))
    inv = _compose(shift, inv[:2])  # output edges -> output centres -> image centres -> image edges
    out = img.transform(out_size, Image.AFFINE, tuple(inv.reshape(-1)), resample=resample, fillcolor=(0, 0, 0))
    return np.asarray(out, dtype=np.uint8), A_photo


def celeba_align(img: Image.Image, lm68: np.ndarray, size: int = 178) -> tuple[np.ndarray, np.ndarray]:
    """CelebA's aligned frame scaled by ``size / 178``: (uint8 (round(218 size / 178), size, 3), affine)."""
    s = size / CELEBA_FRAME[0]
    dst = (CELEBA_TEMPLATE + 0.5) * s - 0.5
    A = fit_similarity(celeba_points(lm68), dst)
    return warp_similarity(img, A, (size, int(round(CELEBA_FRAME[1] * s))), Image.BICUBIC, replicate=True)


def arcface_align(img: Image.Image, lm68: np.ndarray, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """insightface's five-point crop scaled by ``size / 112``: (uint8 (size, size, 3), affine)."""
    dst = (ARCFACE_TEMPLATE + 0.5) * (size / ARCFACE_SIZE) - 0.5
    A = fit_similarity(five_points(lm68), dst)
    return warp_similarity(img, A, (size, size), Image.BILINEAR, replicate=False)


def ffhq_quad(lm68: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ's oriented square: centre ``c``, half-side vectors ``x`` (rightwards) and ``y`` (downwards).

    With e = eye centres, m = mouth corners: ``x`` is along eye_to_eye - rot90(eye_to_mouth), of length
    max(2 |eye_to_eye|, 1.8 |eye_to_mouth|); ``y`` is ``x`` turned 90 degrees; c = eye_avg + 0.1 eye_to_mouth.
    """
    p = five_points(lm68)
    eye_avg, eye_to_eye = (p[0] + p[1]) / 2, p[1] - p[0]
    eye_to_mouth = (p[3] + p[4]) / 2 - eye_avg
    rot = np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # eye_to_mouth turned by +90 degrees (y down)
    x = eye_to_eye - rot
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    return eye_avg + eye_to_mouth * 0.1, x, y


def ffhq_affine(lm68: np.ndarray, size: int) -> np.ndarray:
    """The 2 x 3 map of photo points to points of the ``size`` px FFHQ crop (the quad's corners to the
    output's corners)."""
    c, x, y = ffhq_quad(lm68)
    rows = np.stack([x / (2 * x @ x), y / (2 * y @ y)]) * size  # fraction along the quad, times size
    return np.column_stack([rows, size / 2 - rows @ c - 0.5])


def ffhq_align(img: Image.Image, lm68: np.ndarray, size: int = 256, transform_factor: int = 4
               ) -> tuple[np.ndarray, np.ndarray]:
    """FFHQ's alignment at ``size`` px (the dataset's own: 1024, sampled at 4096): (uint8 array, affine)."""
    img = img.convert("RGB")
    c, x, y = ffhq_quad(lm68)
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = np.hypot(*x) * 2
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        img, _ = _shrink(img, shrink)
        quad, qsize = quad / shrink, qsize / shrink  # as the original (ignores the resize's rounding)
    border = max(int(np.rint(qsize * 0.1)), 3)
    w, h = img.size
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0), min(hi[0] + border, w), min(hi[1] + border, h))
    if crop[2] - crop[0] < w or crop[3] - crop[1] < h:
        img, quad = img.crop(crop), quad - crop[:2]
    w, h = img.size
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    pad = np.maximum([-lo[0] + border, -lo[1] + border, hi[0] - w + border, hi[1] - h + border], 0)
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img, quad = _pad_blurred(np.float32(img), pad, qsize), quad + pad[:2]
    t = size * transform_factor
    out = img.transform((t, t), Image.QUAD, tuple((quad + 0.5).reshape(-1)), Image.BILINEAR)
    if t != size:
        out = out.resize((size, size), Image.LANCZOS)
    return np.asarray(out, dtype=np.uint8), ffhq_affine(lm68, size)


def _pad_blurred(a: np.ndarray, pad: np.ndarray, qsize: float) -> Image.Image:
    """FFHQ's padding: reflect by ``pad`` (left, top, right, bottom), then blend the padded band towards
    a blurred copy and the median colour, more strongly away from the photo."""
    a = np.pad(a, ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
    h, w, _ = a.shape
    yy, xx = np.ogrid[:h, :w]
    xx, yy = xx.astype(np.float32), yy.astype(np.float32)
    mask = np.maximum(1.0 - np.minimum(xx / pad[0], (w - 1 - xx) / pad[2]),
                      1.0 - np.minimum(yy / pad[1], (h - 1 - yy) / pad[3]))[..., None]
    blur = qsize * 0.02
    a = a + (scipy.ndimage.gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a = a + (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")


def template(preset: str, size: int, lm68: np.ndarray | None = None) -> np.ndarray:
    """Where a preset puts its key points in the output: celeba (3: eyes, mouth centre), arcface (5), ffhq
    (5 points of ``lm68`` mapped by the quad's map, which depends on the face's proportions)."""
    if preset == "celeba":
        return (CELEBA_TEMPLATE + 0.5) * (size / CELEBA_FRAME[0]) - 0.5
    if preset == "arcface":
        return (ARCFACE_TEMPLATE + 0.5) * (size / ARCFACE_SIZE) - 0.5
    if preset == "ffhq":
        return apply_affine(ffhq_affine(lm68, size), five_points(lm68))
    raise ValueError(f"unknown alignment preset {preset!r} (one of {', '.join(PRESETS)})")


def key_points(preset: str, lm68: np.ndarray) -> np.ndarray:
    """The landmarks :func:`template` speaks of, read from 68 points."""
    return celeba_points(lm68) if preset == "celeba" else five_points(lm68)


def align(img: Image.Image, lm68: np.ndarray, preset: str, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Align the face with landmarks ``lm68`` in ``img`` by ``preset``: (uint8 HxWx3, 2 x 3 affine)."""
    fn = {"ffhq": ffhq_align, "celeba": celeba_align, "arcface": arcface_align}.get(preset)
    if fn is None:
        raise ValueError(f"unknown alignment preset {preset!r} (one of {', '.join(PRESETS)})")
    return fn(img, lm68, size or DEFAULT_SIZE[preset])

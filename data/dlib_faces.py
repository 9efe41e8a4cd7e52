"""dlib's face detector (HOG), 68-point landmarks and 128-d face descriptor: the optional face extras.

The models are the files of ``face-recognition-models`` (``shape_predictor_68_face_landmarks.dat``,
``dlib_face_recognition_resnet_model_v1.dat``), loaded once per process. Images are uint8 RGB H x W x 3;
points are pixel-centre (x, y) coordinates of that image.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from core.cli import EXIT_BAD_INPUT, RunError

EXTRAS = "pip install -r requirements-faces.txt"


class FaceExtrasMissing(RunError):
    """dlib or its model files are not installed (a command line prints one ``error:`` line, exit status 2)."""

    exit_code = EXIT_BAD_INPUT


def require(what: str):
    """The ``dlib`` module and the model package, or :class:`FaceExtrasMissing` naming ``what`` needs them."""
    try:
        import dlib
        import face_recognition_models
    except ImportError as e:
        raise FaceExtrasMissing(f"{what} needs the optional face extras ({e.name} is missing): {EXTRAS}") from None
    return dlib, face_recognition_models


@functools.lru_cache(maxsize=None)
def _detector():
    dlib, _ = require("face detection")
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _predictor():
    dlib, models = require("face landmarks")
    return dlib.shape_predictor(models.pose_predictor_model_location())


@functools.lru_cache(maxsize=None)
def _recognizer():
    dlib, models = require("the dlib identity judge")
    return dlib.face_recognition_model_v1(models.face_recognition_model_location())


@dataclass
class Face:
    box: tuple[float, float, float, float]  # left, top, right, bottom (photo pixels)
    landmarks: np.ndarray                   # (68, 2) float64, iBUG/300-W order

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"dlib needs uint8 RGB H x W x 3 images, got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img)


def _shape(img: np.ndarray, box):
    dlib, _ = require("face landmarks")
    return _predictor()(img, dlib.rectangle(*(int(round(v)) for v in box)))


def landmarks(img: np.ndarray, box) -> np.ndarray:
    """(68, 2) landmarks of the face in ``box`` (left, top, right, bottom)."""
    s = _shape(_rgb(img), box)
    return np.array([[p.x, p.y] for p in s.parts()], dtype=np.float64)


def detect(img: np.ndarray, max_side: int = 1024, min_side: int = 640, threshold: float = 0.5) -> list[Face]:
    """Every face dlib's HOG detector finds with a score of at least ``threshold``, largest first, with its
    68 landmarks.

    Detection runs on a copy resized so its long side is at most ``max_side`` (and upsampled once by the
    detector when it is under ``min_side``: faces below ~80 px of the copy are missed otherwise); the
    landmarks are fitted on the full-resolution photo. dlib's own threshold is 0; on the test photos real
    faces scored 1.2-2.4 and false detections (a shoulder patch, a shirt) 0.04-0.12.
    """
    from PIL import Image

    img = _rgb(img)
    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = img if scale == 1.0 else np.asarray(
        Image.fromarray(img).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
    rects, _, _ = _detector().run(small, 1 if max(small.shape[:2]) < min_side else 0, threshold)
    faces = []
    for r in rects:
        box = tuple((v + 0.5) / scale - 0.5 for v in (r.left(), r.top(), r.right(), r.bottom()))
        faces.append(Face(box, landmarks(img, box)))
    return sorted(faces, key=lambda f: -f.area)


def descriptor(img: np.ndarray, box) -> np.ndarray:
    """dlib's 128-d face descriptor of the face in ``box``: 68 landmarks there, then dlib's own 150 px chip
    (``get_face_chip``, padding 0.25) and the ResNet. Unit-scale: same person ~< 0.6 apart (L2)."""
    img = _rgb(img)
    return np.array(_recognizer().compute_face_descriptor(img, _shape(img, box)), dtype=np.float64)

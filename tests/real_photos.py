"""Real face photos for the face-extras tests, none stored in the repository.

scikit-image's ``astronaut`` (Eileen Collins, NASA) and matplotlib's ``grace_hopper.jpg`` (US Navy) ship with
those packages; the face_recognition 1.3.0 sdist's test images (Obama x3, Biden) are fetched by
``scripts/fetch_test_photos.sh`` into ``$FACEDIS_TEST_PHOTOS`` or ``cache/test_photos/`` (the CI does).
Missing pieces skip the test that needs them, saying what to install or run.
"""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = "the optional face extras are not installed (pip install -r requirements-faces.txt)"


def need_dlib():
    pytest.importorskip("dlib", reason=EXTRAS)
    pytest.importorskip("face_recognition_models", reason=EXTRAS)


def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason=EXTRAS + ": scikit-image")
    return data.astronaut()


def grace_hopper() -> np.ndarray:
    cbook = pytest.importorskip("matplotlib.cbook", reason=EXTRAS + ": matplotlib")
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


def no_face() -> np.ndarray:
    """A real photo without a face: scikit-image's coffee cup."""
    data = pytest.importorskip("skimage.data", reason=EXTRAS + ": scikit-image")
    return data.coffee()


def photo_dir() -> Path:
    return Path(os.environ.get("FACEDIS_TEST_PHOTOS", ROOT / "cache" / "test_photos"))


def sdist_photo(name: str) -> np.ndarray:
    """``obama``, ``obama2``, ``obama3`` or ``biden`` from the face_recognition sdist."""
    path = photo_dir() / f"{name}.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is missing: run bash scripts/fetch_test_photos.sh (the CI does)")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def side_by_side(*imgs: np.ndarray, height: int = 400) -> np.ndarray:
    """The photos resized to one height and put next to each other (one photo with several faces)."""
    ims = [Image.fromarray(a) for a in imgs]
    ims = [im.resize((round(im.width * height / im.height), height), Image.BILINEAR) for im in ims]
    return np.concatenate([np.asarray(im) for im in ims], axis=1)

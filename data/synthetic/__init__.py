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

Modules: ``factors`` (sampling, edits, factor vectors), ``painter`` (:func:`render`), ``dataset``
(:class:`SyntheticFaces`), ``labels`` (items with pose / expression vectors), ``counterfactual`` (the evaluation
test pairs of every task with their true answers, so every protocol draws the same pairs).
"""
from data.synthetic.dataset import WORLD_KEYS, SyntheticFaces, world_args
from data.synthetic.factors import (
    CONTENT_ATTRIBUTES, DEFAULT_ATTRIBUTE_PROBS, FACIAL_HAIR_TYPES, FACTOR_DIMS, FLIP_PAIRS, FLIP_PERM, GLASSES_SHAPES,
    GROUPS, HAIR_STYLES, LANDMARK_NAMES, MAX_SIZE, MIN_SIZE, N_LANDMARKS, RENDER_VERSION, factor_vectors, mirror,
    remove, sample_factors, swap,
)
from data.synthetic.painter import render

__all__ = [
    "SyntheticFaces", "WORLD_KEYS", "world_args", "CONTENT_ATTRIBUTES", "DEFAULT_ATTRIBUTE_PROBS", "FACIAL_HAIR_TYPES", "FACTOR_DIMS", "FLIP_PAIRS",
    "FLIP_PERM", "GLASSES_SHAPES", "GROUPS", "HAIR_STYLES", "LANDMARK_NAMES", "MAX_SIZE", "MIN_SIZE", "N_LANDMARKS",
    "RENDER_VERSION", "factor_vectors", "mirror", "remove", "sample_factors", "swap", "render",
]

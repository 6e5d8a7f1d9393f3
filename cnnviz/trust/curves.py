"""Faithfulness curves: does deleting what a map points at change the model's mind? (notebook 06)

- :func:`deletion_curve` / :func:`insertion_curve` (Petsiuk et al. 2018, RISE): rank the pixels by the
  map; at step s of S replace the top s/S of them by a baseline (deletion), or start from the baseline
  and reveal them (insertion), and follow the class probability p_s. A faithful map makes deletion
  fall fast (small area) and insertion rise fast (large area): :func:`curve_auc` = ∫ p ds (trapezoid).
  The paper's code deletes to zeros of the NORMALISED input (the dataset's mean colour, close to
  ``baseline="grey"``) and inserts onto a blur; deleting to a blur (the default here) is a variant that adds
  no new edges.
- :func:`confidence_change` (Chattopadhay et al. 2018, Grad-CAM++): show the model only the
  explanation, image · map; with Y the class probability on the image and O on the explanation,
  average drop = mean(max(0, Y − O) / Y) · 100, increase in confidence = share of images with O > Y · 100.

Models are a :class:`~cnnviz.ModelBundle` (images in pixels [0, 255]) or a bare Keras model (images as
it expects them). Maps at any resolution; with the model known, each cell lands on its receptive
field's centre (``layer``: the layer the maps come from, None: found from their shape).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..checks import check_count
from ..images import as_batch, check_finite
from ..models import ModelBundle
from .maps import classes_of, maps_at, probabilities

__all__ = ["ConfidenceChange", "confidence_change", "curve_auc", "deletion_curve", "insertion_curve"]

BLUR_RADIUS = 10 / 224  # Gaussian σ of the "blur" baseline, as a share of the image height (10 px at 224)
BASELINES = ("blur", "grey", "black")


def _baseline(model, batch: np.ndarray, baseline) -> np.ndarray:
    """The baseline images (N, H, W, C) in the images' own space (pixels for a bundle)."""
    bundle = isinstance(model, ModelBundle)
    if isinstance(baseline, str):
        if baseline == "blur":
            sigma = BLUR_RADIUS * batch.shape[1]
            return ndimage.gaussian_filter(batch, sigma=(0, sigma, sigma, 0), mode="nearest")
        if baseline == "grey":  # mid-grey pixels; a bare model's inputs are taken as centred on 0
            return np.full_like(batch, 127.5 if bundle else 0.0)
        if baseline == "black":  # black pixels; for a bare model the smallest input value seen
            return np.full_like(batch, 0.0 if bundle else batch.min())
    if baseline is None or isinstance(baseline, str):
        raise ValueError(f"unknown baseline {baseline!r}: use 'blur', 'grey', 'black' or an array like the images")
    array = check_finite(np.asarray(baseline, dtype="float32"), "the baseline")
    try:
        return np.broadcast_to(array, batch.shape).copy()
    except ValueError:
        raise ValueError(f"baseline array of shape {array.shape} does not match the images {batch.shape}") from None


def _curve(model, images, maps, class_index, steps, baseline, insert: bool, layer):
    """Deletion (insert=False) or insertion curves; see :func:`deletion_curve`."""
    steps = check_count("steps", steps)
    batch, _ = as_batch(images)
    n, height, width = batch.shape[:3]
    ranked = maps_at(maps, (height, width), n, model=model, layer=layer)
    backgrounds = _baseline(model, batch, baseline)
    fractions = np.linspace(0, 1, steps + 1)
    counts = np.round(fractions * height * width).astype(int)  # pixels removed / revealed at each step
    scores = []
    for image, heatmap, background in zip(batch, ranked, backgrounds):
        order = np.argsort(-heatmap.ravel(), kind="stable")  # best first; ties in reading order
        rank = np.empty(order.size, int)
        rank[order] = np.arange(order.size)
        chosen = (rank.reshape(height, width)[None] < counts[:, None, None])[..., None]  # (S+1, H, W, 1)
        stack = np.where(chosen, image, background) if insert else np.where(chosen, background, image)
        scores.append(probabilities(model, stack))  # all steps of one curve: (S+1, classes)
    scores = np.stack(scores)  # (N, S+1, classes)
    original = scores[:, -1 if insert else 0]  # insertion ends, deletion starts, on the image itself
    classes = classes_of(class_index, original)
    return fractions, np.take_along_axis(scores, classes[:, None, None], axis=2)[..., 0]


def deletion_curve(model, images, maps, class_index=None, steps: int = 50, baseline="blur", layer=None):
    """Class probability as the map's most important pixels are deleted (replaced by ``baseline``).

    images (N, H, W, 3); maps (N, h, w) at any resolution (min-max normalised, upsampled, pixels ranked
    best first, ties in reading order). class_index None → the top class on the image. baseline: "blur"
    (Gaussian, σ = 10 px at 224), "grey", "black", or an array like the images (a bare model's images
    are its inputs: there "grey" is 0 and "black" the images' smallest value). layer: where the maps
    come from (None: found from their shape). Returns fractions (steps + 1,) from 0 to 1 and
    probabilities (N, steps + 1); lower area is better. Each curve is one batched pass over its steps.
    """
    return _curve(model, images, maps, class_index, steps, baseline, False, layer)


def insertion_curve(model, images, maps, class_index=None, steps: int = 50, baseline="blur", layer=None):
    """Class probability as the map's most important pixels are revealed on ``baseline``; higher area
    is better. Same arguments and return as :func:`deletion_curve`."""
    return _curve(model, images, maps, class_index, steps, baseline, True, layer)


def curve_auc(fractions, scores) -> np.ndarray:
    """Area under each curve: fractions (S,) strictly increasing, scores (N, S) or (S,) → (N,) (or a float),
    trapezoid rule."""
    fractions = check_finite(np.asarray(fractions, dtype="float64"), "the fractions")
    scores = check_finite(np.asarray(scores, dtype="float64"), "the scores")
    if fractions.ndim != 1 or len(fractions) < 2 or not (np.diff(fractions) > 0).all():
        raise ValueError(f"fractions must be a strictly increasing 1-D sequence of at least 2 values (as the "
                         f"curves return), got {fractions.tolist()[:6]}")
    if scores.shape[-1] != len(fractions):
        raise ValueError(f"scores {scores.shape} must have one value per fraction ({len(fractions)}) on the last axis")
    return np.trapezoid(scores, fractions, axis=-1)


class ConfidenceChange(NamedTuple):
    """average_drop, increase: in %; original, explained: class probability (N,) on image and explanation."""

    average_drop: float
    increase: float
    original: np.ndarray
    explained: np.ndarray


def confidence_change(model, images, maps, class_index=None, layer=None) -> ConfidenceChange:
    """Average drop and increase in confidence (Chattopadhay et al. 2018) of maps (N, h, w).

    The explanation image is image · map, the map ReLU'd, ÷ max and upsampled: for a bundle in pixel
    space (a map value 0 gives a black pixel), for a bare model in its input space (0 input).
    class_index None → the top class on the image.
    """
    batch, _ = as_batch(images)
    masks = maps_at(maps, batch.shape[1:3], len(batch), relu=True, model=model, layer=layer)
    found = probabilities(model, np.concatenate([batch, batch * masks[..., None]]))
    classes = classes_of(class_index, found[:len(batch)])
    picked = found[np.arange(2 * len(batch)), np.tile(classes, 2)]
    original, explained = picked[:len(batch)], picked[len(batch):]
    drop = np.maximum(0, original - explained) / np.maximum(original, np.finfo("float32").tiny)
    return ConfidenceChange(float(drop.mean() * 100), float((explained > original).mean() * 100), original,
                            explained)

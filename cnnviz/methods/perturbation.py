"""Perturbation methods: no gradients, only forward passes of changed images (notebook 05).

Both change the image at P places, batch the P changed images through the model ``batch_size`` at a
time (all k classes of an image from the same passes), and spread each pass's score over the pixels
it changed:

- occlusion sensitivity (Zeiler & Fergus 2014): a grey ``patch`` × ``patch`` square slides with
  ``stride``; the map at a pixel is the mean drop of the class LOGIT, y(x) − y(x with the patch),
  over the patches covering it (signed: a patch can raise the score);
- RISE (Petsiuk et al. 2018): ``masks`` random masks M_i (a ``grid`` × ``grid`` Bernoulli(``keep``)
  grid, upsampled bilinearly and randomly shifted, as the paper's code); the map is
  Σ_i p_c(X ⊙ M_i) M_i / (masks · keep), p_c the class PROBABILITY and X the model's preprocessed
  input (as the reference code: masked towards 0 there). Seeded: mask i comes from
  ``numpy.random.default_rng([seed, i])``, so a map does not depend on ``batch_size``.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ..checks import check_count, check_fraction, check_seed
from ..models import _identity
from ..targets import check_scores
from .base import InputMethod, Raw, Request

__all__ = ["Occlusion", "RISE", "occlusion_positions", "rise_masks"]


def occlusion_positions(size: int, patch: int, stride: int) -> np.ndarray:
    """Top (or left) coordinates of the patches along one axis: every ``stride`` pixels, plus a last one
    flush with the edge so every pixel is covered."""
    if patch > size:
        raise ValueError(f"patch ({patch} px) is larger than the image ({size} px): give a smaller patch")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return np.array(starts)


class Occlusion(InputMethod):
    """Occlusion sensitivity (Zeiler & Fergus 2014): the drop of the class logit when a grey square hides
    each place. ``patch`` and ``stride`` in pixels; ``fill``: the patch's value — "mean" (each image's
    mean colour: grey for a photo, in any input space) or a number in the images' space. (H, W), signed."""

    name, label, paper = "occlusion", "occlusion", "https://arxiv.org/abs/1311.2901"
    signed = True
    options = {"patch": (32, check_count), "stride": (16, check_count),
               "fill": ("mean", lambda n, v: v), "batch_size": (16, check_count)}
    explorer_options, explorer_note = {"patch": 48, "stride": 24}, "48 px patches"

    def compute(self, request: Request, patch, stride, fill, batch_size) -> Raw:
        if not (fill == "mean" or (isinstance(fill, (int, float)) and not isinstance(fill, bool)
                                   and math.isfinite(fill))):
            raise ValueError(f"fill must be 'mean' or a finite number in the images' space, got {fill!r}")
        functions = request.compiled()
        classes, scores, logits = (t.numpy() for t in functions.scores(request.images, request.classes))
        check_scores(scores)  # before any arithmetic on them
        height, width = request.images.shape[1:3]
        places = [(top, left) for top in occlusion_positions(height, patch, stride)
                  for left in occlusion_positions(width, patch, stride)]
        maps = []
        for image, image_classes, clean in zip(request.images, classes, scores):
            value = image.mean(axis=(0, 1)) if fill == "mean" else np.float32(fill)
            drop, covered = np.zeros((len(clean), height, width)), np.zeros((height, width))
            for start in range(0, len(places), batch_size):
                chunk = places[start:start + batch_size]
                points = np.repeat(image[None], len(chunk), axis=0)
                for point, (top, left) in zip(points, chunk):
                    point[top:top + patch, left:left + patch] = value
                occluded = functions.scores(points, np.tile(image_classes, (len(chunk), 1)))[1].numpy()  # (B, k)
                for (top, left), after in zip(chunk, occluded):
                    drop[:, top:top + patch, left:left + patch] += (clean - after)[:, None, None]
                    covered[top:top + patch, left:left + patch] += 1
            maps.append(drop / covered)
        return Raw(np.stack(maps).astype("float32"), classes, scores, logits)


def rise_masks(indices, size, grid: int, keep: float, seed: int) -> np.ndarray:
    """RISE's masks (B, H, W) in [0, 1]: for each index i, a ``grid`` × ``grid`` Bernoulli(``keep``) grid from
    ``default_rng([seed, i])``, upsampled bilinearly to (grid + 1) cells of ceil(H / grid) pixels and
    cropped at a random shift of less than one cell (Petsiuk et al.'s ``generate_masks``)."""
    height, width = size
    cell = (math.ceil(height / grid), math.ceil(width / grid))
    grids, shifts = [], []
    for i in indices:
        rng = np.random.default_rng([seed, int(i)])
        grids.append((rng.random((grid, grid)) < keep).astype("float32"))
        shifts.append((int(rng.integers(cell[0])), int(rng.integers(cell[1]))))
    up = tf.image.resize(np.stack(grids)[..., None], ((grid + 1) * cell[0], (grid + 1) * cell[1])).numpy()[..., 0]
    return np.stack([m[dy:dy + height, dx:dx + width] for m, (dy, dx) in zip(up, shifts)])


class RISE(InputMethod):
    """RISE (Petsiuk et al. 2018): the class probability of the image seen through random masks, as a
    weighted sum of the masks: S = Σ_i p_c(X ⊙ M_i) M_i / (masks · keep). (H, W). ``masks`` forward passes:
    the map's Monte-Carlo noise falls as 1/√masks (the paper uses 4000–8000)."""

    name, label, paper = "rise", "RISE", "https://arxiv.org/abs/1806.07421"
    options = {"masks": (1000, check_count), "grid": (7, check_count),
               "keep": (0.5, lambda n, v: check_fraction(n, v, zero=False)), "seed": (0, check_seed),
               "batch_size": (16, check_count)}
    explorer_options, explorer_note = {"masks": 256}, "256 masks"

    def compute(self, request: Request, masks, grid, keep, seed, batch_size) -> Raw:
        functions = request.compiled()
        classes, scores, logits = (t.numpy() for t in functions.scores(request.images, request.classes))
        check_scores(scores)  # before any arithmetic on them
        masked = request.compiled(preprocess=_identity)  # X ⊙ M in the model's input space
        inputs = np.asarray(request.preprocess(request.images), "float32")
        seed = int(np.random.SeedSequence().entropy % 2 ** 31) if seed is None else seed
        custom = request.target.score is not None
        maps = []
        for x, image_classes in zip(inputs, classes):
            total = np.zeros((len(image_classes), *x.shape[:2]))
            for start in range(0, masks, batch_size):
                chunk = rise_masks(range(start, min(start + batch_size, masks)), x.shape[:2], grid, keep, seed)
                points = x[None] * chunk[..., None]
                if custom:
                    weights = masked.scores(points, np.full((len(chunk), len(image_classes)), -1, "int32"))[1]
                    weights = weights.numpy()
                else:
                    weights = masked.probabilities(points).numpy()[:, image_classes]  # (B, k)
                total += np.einsum("bk,bhw->khw", weights, chunk)
            maps.append(total / (masks * keep))
        return Raw(np.stack(maps).astype("float32"), classes, scores, logits)

"""Grad-CAM: which pixels made the network say "tiger cat"? (notebook 03)

For a class score y and a spatial layer's activations A (h, w, c)::

    α_k = 1/(h·w) Σ_ij ∂y/∂A_ijk          (pooled gradients, one weight per channel)
    L   = ReLU(Σ_k α_k A_k) / max          (heatmap (h, w) in [0, 1])

- :func:`gradcam` — the TF2 form (``A @ α``), batched, one class per image: the registry's Grad-CAM
  (:mod:`cnnviz.methods`), on the pipeline every method shares;
- :func:`gradcam_loop` — the TF1-era form (numpy vector, per-channel loop, ``np.mean``);
- :func:`gradcam_parts` — activations, weights and heatmaps of SEVERAL classes per image from a
  single forward pass (top-k or a list): switching class afterwards is free (:func:`weighted_heatmap`);
- pictures: :func:`cnnviz.overlay`, :func:`cnnviz.save_gradcam`, :func:`cnnviz.show_gradcam`
  (:mod:`cnnviz.heatmaps`), each cell placed on its receptive field's centre when given the model.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .heatmaps import normalise
from .methods import gradcam
from .methods.pixels import GRAD_CAM

__all__ = ["GradCamParts", "gradcam", "gradcam_loop", "gradcam_parts", "weighted_heatmap"]


class GradCamParts(NamedTuple):
    """Everything one forward pass gives, for N images and k classes each.

    activations: (N, h, w, c) the layer's output A. weights: (N, k, c) pooled gradients α.
    class_indices: (N, k) the classes explained (-1 for a custom ``score``). scores: (N, k) the
    scores y (logits by default). heatmaps: (N, k, h, w) in [0, 1]. outputs: (N, classes) the whole
    score vector (all logits by default; the model's output with a custom ``score``).
    """

    activations: np.ndarray
    weights: np.ndarray
    class_indices: np.ndarray
    scores: np.ndarray
    heatmaps: np.ndarray
    outputs: np.ndarray


def gradcam_parts(model, images, layer=None, class_index=None, top: int = 1, score=None,
                  output=None) -> GradCamParts:
    """Grad-CAM for several classes per image from ONE forward pass; see :class:`GradCamParts`.

    model: a :class:`~cnnviz.ModelBundle` (images are pixels in [0, 255]) or a bare Keras model.
    images: (N, H, W, 3) (or one image). layer: a spatial layer's name, also inside a nested model;
    None → the last. class_index: None → the ``top`` best classes per image; an int or N ints → that
    class; an (N, k) array → k given classes per image. score: optional callable on the model's output
    (N, …) → (N,) or (N, k), for regression heads and custom targets (then no class_index).
    output: for a model with several outputs, the one to explain (its name or index).
    Keep ``activations`` and ``weights`` to redraw any class with :func:`weighted_heatmap`.
    """
    batch = np.asarray(images, "float32")
    raw = GRAD_CAM.maps(model, batch[None] if batch.ndim == 3 else batch, layer, class_index, score, output, top)
    activations = raw.extras["activations"].numpy()
    weights = raw.extras["gradients"].numpy().mean(axis=(2, 3))  # α: (N, k, c)
    return GradCamParts(activations, weights, raw.classes, raw.scores, normalise(raw.maps), raw.logits)


def gradcam_loop(model, images, layer=None, class_index=None, score=None) -> np.ndarray:
    """Grad-CAM the TF1 way, same signature and results as :func:`gradcam` (after normalisation).

    ``K.function`` gave numpy: pooled gradients (c,) and the conv output (h, w, c); each channel is
    scaled by its weight in a Python loop, then averaged over channels (DLwP 1st ed.).
    """
    single = np.ndim(images) == 3
    parts = gradcam_parts(model, images, layer, class_index, 1, score)
    if parts.weights.shape[1] != 1:
        raise ValueError("gradcam_loop gives one map per image: give one class (or a score of shape (N,))")
    heatmaps = []
    for conv_output, pooled_grads in zip(parts.activations.copy(), parts.weights[:, 0]):
        for i in range(conv_output.shape[-1]):
            conv_output[:, :, i] *= pooled_grads[i]
        heatmap = np.mean(conv_output, axis=-1)
        heatmaps.append(normalise(heatmap))
    return heatmaps[0] if single else np.stack(heatmaps)


def weighted_heatmap(activations, weights) -> np.ndarray:
    """Σ_k α_k A_k, ReLU, normalised — in numpy, for cached parts.

    activations (..., h, w, c) and weights (..., c) → (..., h, w) in [0, 1]. For one image's k classes
    pass activations (h, w, c) and weights (k, c): → (k, h, w).
    """
    activations, weights = np.asarray(activations), np.asarray(weights)
    if weights.ndim == activations.ndim - 1:  # (k, c) against (h, w, c) → broadcast over classes
        activations = activations[None]
    return normalise(np.einsum("...hwc,...c->...hw", activations, weights))

"""Grad-CAM: which pixels made the network say "Egyptian cat"? (notebook 03)

For a class score y and a spatial layer's activations A (h, w, c)::

    α_k = 1/(h·w) Σ_ij ∂y/∂A_ijk          (pooled gradients, one weight per channel)
    L   = ReLU(Σ_k α_k A_k) / max          (heatmap (h, w) in [0, 1])

One piece of plumbing (:class:`_GradCam`, like pytorch-grad-cam's ``base_cam``) runs the forward pass
and the gradients once, compiled, cached per (model, layer, score) — the most recent few, see
:mod:`cnnviz.caching`; the public functions are thin:

- :func:`gradcam` — the TF2 form (``A @ α[:, None]``), batched, one class per image;
- :func:`gradcam_loop` — the TF1-era form (numpy vector, per-channel loop, ``np.mean``);
- :func:`gradcam_parts` — activations, weights and heatmaps of SEVERAL classes per image from a
  single forward pass (top-k or a list): switching class afterwards is free (the explorer uses it);
- :func:`overlay`, :func:`save_gradcam`, :func:`show_gradcam` — pictures.
"""
from __future__ import annotations

import warnings
import weakref
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import matplotlib
import numpy as np
import tensorflow as tf
from PIL import Image

from .caching import function_key, per_model_cache
from .images import as_batch, check_finite
from .layers import check_images, spatial_layer, tap_model
from .models import unwrap

__all__ = ["GradCamParts", "gradcam", "gradcam_loop", "gradcam_parts", "overlay", "save_gradcam",
           "show_gradcam", "upsample", "weighted_heatmap"]


def normalise(heatmaps, axis=(-2, -1)):
    """ReLU, then divide by the maximum over ``axis``; an all-zero map stays zero (never NaN)."""
    heatmaps = np.maximum(heatmaps, 0)
    top = heatmaps.max(axis=axis, keepdims=True)
    return np.divide(heatmaps, top, out=np.zeros_like(heatmaps), where=top > 0)


def weighted_heatmap(activations, weights):
    """Σ_k α_k A_k, ReLU, normalised — in numpy, for cached parts.

    activations (..., h, w, c) and weights (..., c) → (..., h, w) in [0, 1]. For one image's k classes
    pass activations (h, w, c) and weights (k, c): → (k, h, w).
    """
    activations, weights = np.asarray(activations), np.asarray(weights)
    if weights.ndim == activations.ndim - 1:  # (k, c) against (h, w, c) → broadcast over classes
        activations = activations[None]
    return normalise(np.einsum("...hwc,...c->...hw", activations, weights))


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


class _GradCam:
    """The plumbing: a tap model (activations + score in one pass) and its compiled gradient step."""

    def __init__(self, keras_model, layer_name: str, score: Callable | None, output=None):
        self.layer_name = layer_name
        self.score = score
        self.tap = tap_model(keras_model, [layer_name], score="logits" if score is None else "output", output=output)
        self.num_classes = self.tap.outputs[-1].shape[-1]
        self.scores_per_image = 1 if score is None else scores_per_image(score, self.tap.outputs[-1].shape)
        # One trace each, whatever the batch size, image size or classes: shapes left open, classes a tensor.
        signature = [tf.TensorSpec(self.tap.inputs[0].shape, tf.float32), tf.TensorSpec((None, None), tf.int32)]
        # partial(), not a lambda: TF counts traces per code object, so lambdas written here add up over all
        # layers and warn of "retracing" from the 4th; each partial is counted on its own.
        self.one_class = tf.function(partial(self._compute, jacobian=False), input_signature=signature)
        self.many_classes = tf.function(partial(self._compute, jacobian=True), input_signature=signature)

    def _compute(self, images, classes, jacobian: bool):
        """images (N, H, W, 3) preprocessed; classes (N, k) class indices, or -r for the r-th best class."""
        with tf.GradientTape() as tape:
            (activations,), output = self.tap(images, training=False)  # A: (N, h, w, c)
            if self.score is not None:
                scores = tf.convert_to_tensor(self.score(output))
                scores = tf.reshape(scores, (tf.shape(scores)[0], -1))  # (N, k)
                classes = -tf.ones(tf.shape(scores), tf.int32)
            else:
                ranked = tf.argsort(output, axis=-1, direction="DESCENDING", stable=True)
                ranks = tf.gather(ranked, tf.maximum(-classes - 1, 0), batch_dims=1)
                classes = tf.where(classes < 0, ranks, classes)
                scores = tf.gather(output, classes, batch_dims=1)  # (N, k) logits y
            total = tf.reduce_sum(scores)  # images are independent: d(Σ_n y_n)/dA_n = dy_n/dA_n
        if jacobian:  # k classes from one forward pass: k backward passes, vectorised
            grads = tape.batch_jacobian(scores, activations)  # (N, k, h, w, c)
        else:  # one class per image
            grads = tape.gradient(total, activations)[:, None]  # (N, 1, h, w, c)
        weights = tf.reduce_mean(grads, axis=(2, 3))  # α: (N, k, c)
        # per image and class, A (h·w, c) @ α (c, 1) → (h·w, 1); batched: (N, 1, h·w, c) @ (N, k, c, 1)
        n, h, w, c = tf.unstack(tf.shape(activations))
        flat = tf.reshape(activations, (n, 1, h * w, c))
        heatmaps = tf.reshape(flat @ weights[..., None], (n, -1, h, w))  # (N, k, h, w)
        heatmaps = tf.nn.relu(heatmaps)
        heatmaps = tf.math.divide_no_nan(heatmaps, tf.reduce_max(heatmaps, axis=(2, 3), keepdims=True))
        return activations, weights, classes, scores, heatmaps, output

    def __call__(self, images, classes) -> GradCamParts:
        """images (N, H, W, 3) preprocessed, classes (N, k) as in :meth:`_compute` → numpy parts."""
        images, classes = tf.convert_to_tensor(images, tf.float32), tf.convert_to_tensor(classes, tf.int32)
        compiled = self.one_class if classes.shape[1] == 1 else self.many_classes
        return GradCamParts(*(t.numpy() for t in compiled(images, classes)))


def scores_per_image(score: Callable, output_shape) -> int:
    """k, when ``score`` maps the model's output (N, …) to (N,) (k = 1) or (N, k) scores; else a ValueError.

    Traced once on a symbolic output (no model run), so a wrong shape is reported before compiling.
    """
    traced = tf.function(score, autograph=False).get_concrete_function(tf.TensorSpec(output_shape, tf.float32))
    results = tf.nest.flatten(traced.structured_outputs)
    shape = tf.convert_to_tensor(results[0]).shape if len(results) == 1 else None
    if shape is None or shape.rank not in (1, 2) or shape[0] is not None or None in shape[1:]:
        raise ValueError(f"score must give one value per image, shape (N,) — or (N, k) for gradcam_parts; on the "
                         f"model's output {tuple(output_shape)} it gives "
                         f"{tuple(shape) if shape is not None else f'{len(results)} tensors'}. "
                         "Example: score=lambda output: output[:, 3]")
    return 1 if shape.rank == 1 else shape[1]


def _plumbing(keras_model, layer, score, output=None) -> _GradCam:
    """The compiled Grad-CAM of (model, layer, score, output), from the model's bounded cache: a few recent
    ones are kept (a sweep over every layer, or a new ``score`` lambda per call, does not grow memory)."""
    name = spatial_layer(keras_model, layer).name  # wrong / non-spatial layer → clear ValueError
    return per_model_cache(keras_model, "gradcam").lookup((name, function_key(score), output),
                                                          lambda: _GradCam(keras_model, name, score, output))


_WARNED_PROBABILITIES = weakref.WeakSet()  # models already warned about, once each


def _warn_if_probabilities(keras_model, outputs: np.ndarray) -> None:
    """Warn once per model when the "logits" look like probabilities: a softmax cnnviz could not take off."""
    if (outputs.shape[-1] > 1 and outputs.min() >= 0 and np.allclose(outputs.sum(axis=-1), 1, atol=1e-3)
            and keras_model not in _WARNED_PROBABILITIES):
        _WARNED_PROBABILITIES.add(keras_model)
        warnings.warn(f"model {keras_model.name!r} seems to end in a softmax cnnviz cannot take off (its scores "
                      "are probabilities summing to 1), so these maps explain probabilities, not logits. End the "
                      "model with a Softmax layer or Dense(..., activation='softmax') to explain logits.",
                      UserWarning, stacklevel=3)


def _class_matrix(class_index, n: int, top: int, num_classes: int) -> np.ndarray:
    """(n, k) class indices, -r meaning "the r-th best class": None → the ``top`` best; an int → (n, 1);
    n ints → one per image; for ONE image a list of k ints → its k classes; an (n, k) array as is."""
    if class_index is None:
        if not 1 <= top <= num_classes:
            raise ValueError(f"top must be between 1 and {num_classes}, got {top}")
        return np.tile(-np.arange(1, top + 1, dtype="int32"), (n, 1))
    classes = np.asarray(class_index)
    if not np.issubdtype(classes.dtype, np.integer):
        raise TypeError(f"class_index must be integers, got {class_index!r}")
    if classes.ndim == 0:
        classes = np.full((n, 1), classes)
    elif classes.ndim == 1:
        classes = classes[:, None] if len(classes) == n else classes[None]
    if classes.ndim != 2 or len(classes) != n:
        raise ValueError(f"class_index: give an int, {n} ints (one per image) or an ({n}, k) array; "
                         f"got shape {np.shape(class_index)}")
    bad = classes[(classes < 0) | (classes >= num_classes)]
    if bad.size:
        raise ValueError(f"class index {int(bad[0])} is out of range: the model has {num_classes} classes "
                         f"(0 … {num_classes - 1})")
    return classes.astype("int32")


def gradcam_parts(model, images, layer=None, class_index=None, top: int = 1, score=None,
                  output=None) -> GradCamParts:
    """Grad-CAM for several classes per image from ONE forward pass; see :class:`GradCamParts`.

    model: a :class:`~cnnviz.ModelBundle` (images are pixels in [0, 255]) or a bare Keras model.
    images: (N, H, W, 3). layer: a spatial layer's name, also inside a nested model; None → the last.
    class_index: None → the ``top`` best classes per image; an int or a list (N ints) → that class;
    an (N, k) array → k given classes per image. score: optional callable on the model's output
    (N, …) → (N,) or (N, k), for regression heads and custom targets (then no class_index).
    output: for a model with several outputs, the one to explain (its name or index).
    Keep ``activations`` and ``weights`` to redraw any class with :func:`weighted_heatmap`.
    """
    keras_model, preprocess = unwrap(model)
    batch, _ = as_batch(images)
    check_images(keras_model, batch)
    if score is not None and class_index is not None:
        raise ValueError("give class_index or score, not both: a score function already says what to explain")
    cam = _plumbing(keras_model, layer, score, output)
    classes = (np.zeros((len(batch), cam.scores_per_image)) if score is not None
               else _class_matrix(class_index, len(batch), top, cam.num_classes))
    parts = cam(preprocess(batch), classes)
    if score is None:
        _warn_if_probabilities(keras_model, parts.outputs)
    return parts


def gradcam(model, images, layer=None, class_index=None, score=None, output=None) -> np.ndarray:
    """Grad-CAM heatmaps, the TF2 form: (N, H, W, 3) images → (N, h, w) in [0, 1].

    One image (H, W, 3) gives one (h, w) map. class_index: None (top class of each image), an int,
    or one per image. Logits are used, not probabilities: the score before the model's final softmax or
    sigmoid, however it is written (a warning says so when it cannot be found); the model is never modified. Compiled and
    cached per (model, layer, score), the 2 most recent per model: repeated calls and other classes do
    not retrace; a new ``lambda`` per call with the same code and values shares one compiled function.
    output: which output of a multi-output model (name or index). One map per image: several classes or
    scores per image are :func:`gradcam_parts`' job.
    """
    batch, single = as_batch(images)
    heatmaps = _one_map_each(gradcam_parts(model, batch, layer, class_index, 1, score, output))
    return heatmaps[0] if single else heatmaps


def _one_map_each(parts: GradCamParts) -> np.ndarray:
    """The (N, h, w) maps of parts holding one class per image; a ValueError when there are several."""
    if parts.heatmaps.shape[1] != 1:
        raise ValueError(f"gradcam gives one map per image, but {parts.heatmaps.shape[1]} classes or scores per "
                         "image were asked for: use gradcam_parts(...) for several maps per image, or pass one "
                         "class per image")
    return parts.heatmaps[:, 0]


def gradcam_loop(model, images, layer=None, class_index=None, score=None) -> np.ndarray:
    """Grad-CAM the TF1 way, same signature and results as :func:`gradcam` (after normalisation).

    ``K.function`` gave numpy: pooled gradients (c,) and the conv output (h, w, c); each channel is
    scaled by its weight in a Python loop, then averaged over channels (DLwP 1st ed.).
    """
    batch, single = as_batch(images)
    parts = gradcam_parts(model, batch, layer, class_index, 1, score)
    _one_map_each(parts)
    heatmaps = []
    for conv_output, pooled_grads in zip(parts.activations.copy(), parts.weights[:, 0]):
        for i in range(conv_output.shape[-1]):
            conv_output[:, :, i] *= pooled_grads[i]
        heatmap = np.mean(conv_output, axis=-1)
        heatmaps.append(normalise(heatmap))
    return heatmaps[0] if single else np.stack(heatmaps)


def upsample(heatmap, size) -> np.ndarray:
    """A heatmap (h, w) resized (bilinear) to ``size`` = (H, W), clipped to [0, 1]."""
    height, width = size
    resized = Image.fromarray(np.asarray(heatmap, dtype="float32")).resize((width, height), Image.BILINEAR)
    return np.clip(np.asarray(resized), 0, 1)


def overlay(image, heatmap, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """The heatmap (h, w) in [0, 1], coloured and blended onto ``image`` (H, W, 3) in [0, 255].

    The map is resized (bilinear) to the image's ORIGINAL resolution; returns uint8 (H, W, 3).
    alpha: the heatmap's weight in [0, 1]. colormap: a matplotlib colormap name.
    """
    image = check_finite(np.asarray(image, dtype="float32"), "the image")
    heatmap = check_finite(np.asarray(heatmap, dtype="float32"), "the heatmap")
    if image.ndim != 3 or heatmap.ndim != 2:
        raise ValueError(f"overlay takes one image (H, W, 3) and one heatmap (h, w), got {image.shape} and "
                         f"{heatmap.shape}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1] (0: only the photo, 1: only the heatmap), got {alpha}")
    if colormap not in matplotlib.colormaps:
        raise ValueError(f"unknown colormap {colormap!r}: use a matplotlib name such as 'jet', 'turbo', "
                         "'inferno' or 'viridis' (see matplotlib.colormaps)")
    colours = matplotlib.colormaps[colormap](upsample(np.clip(heatmap, 0, 1), image.shape[:2]))[..., :3] * 255
    return np.clip((1 - alpha) * image + alpha * colours, 0, 255).astype("uint8")


def save_gradcam(image, heatmap, path, alpha: float = 0.4, colormap: str = "jet") -> Path:
    """Save the overlay as an image file (like keras.io's ``save_and_display_gradcam``); returns the path."""
    path = Path(path)
    Image.fromarray(overlay(image, heatmap, alpha, colormap)).save(path)
    return path


def show_gradcam(image, heatmaps, titles=(), alpha: float = 0.4, colormap: str = "jet", size: float = 3.2):
    """Plot the image, then one overlay per heatmap (h, w) or (k, h, w), in a row; returns the figure."""
    import matplotlib.pyplot as plt

    heatmaps = np.asarray(heatmaps)
    heatmaps = heatmaps[None] if heatmaps.ndim == 2 else heatmaps
    titles = ["image", *titles] if len(titles) == len(heatmaps) else list(titles)
    pictures = [np.clip(image, 0, 255).astype("uint8")] + [overlay(image, h, alpha, colormap) for h in heatmaps]
    figure, axes = plt.subplots(1, len(pictures), figsize=(size * len(pictures), size), squeeze=False)
    for ax, picture, title in zip(axes[0], pictures, [*titles, *[""] * len(pictures)]):
        ax.imshow(picture)
        ax.set_title(title)
        ax.axis("off")
    figure.tight_layout()
    return figure

"""Pixel-level attribution: gradients with respect to the image itself (notebook 05).

x is the image as given (pixels in [0, 255] for a :class:`~cnnviz.ModelBundle`: the preprocessing runs
inside the compiled graph), y the class logit (or a custom ``score`` of the model's output). All run
on :class:`cnnviz.attribution.InputGradients`, compiled once per model and batched:

- :func:`saliency` (Simonyan et al. 2014): S = max_colour |∂y/∂x|;
- :func:`smoothgrad` (Smilkov et al. 2017): S = max_colour 1/n Σ_i |∂y/∂x (x + ε_i)|, ε_i ~ N(0, σ²),
  σ = noise · (max x − min x);
- :func:`integrated_gradients` (Sundararajan et al. 2017): IG = Σ_colour (x − x') ⊙ 1/m Σ_s ∂y/∂x at
  x' + α_s (x − x'), α_s = (s + ½)/m (midpoint rule); Σ IG ≈ y(x) − y(x') ("completeness");
- :func:`guided_backprop` (Springenberg et al. 2015): max_colour |∂y/∂x| through a clone whose ReLU and
  ReLU6 pass back only positive gradients; :func:`guided_gradcam` (Selvaraju et al. 2017): that times
  the upsampled Grad-CAM map.

Maps are (N, H, W), max-normalised to [0, 1] (``normalize=False``: raw, ≥ 0), except Integrated
Gradients: signed and unnormalised. One image (H, W, 3) gives one (H, W) map.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .attribution import class_matrix, input_gradients, normalise, positive_int
from .gradcam import gradcam, upsample
from .images import as_batch
from .models import unwrap

__all__ = ["PIXEL_METHODS", "guided_backprop", "guided_gradcam", "integrated_gradients", "saliency",
           "smoothgrad"]


def _setup(model, images, class_index, score, guided: bool = False):
    """(plumbing, images (N, H, W, C) float32, classes (N,) int32 with -1 = top class, one image given)."""
    batch, single = as_batch(images)
    gradients = input_gradients(unwrap(model), score, guided)
    return gradients, batch, class_matrix(class_index, len(batch), gradients.num_classes, score)[:, 0], single


def _finish(maps, single: bool, normalize: bool):
    maps = np.asarray(maps)
    maps = normalise(maps) if normalize else maps
    return maps[0] if single else maps


def _max_over_colour(gradients):
    return np.abs(np.asarray(gradients)).max(axis=-1)


def saliency(model, images, class_index=None, score=None, normalize: bool = True) -> np.ndarray:
    """Vanilla gradient: S_ij = max_colour |∂y/∂x_ij|, (N, H, W, 3) → (N, H, W) in [0, 1]."""
    gradients, batch, classes, single = _setup(model, images, class_index, score)
    grads, _, _ = gradients.gradients(tf.constant(batch), tf.constant(classes))
    return _finish(_max_over_colour(grads), single, normalize)


def _chunks(total: int, per_chunk: int):
    """(start, size) pieces of ``total`` items, ``per_chunk`` at most."""
    return [(start, min(per_chunk, total - start)) for start in range(0, total, per_chunk)]


def smoothgrad(model, images, class_index=None, score=None, samples: int = 20, noise: float = 0.1,
               seed: int | None = 0, batch_size: int = 16, normalize: bool = True) -> np.ndarray:
    """SmoothGrad: the saliency |∂y/∂x| averaged over ``samples`` noisy copies, then max over colour::

        S = max_colour 1/n Σ_i |∂y/∂x (x + ε_i)|,   ε_i ~ N(0, σ²),  σ = noise · (max x − min x) per image

    (The magnitude is averaged, as in tf-keras-vis and captum's NoiseTunnel: signed gradients of noisy
    copies cancel into noise.) The class is the clean image's (top class by default). Noise:
    ε = σ · tf.random.stateless_normal((count, N, H, W, C), seed=(seed, chunk)) per chunk of ``count``
    copies: the same seed gives the same map (None: fresh noise each call). ``batch_size``: noisy images
    per compiled call (memory: 16 on Lite0 peaks at ~1.4 GB RSS).
    (N, H, W, 3) → (N, H, W) in [0, 1].
    """
    samples, batch_size = positive_int("samples", samples), positive_int("batch_size", batch_size)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise is a fraction of the input range (e.g. 0.1), got {noise!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2 ** 31)
    gradients, batch, classes, single = _setup(model, images, class_index, score)
    classes = tf.constant(gradients.resolve(batch, classes))  # the clean image's class, not each copy's
    sigma = tf.constant(noise * (batch.max(axis=(1, 2, 3)) - batch.min(axis=(1, 2, 3))), tf.float32)
    x, total = tf.constant(batch), 0
    for index, (_, count) in enumerate(_chunks(samples, max(1, batch_size // len(batch)))):
        total += gradients.noisy_sum(x, classes, sigma, tf.constant([seed, index], tf.int32), tf.constant(count))
    return _finish(np.asarray(total / samples).max(axis=-1), single, normalize)


def integrated_gradients(model, images, class_index=None, score=None, baseline=None, steps: int = 128,
                         batch_size: int = 16) -> np.ndarray:
    """Integrated Gradients, summed over colour: (N, H, W) SIGNED attributions, not normalised::

        IG_ij = Σ_colour (x − x') ⊙ 1/m Σ_s ∂y/∂x (x' + α_s (x − x')),  α_s = (s + ½)/m,  s = 0 … m−1

    so that Σ_ij IG_ij ≈ y(x) − y(x') (completeness; the midpoint rule's error shrinks with ``steps`` = m:
    on Lite0 11% at 64 steps, 0.5% at 256). ``baseline`` x': in the images' space (pixels for a
    ModelBundle), broadcastable to the images; None → zeros (a black photo). The path points run
    ``batch_size`` at a time through one compiled forward + backward pass.
    """
    steps, batch_size = positive_int("steps", steps), positive_int("batch_size", batch_size)
    gradients, batch, classes, single = _setup(model, images, class_index, score)
    try:
        baselines = np.broadcast_to(np.zeros_like(batch) if baseline is None
                                    else np.asarray(baseline, "float32"), batch.shape).astype("float32")
    except ValueError:
        raise ValueError(f"baseline of shape {np.shape(baseline)} does not fit images of shape "
                         f"{batch.shape[-3:]}: give one image, one per image, or a scalar") from None
    classes = tf.constant(gradients.resolve(batch, classes))
    alphas = (np.arange(steps, dtype="float32") + 0.5) / steps
    x, x0, total = tf.constant(batch), tf.constant(baselines), 0
    for start, count in _chunks(steps, max(1, batch_size // len(batch))):
        total += gradients.path_sum(x, x0, classes, tf.constant(alphas[start:start + count]))
    attributions = ((batch - baselines) * np.asarray(total) / steps).sum(axis=-1)
    return attributions[0] if single else attributions


def guided_backprop(model, images, class_index=None, score=None, normalize: bool = True) -> np.ndarray:
    """Guided backpropagation: max_colour |∂y/∂x| where every ReLU / ReLU6 passes back only positive
    gradients where it was active (R_in = R_out · [x > 0] · [R_out > 0]). Computed on a clone sharing the
    model's layers (:func:`cnnviz.attribution.guided_clone`): the model's own gradients are unchanged.
    (N, H, W, 3) → (N, H, W) in [0, 1].
    """
    gradients, batch, classes, single = _setup(model, images, class_index, score, guided=True)
    grads, _, _ = gradients.gradients(tf.constant(batch), tf.constant(classes))
    return _finish(_max_over_colour(grads), single, normalize)


def guided_gradcam(model, images, layer=None, class_index=None, score=None, normalize: bool = True) -> np.ndarray:
    """Guided Grad-CAM: guided backprop (fine detail) ⊙ Grad-CAM upsampled bilinearly to (H, W) (which
    class): G_ij = max_colour |guided ∂y/∂x_ij| · L_ij. (N, H, W, 3) → (N, H, W) in [0, 1]."""
    batch, single = as_batch(images)
    detail = guided_backprop(model, batch, class_index, score, normalize=False)
    heatmaps = gradcam(model, batch, layer, class_index, score)
    where = np.stack([upsample(heatmap, batch.shape[1:3]) for heatmap in heatmaps])
    return _finish(detail * where, single, normalize)


PIXEL_METHODS = {"saliency": saliency, "smoothgrad": smoothgrad, "integrated_gradients": integrated_gradients,
                 "guided_backprop": guided_backprop, "guided_gradcam": guided_gradcam}

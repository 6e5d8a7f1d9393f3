"""DeepDream: amplify what chosen layers already see in a photo (Mordvintsev et al., 2015).

Gradient ASCENT on the photo itself, not from noise, over "octaves" — the keras.io "Deep Dream" recipe:

    loss(x) = Σ_l w_l · Σ_{border-trimmed cells} A_l(x)² / |A_l|     (|A_l|: the layer's size h·w·c)
    x ← x + η · g / max(mean |g|, 1e-6),   g = ∇loss(x)              (the step normalised by the mean |g|)

run ``steps`` times at each of ``octaves`` scales, smallest first (sides ÷ octave_scale^k). Between octaves
the image is upscaled and the detail lost by upscaling is put back (the photo at this scale minus the
photo upscaled from the previous one). An octave stops early once the loss exceeds ``max_loss``. The
border (``trim`` cells each side) is left out of the loss: "same" padding makes edge cells unreliable.

Here the steps of an octave are ONE compiled call (all octaves share one trace: the image size is open), on
the network truncated at the deepest chosen layer with its batch norms folded.
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ..checks import check_count, check_number
from ..geometry import ImageTooSmall, layer_sizes
from .common import PIXELS, cached, network, photos_in

__all__ = ["Dream", "deep_dream"]


class Dream(NamedTuple):
    """What :func:`deep_dream` returns. image: (H, W, 3) float32 — (N, H, W, 3) for a batch — clipped to
    ``bounds`` (pixels [0, 255] for a bundle). loss: (steps run,) — (steps run, N) — the loss at each step, all
    octaves one after the other. shapes: the (h, w) of each octave, smallest first."""

    image: np.ndarray
    loss: np.ndarray
    shapes: list


def _layer_weights(layers) -> dict:
    """A layer name, a list of names (weight 1 each) or {name: weight} → {name: float weight}."""
    if isinstance(layers, str):
        layers = [layers]
    if isinstance(layers, dict):
        weights = dict(layers)
    elif isinstance(layers, (list, tuple)) and layers and all(isinstance(name, str) for name in layers):
        weights = dict.fromkeys(layers, 1.0)
    else:
        raise ValueError(f"layers must be a layer name, a list of names or {{name: weight}}, got {layers!r}")
    if not weights or not all(isinstance(k, str) for k in weights):
        raise ValueError(f"layers must name at least one layer, got {layers!r}")
    return {name: check_number(f"layers[{name!r}]", w, 0, low_open=True) for name, w in weights.items()}


class _Dreamer:
    def __init__(self, net):
        self.net = net
        scalar = [tf.TensorSpec((), tf.int32)] * 2 + [tf.TensorSpec((), tf.float32)] * 2
        signature = [tf.TensorSpec((None, None, None, net.input_shape[-1]), tf.float32),
                     tf.TensorSpec((len(net.layers),), tf.float32), *scalar]  # one trace for every octave
        self.octave = tf.function(partial(self._octave), input_signature=signature)

    def loss(self, images, weights, trim):
        """(N,) the loss of each image: Σ_l w_l Σ_trimmed A_l² / |A_l| (keras.io's, per image)."""
        total = 0.0
        for w, maps in zip(tf.unstack(weights), self.net(images)[0]):
            size = tf.cast(tf.reduce_prod(tf.shape(maps)[1:]), tf.float32)
            inner = maps[:, trim:tf.shape(maps)[1] - trim, trim:tf.shape(maps)[2] - trim, :]
            total += w * tf.reduce_sum(tf.square(inner), axis=(1, 2, 3)) / size
        return total

    def _octave(self, images, weights, trim, steps, step, max_loss):
        """``steps`` normalised ascent steps; an image stops after the step whose loss exceeded ``max_loss``
        (as keras.io: that step's update is kept), the octave when all have."""
        history = tf.TensorArray(tf.float32, size=0, dynamic_size=True)
        active = tf.ones(tf.shape(images)[:1], tf.bool)
        for i in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(images)
                loss = self.loss(images, weights, trim)
            grads = tape.gradient(loss, images)  # images are independent: row n is ∂loss_n/∂x_n
            grads /= tf.maximum(tf.reduce_mean(tf.abs(grads), axis=(1, 2, 3), keepdims=True), 1e-6)
            images += step * grads * tf.cast(active, tf.float32)[:, None, None, None]
            history = history.write(i, loss)
            active &= loss <= max_loss
            if not tf.reduce_any(active):
                break
        return images, history.stack()


def _shapes(size, octaves: int, octave_scale: float) -> list:
    """keras.io's octave sizes: int(side / octave_scale^k), k = octaves − 1 … 0 (smallest first)."""
    return [tuple(int(side / octave_scale ** k) for side in size) for k in reversed(range(octaves))]


def deep_dream(model, image, layers, octaves: int = 3, octave_scale: float = 1.4, steps: int = 20,
               step: float = 1.5, max_loss: float | None = None, trim: int = 2, bounds=PIXELS) -> Dream:
    """Dream ``image`` (H, W, 3) — or a batch, each image on its own — by amplifying ``layers``.

    layers: a layer name, a list of names, or keras.io's ``{name: weight}``. octaves, octave_scale, steps (per
    octave), step: keras.io's ``num_octave``, ``octave_scale``, ``iterations`` and step, the step in the image's
    units (pixels for a bundle: 1.5 px of mean change per step ≈ keras.io's 0.01 on [-1, 1] inputs); max_loss:
    None for no cap. trim: border cells left out of the loss. bounds: the image's valid range, (0, 255) for
    pixels (checked on the photo; for a bare model give its input's, or None), the result is clipped to it.
    Deterministic (no randomness). Returns :class:`Dream` (image, per-step loss, octave shapes).
    """
    keras_model, preprocess, batch, single, low, high = photos_in(model, image, bounds)
    weights = _layer_weights(layers)
    octaves, steps, trim = check_count("octaves", octaves), check_count("steps", steps), check_count("trim", trim, 0)
    octave_scale = check_number("octave_scale", octave_scale, 1.0)
    step = check_number("step", step, 0, low_open=True)
    max_loss = math.inf if max_loss is None else check_number("max_loss", max_loss)
    shapes = _shapes(batch.shape[1:3], octaves, octave_scale)
    net = network(keras_model, preprocess, tuple(weights), logits=False)
    _check_octaves(keras_model, weights, shapes[0], trim)
    dreamer = cached(keras_model, "dreams.deep_dream", net, lambda: _Dreamer(net))
    original = tf.constant(batch)
    shrunk = tf.image.resize(original, shapes[0])
    dream, losses = original, []
    arguments = (tf.constant(list(weights.values()), tf.float32), tf.constant(trim), tf.constant(steps),
                 tf.constant(step, tf.float32), tf.constant(max_loss, tf.float32))
    for shape in shapes:
        dream = tf.image.resize(dream, shape)
        dream, loss = dreamer.octave(dream, *arguments)
        losses.append(loss.numpy())
        same_size = tf.image.resize(original, shape)
        dream += same_size - tf.image.resize(shrunk, shape)  # the detail lost by upscaling, put back
        shrunk = same_size
    result = np.clip(dream.numpy(), low, high)
    loss = np.concatenate(losses)
    return Dream(result[0] if single else result, loss[:, 0] if single else loss, shapes)


def _check_octaves(keras_model, weights, smallest, trim: int) -> None:
    """A ValueError when a chosen layer would have no cell left after trimming at the smallest octave."""
    try:
        sizes = layer_sizes(keras_model, smallest)
    except ImageTooSmall as error:
        raise ValueError(f"octaves: the smallest octave, {smallest[0]}×{smallest[1]}, is too small for the model "
                         f"({error}): use fewer octaves, a smaller octave_scale or a larger image") from None
    except Exception:  # noqa: BLE001 — an unplaceable model: TensorFlow says what is wrong, if anything
        return
    for name in weights:
        h, w = sizes.get(name, (trim * 2 + 1,) * 2)
        if min(h, w) <= 2 * trim:
            raise ValueError(f"layers: {name!r} is {h}×{w} at the smallest octave {smallest[0]}×{smallest[1]}, nothing "
                             f"is left after trimming {trim} cells each side: use fewer octaves, a smaller "
                             "octave_scale, a larger image, a smaller trim or an earlier layer")

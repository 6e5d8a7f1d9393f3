"""Filter visualisation: which input pattern makes a filter fire most? (notebook 02)

Gradient ascent in input space. The classic recipe (Deep Learning with Python, keras.io "Visualizing
what convnets learn"): start from grey noise, then repeat ``x += step * g / (rms(g) + 1e-5)`` where
``g`` is the gradient of the filter's mean activation; show ``deprocess_image(x)``.
:func:`visualize_filters` runs it for many filters at once — one batch, one compiled loop, on a model
truncated at the target layer with its batch norms folded into the convolutions (``cnnviz.folding``).
``robust=True`` follows Lucid (Olah et al., 2017): the image is parameterised by a 1/f-scaled Fourier
spectrum in decorrelated colour space, optimised with Adam while a random rotation, scale and shift
move it at every step, so only robust patterns survive.
"""
from __future__ import annotations

import math
import os
from functools import partial
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from .caching import function_key, per_model_cache
from .folding import fold_batchnorm
from .images import tile
from .layers import spatial_layer, tap_model
from .models import unwrap

__all__ = ["FilterPatterns", "deprocess_image", "filter_grid", "generate_pattern", "visualize_filters"]

MIN_SIZE = 32
CHUNK = 10  # steps per compiled call: the progress bar moves between chunks
SUB_BATCH = 8  # images per sub-batch inside the compiled step (see sub_batch_gradients)
PARALLEL = max(2, os.cpu_count() or 2)  # sub-batches computed at the same time
# Lucid's colour correlation of ImageNet (square root of the RGB covariance), columns normalised.
COLOR_CORRELATION = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], "float32")
COLOR_CORRELATION /= np.linalg.norm(COLOR_CORRELATION, axis=0).max()


class FilterPatterns(NamedTuple):
    """What :func:`visualize_filters` returns.

    images: (F, H, W, 3) uint8, one pattern per filter. activation: (F,) mean activation of each
    filter on its final pattern. history: (steps, F) mean activation at each step — the loss curve.
    """

    images: np.ndarray
    activation: np.ndarray
    history: np.ndarray
    filters: tuple


def deprocess_image(x) -> np.ndarray:
    """The classic ``deprocess_image``: centre on 0, std to 0.1, add 0.5, clip to [0, 1], ×255, uint8.

    x: (H, W, 3) or (N, H, W, 3) floats; each image is normalised on its own. A constant image
    becomes flat grey (127), never NaN.
    """
    x = np.asarray(x, dtype="float32")
    if x.ndim not in (3, 4) or not np.isfinite(x).all():
        raise ValueError(f"deprocess_image expects finite (H, W, 3) or (N, H, W, 3) values, got shape {x.shape}")
    axes = (-3, -2, -1)
    x = x - x.mean(axis=axes, keepdims=True)
    x = x / (x.std(axis=axes, keepdims=True) + 1e-5) * 0.1 + 0.5
    return (np.clip(x, 0, 1) * 255).astype("uint8")


def filter_grid(images, margin: int = 5, columns: int | None = None) -> np.ndarray:
    """Tile (N, H, W, 3) patterns row by row into one image with black margins between them.

    ``columns`` defaults to ceil(sqrt(N)): 64 patterns make the classic 8×8 grid. Result:
    (rows·H + (rows−1)·margin, columns·W + (columns−1)·margin, 3), the dtype of ``images``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"filter_grid expects a non-empty (N, H, W, C) batch, got shape {images.shape}")
    columns = math.ceil(math.sqrt(len(images))) if columns is None else columns
    _check_int("margin", margin, minimum=0)
    _check_int("columns", columns, minimum=1)
    return tile(images, columns, margin, fill=0)


def _check_int(name: str, value, minimum: int):
    """A ValueError unless ``value`` is an int (not a bool) ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


class _Ascent:
    """Gradient ascent on the filters of one layer, compiled once and reused by every call."""

    def __init__(self, keras_model, preprocess, layer_name: str):
        self.preprocess = preprocess
        self.channels = spatial_layer(keras_model, layer_name).output.shape[-1]
        extractor = tap_model(keras_model, [layer_name], score=None)
        declared = extractor.inputs[0].shape
        flexible = keras.Input((None, None, declared[-1])) if any(declared[1:3]) else None  # any size ≥ 32
        self.extractor = fold_batchnorm(extractor, flexible)  # same maps, ~25% less work per step
        # partial(): TF counts traces per code object, so a bound method's traces on all instances add
        # up and warn of "retracing" once a notebook visits five layers; a partial is counted on its own.
        self.classic = tf.function(partial(self._classic), reduce_retracing=True)
        self.robust = tf.function(partial(self._robust), reduce_retracing=True)
        self.final_activation = tf.function(partial(self.activation), reduce_retracing=True)

    def activation(self, pixels, filters):
        """Mean activation of filter ``filters[i]`` on image ``pixels[i]``: (F, H, W, 3) → (F,)."""
        maps = keras.tree.flatten(self.extractor(self.preprocess(pixels), training=False))[0]
        return tf.reduce_mean(tf.gather(maps, filters, axis=3, batch_dims=1), axis=(1, 2))

    def _classic(self, pixels, filters, steps, step_size, sub_batch):
        """``steps`` classic steps on all images at once; each image's gradient normalised by its own RMS."""
        history = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            activation, grads = sub_batch_gradients(self.activation, pixels, (filters,), sub_batch)
            grads /= tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True)) + 1e-5
            pixels += step_size * grads
            history = history.write(i, activation)
        return pixels, history.stack()

    def _robust(self, state, filters, start, steps, learning_rate, jitter, scale, size, sub_batch):
        """``steps`` Adam steps on Fourier spectra, the image randomly rotated/scaled/shifted each step
        (``jitter`` (F, steps, 4): each filter's own random draws, see :func:`jitter_draws`)."""
        spectrum, mean, var = state

        def objective(spectrum, filters, transforms):
            pixels = spectrum_to_pixels(spectrum, scale, size)
            return self.activation(keras.ops.image.affine_transform(pixels, transforms, fill_mode="reflect"), filters)

        history = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            transforms = random_transforms(jitter[:, i], size)
            activation, grads = sub_batch_gradients(objective, spectrum, (filters, transforms), sub_batch)
            t = tf.cast(start + i + 1, tf.float32)
            mean, var = 0.9 * mean + 0.1 * grads, 0.999 * var + 0.001 * tf.square(grads)
            spectrum += learning_rate * (mean / (1 - 0.9 ** t)) / (tf.sqrt(var / (1 - 0.999 ** t)) + 1e-8)
            history = history.write(i, activation)
        return (spectrum, mean, var), history.stack()

    def run(self, filters, size, steps, step_size, seed, robust, progress):
        """Optimise one pattern per filter; returns (pixels (F, H, W, 3) float32, history (steps, F))."""
        filters_t, sub_batch = tf.constant(filters, tf.int32), tf.constant(min(SUB_BATCH, len(filters)))
        if robust:
            spectrum = tf.constant(initial_spectra(filters, size, seed))
            state = (spectrum, tf.zeros_like(spectrum), tf.zeros_like(spectrum))
            scale = tf.constant(frequency_scale(size))
            jitter = jitter_draws(filters, steps, seed)
        else:
            state = tf.constant(np.stack([grey_noise(size, seed, f) for f in filters]))
        histories = []
        with tqdm(total=steps, delay=2.0, disable=not progress, desc=f"{len(filters)} filters", unit="step") as bar:
            for start in range(0, steps, CHUNK):
                n = tf.constant(min(CHUNK, steps - start))
                if robust:
                    state, history = self.robust(state, filters_t, tf.constant(start), n, tf.constant(step_size),
                                                 tf.constant(jitter[:, start:start + int(n)]), scale,
                                                 tf.constant(size), sub_batch)
                else:
                    state, history = self.classic(state, filters_t, n, tf.constant(step_size, tf.float32), sub_batch)
                histories.append(history.numpy())
                bar.update(int(n))
        pixels = spectrum_to_pixels(state[0], scale, size) if robust else state
        return pixels, np.concatenate(histories)


def _ascent(keras_model, preprocess, layer_name: str) -> _Ascent:
    """The compiled ascent of (model, layer, preprocess), from the model's bounded cache (a few recent)."""
    return per_model_cache(keras_model, "ascent").lookup((layer_name, function_key(preprocess)),
                                                         lambda: _Ascent(keras_model, preprocess, layer_name))


def sub_batch_gradients(objective, params, per_image, sub_batch):
    """``objective(params, *per_image)`` → (F,) activations, and their gradient d/d params (F, ...).

    Images are independent, so the batch runs as sub-batches of ``sub_batch`` images, ``PARALLEL`` at
    a time: one big batch is memory-bound on a CPU, cache-sized ones running side by side are not.
    """
    n = tf.shape(params)[0]
    pad = (sub_batch - n % sub_batch) % sub_batch

    def split(t):  # (F, ...) → (F / sub_batch, sub_batch, ...), padded with copies of the first image
        t = tf.concat([t, tf.repeat(t[:1], pad, axis=0)], axis=0)
        return tf.reshape(t, tf.concat([[-1, sub_batch], tf.shape(t)[1:]], axis=0))

    def ascend(chunk):
        with tf.GradientTape() as tape:
            tape.watch(chunk[0])
            activation = objective(*chunk)
        return activation, tape.gradient(activation, chunk[0])  # d(sum)/dx_i = d(activation_i)/dx_i

    activation, grads = tf.map_fn(ascend, tuple(split(t) for t in (params, *per_image)),
                                  fn_output_signature=(tf.float32, tf.float32), parallel_iterations=PARALLEL)
    grads = tf.reshape(grads, tf.concat([[-1], tf.shape(params)[1:]], 0))[:n]
    activation = tf.reshape(activation, [-1])[:n]
    return tf.ensure_shape(activation, params.shape[:1]), tf.ensure_shape(grads, params.shape)


def grey_noise(size, seed: int, filter_index: int) -> np.ndarray:
    """The classic start, ``random * 20 + 128``: one (H, W, 3) image per (seed, filter)."""
    return (np.random.default_rng([seed, filter_index]).random((*size, 3)) * 20 + 128).astype("float32")


def frequency_scale(size) -> np.ndarray:
    """Lucid's 1/f spectrum scale (H, W//2+1): every frequency band gets the same energy."""
    h, w = size
    frequencies = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    return (np.sqrt(h * w) / np.maximum(frequencies, 1.0 / max(h, w))).astype("float32")


def initial_spectra(filters, size, seed: int):
    """Small random spectra (F, 2, 3, H, W//2+1), real and imaginary parts: a near-grey start."""
    shape = (2, 3, size[0], size[1] // 2 + 1)
    return np.stack([np.random.default_rng([seed, f]).normal(0, 0.01, shape) for f in filters]).astype("float32")


def spectrum_to_pixels(spectrum, scale, size):
    """(F, 2, 3, H, W//2+1) spectra → (F, H, W, 3) pixels in (0, 255): 1/f scale, inverse FFT, colour,
    sigmoid."""
    spectra = tf.complex(spectrum[:, 0] * scale, spectrum[:, 1] * scale)
    image = tf.signal.irfft2d(spectra, fft_length=size) / 4.0  # (F, 3, H, W), decorrelated colours
    image = tf.einsum("fchw,dc->fhwd", image, tf.constant(COLOR_CORRELATION))
    return tf.sigmoid(image) * 255.0


def jitter_draws(filters, steps: int, seed: int) -> np.ndarray:
    """Uniform draws in [-1, 1), (F, steps, 4), from one generator per (seed, filter): a filter's jitter,
    and so its pattern, does not depend on which other filters share the batch."""
    return np.stack([np.random.default_rng([seed, f, 1]).uniform(-1, 1, (steps, 4)) for f in filters]
                    ).astype("float32")


def random_transforms(draws, size):
    """(n, 4) uniform draws → (n, 8) affine transforms: rotate by up to ±10°, scale by 0.9–1.1, shift by up
    to ±8 px, each image its own (``keras.ops.image.affine_transform`` format: output (x, y) samples input
    (a0·x + a1·y + a2, …))."""
    angle, scale, dx, dy = tf.unstack(draws, axis=1)
    angle, scale, dx, dy = angle * math.radians(10), 1.0 + 0.1 * scale, 8.0 * dx, 8.0 * dy
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    cy, cx = tf.unstack((tf.cast(size, tf.float32) - 1) / 2)  # about the centre
    zeros = tf.zeros_like(cos)
    return tf.stack([cos, -sin, cx - cos * cx + sin * cy + dx,
                     sin, cos, cy - sin * cx - cos * cy + dy, zeros, zeros], axis=1)


def _check(ascent: _Ascent, layer_name: str, filters, size):
    filters = tuple(int(f) for f in (range(min(64, ascent.channels)) if filters is None else filters))
    bad = [f for f in filters if not 0 <= f < ascent.channels]
    if not filters or bad:
        raise ValueError(f"filter indices must be in [0, {ascent.channels}) for layer {layer_name!r} "
                         f"({ascent.channels} filters); got {list(bad) or 'none'}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or min(size) < MIN_SIZE:
        raise ValueError(f"size must be an int or (height, width), each at least {MIN_SIZE} pixels; got {size}")
    return filters, size


def visualize_filters(model, layer_name: str, filters=None, size=128, steps: int | None = None,
                      step: float | None = None, seed: int = 0, robust: bool = False,
                      progress: bool = True) -> FilterPatterns:
    """The input pattern that maximises each filter's mean activation, all filters in one batch.

    model: a :class:`~cnnviz.ModelBundle` (patterns are pixels, preprocessed inside) or a Keras model.
    layer_name: a spatial layer. On ReLU6 networks prefer the BatchNorm output before the activation
    (``*_bn``): a ReLU6 output that is 0 or 6 everywhere has no gradient and its pattern stays noise.
    filters: filter indices, default the first 64. size: int or (H, W) ≥ 32, whatever the model's
    declared input. steps: 40 classic, 64 robust. step: pixels per step (1.0) classic, Adam's
    learning rate (0.1) robust. Deterministic for a given ``seed``; a filter's start does not depend
    on the other filters. progress: a tqdm bar, shown only once the run has lasted 2 s.
    Returns :class:`FilterPatterns`: ``images`` (F, H, W, 3) uint8 — deprocessed (classic) or the
    pixels themselves (robust, already valid colours) — plus activations and the loss curve.
    """
    keras_model, preprocess = unwrap(model)
    steps = (64 if robust else 40) if steps is None else steps
    step = (0.1 if robust else 1.0) if step is None else step
    _check_int("steps", steps, minimum=1)
    _check_int("seed", seed, minimum=0)
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < math.inf:
        raise ValueError(f"step must be a positive number, got {step!r}")
    if not isinstance(progress, bool) or not isinstance(robust, bool):
        raise ValueError(f"robust and progress must be True or False, got {robust!r} and {progress!r}")
    ascent = _ascent(keras_model, preprocess, layer_name)
    filters, size = _check(ascent, layer_name, filters, size)
    pixels, history = ascent.run(filters, size, steps, step, seed, robust, progress)
    activation = ascent.final_activation(pixels, tf.constant(filters)).numpy()
    images = np.clip(pixels.numpy(), 0, 255).astype("uint8") if robust else deprocess_image(pixels)
    return FilterPatterns(images, activation, history, filters)


def generate_pattern(model, layer_name: str, filter_index: int, size=128, steps: int = 40,
                     step: float = 1.0, seed: int = 0) -> np.ndarray:
    """The classic single-filter recipe: grey noise, ``steps`` normalised gradient-ascent steps of
    ``step`` pixels, compiled in ``tf.function``, then :func:`deprocess_image`. Returns (H, W, 3) uint8."""
    return visualize_filters(model, layer_name, [filter_index], size, steps, step, seed, progress=False).images[0]

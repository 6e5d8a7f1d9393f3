"""Plumbing the dreams share: one network per (model, layers, preprocessing), argument checks, and
notebook 02's robust image parameterisation (imported from :mod:`cnnviz.filters`, not copied).

A :class:`Network` runs images AS THE CALLER GIVES THEM (pixels in [0, 255] for a
:class:`~cnnviz.ModelBundle`, whose preprocessing runs inside the graph; a bare Keras model's own input)
through a tap of the user's model (``cnnviz.tap_model``: shared layers, nothing mutated, the final softmax
left out) with its batch norms folded into the convolutions (``cnnviz.folding``: same numbers to float
rounding, less work per step). It returns ([activations of the tapped layers], logits or None), float32.

Everything compiled lives in the model's bounded caches (:func:`cnnviz.caching.per_model_cache`); classes,
targets, steps and step sizes go in as tensors and the loops trace with open batch dimensions
(:class:`compile_`), so one trace serves every class, batch size and call.
"""
from __future__ import annotations

import inspect
import numbers
from functools import partial

import keras
import numpy as np
import tensorflow as tf

from ..caching import function_key, per_model_cache
from ..checks import _is_int, check_count
# notebook 02's robust parameterisation and sub-batch trick, imported (not copied) from the one place they live;
# the other dreams modules take them from this one
from ..filters import (SUB_BATCH, frequency_scale, grey_noise, initial_spectra, jitter_draws,  # noqa: F401
                       random_transforms, spectrum_to_pixels, sub_batch_gradients)
from ..folding import fold_batchnorm
from ..heads import probabilities_from
from ..images import as_batch, image_size
from ..layers import _input_shape, build_tap, check_images, spatial_layer
from ..models import unwrap

NETWORKS = 4  # folded taps kept per model (the compiled functions using them are cached per purpose)
PIXELS = (0.0, 255.0)  # what a generated image is: pixels, as load_image gives them

def gradients(objective, params, per_image, sub_batch):
    """``objective(params, *per_image)`` → (N,) independent values, and d(value_n)/d(params_n) (N, ...).

    sub_batch None: one tape over the whole batch (small batches: measured as fast, and it compiles in half
    the time); a tensor: notebook 02's sub-batch trick, which also bounds the memory of a large batch to
    PARALLEL sub-batches (~28 MiB per 224² Lite0 image)."""
    if sub_batch is None:
        with tf.GradientTape() as tape:
            tape.watch(params)
            values = objective(params, *per_image)
        return values, tape.gradient(values, params)  # images are independent: row n is ∂value_n/∂params_n
    return sub_batch_gradients(objective, params, per_image, sub_batch)


def split(n: int):
    """The ``sub_batch`` for :func:`gradients`: None up to SUB_BATCH images, else balanced sub-batches of at
    most SUB_BATCH (a tensor: a new batch size does not retrace)."""
    if n <= SUB_BATCH:
        return None
    groups = -(-n // SUB_BATCH)
    return tf.constant(-(-n // groups))


class Network:
    """images (caller's units) → ([activations of ``layers``], logits (N, classes) or None), float32.

    :attr:`forward` is the compiled forward pass every dream shares — one trace for any batch and image size
    (tracing a call of the network costs more than a hundred steps of it): ``forward(images)`` →
    ([activations], logits, probabilities), the last two (N, 0) when the network has no logits.
    """

    def __init__(self, keras_model, preprocess, layers: tuple, logits: bool):
        tap, self.head = build_tap(keras_model, list(layers), score="logits" if logits else None)
        self.model = fold_batchnorm(tap)
        self.preprocess, self.layers, self.with_logits = preprocess, layers, logits
        self.num_classes = int(tap.outputs[-1].shape[-1]) if logits else None
        self.input_shape = _input_shape(keras_model)
        spec = tf.TensorSpec((None, None, None, self.input_shape[-1]), tf.float32)
        self.forward = tf.function(partial(self._forward), input_signature=[spec])

    def __call__(self, images):
        flat = keras.tree.flatten(self.model(self.preprocess(images), training=False))
        flat = [tf.cast(t, tf.float32) for t in flat]
        return flat[:len(self.layers)], (flat[len(self.layers)] if self.with_logits else None)

    def _forward(self, images):
        activations, logits = self(images)
        if logits is None:
            logits = tf.zeros((tf.shape(images)[0], 0))
            return activations, logits, logits
        return activations, logits, self.probabilities(logits)

    def probabilities(self, logits):
        """What the model says (:func:`cnnviz.heads.probabilities_from` for this network's head)."""
        return probabilities_from(logits, self.head)

    def run(self, images, chunk: int = 32):
        """:attr:`forward` over ``images`` (numpy or a tensor) in chunks of ``chunk`` images (bounded memory) →
        numpy ([activations], logits, probabilities)."""
        parts = [self.forward(tf.convert_to_tensor(images[i:i + chunk], tf.float32)) for i in range(0, len(images), chunk)]
        activations = [np.concatenate([p[0][k].numpy() for p in parts]) for k in range(len(self.layers))]
        return activations, np.concatenate([p[1].numpy() for p in parts]), np.concatenate([p[2].numpy() for p in parts])


def network(keras_model, preprocess, layers=(), logits: bool = True) -> Network:
    """The :class:`Network` of (model, layers, logits, preprocessing), from the model's bounded cache."""
    for name in layers:
        spatial_layer(keras_model, name)  # a clear error for a wrong or non-spatial layer
    key = (tuple(layers), logits, function_key(preprocess))
    return per_model_cache(keras_model, "dreams.networks", size=NETWORKS).lookup(
        key, lambda: Network(keras_model, preprocess, tuple(layers), logits))


def cached(keras_model, purpose: str, key, create, size: int = 2):
    """A compiled helper from the model's bounded cache ``purpose`` (LRU, ``size`` entries)."""
    return per_model_cache(keras_model, purpose, size=size).lookup(key, create)


class compile_:
    """``function`` (a bound method) compiled once for every batch: the first call traces it with every
    dimension of its arguments open but the last of a matrix or more (channels, the 4 draws of a
    transform): a batch of any size, any number of steps, any image size; every later call reuses it.
    ``fixed``: the names of arguments whose shape stays as given (an image ``size`` (2,) tensor). Tensors
    (or nests of them) and None go in. A ``tf.function`` of a partial: TF counts traces per code object, so
    a partial keeps each instance's traces apart (no spurious "retracing" warnings across layers or models).
    """

    def __init__(self, function, fixed=()):
        self.function = tf.function(partial(function), reduce_retracing=True)
        self.fixed = [name in fixed for name in inspect.signature(function).parameters]
        self.primed = set()

    def __call__(self, *args):
        specs = tuple(tf.nest.map_structure(lambda t: None if t is None else tf.TensorSpec(
            t.shape if fixed else _open(t.shape), t.dtype), arg) for fixed, arg in zip(self.fixed, args))
        key = str(specs)
        if key not in self.primed:  # one per kind of sub_batch (None or a tensor) and per fixed shape
            self.function.get_concrete_function(*specs)
            self.primed.add(key)
        return self.function(*args)

    def experimental_get_tracing_count(self) -> int:
        return self.function.experimental_get_tracing_count()


def _open(shape) -> list:
    return [None] * shape.rank if shape.rank < 2 else [None] * (shape.rank - 1) + [shape[-1]]


# ---- argument checks ----------------------------------------------------------------------------------
def check_classes(name: str, classes, num_classes: int) -> tuple[int, ...]:
    """An int or a non-empty sequence of ints, each in [0, num_classes) → a tuple of ints."""
    values = [classes] if _is_int(classes) else classes
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not len(values) or \
            not all(_is_int(c) for c in values):
        raise ValueError(f"{name} must be a class index or a non-empty list of class indices (ints), got {classes!r}")
    bad = [int(c) for c in values if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"{name}: class index {bad[0]} is out of range, the model has {num_classes} classes "
                         f"(0 … {num_classes - 1})")
    return tuple(int(c) for c in values)


def check_size(size, net: Network) -> tuple[int, int]:
    """(H, W) of images to generate: ``size`` (an int: a square), which the model must accept."""
    size = image_size(size)
    declared = tuple(net.input_shape[1:3])
    if None not in declared and size != declared:
        raise ValueError(f"size must be the model's input size {declared[0]}×{declared[1]} (it declares a fixed "
                         f"input), got {size[0]}×{size[1]}")
    return size


def check_bounds(bounds, batch: np.ndarray):
    """``bounds`` = (low, high), the valid range of image values (None: unbounded), checked against the images:
    (low, high) floats, ±inf for None."""
    if bounds is None:
        return -np.inf, np.inf
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2 and all(
            isinstance(b, numbers.Real) and not isinstance(b, bool) and np.isfinite(b) for b in bounds)
            and bounds[0] < bounds[1]):
        raise ValueError(f"bounds must be (low, high) with low < high, or None, got {bounds!r}")
    low, high = float(bounds[0]), float(bounds[1])
    if batch.min() < low - 1e-3 or batch.max() > high + 1e-3:
        raise ValueError(f"bounds: the images range over [{batch.min():g}, {batch.max():g}], outside bounds={bounds}: "
                         "pixels are in [0, 255] for a ModelBundle; for a bare model give bounds=(low, high) of its "
                         "input, or bounds=None")
    return low, high


def check_seed(seed) -> int:
    """A dream's seed: a whole number >= 0 (never None: every dream is deterministic per seed)."""
    return check_count("seed", seed, minimum=0)


def per_image_classes(name: str, classes, n: int, num_classes: int) -> np.ndarray:
    """One class for all ``n`` images or one per image → (n,) int32."""
    classes = check_classes(name, classes, num_classes)
    if len(classes) == 1:
        classes *= n
    if len(classes) != n:
        raise ValueError(f"{name}: give one class for all images or one per image ({n}), got {len(classes)}")
    return np.array(classes, "int32")


def per_image_draws(seed: int, n: int, stream: int, draw) -> np.ndarray:
    """``draw(rng)`` for each image i from its own generator (seed, i, stream), stacked → (n, ...) float32."""
    return np.stack([draw(np.random.default_rng([seed, i, stream])) for i in range(n)]).astype("float32")


def photos_in(model, images, bounds):
    """The prologue of a dream on photos: (keras model, preprocess, batch (N, H, W, C) float32, whether one
    image was given, low, high), the images checked against the model and ``bounds`` (see check_bounds)."""
    keras_model, preprocess = unwrap(model)
    batch, single = as_batch(images)
    check_images(keras_model, batch)
    return (keras_model, preprocess, batch, single, *check_bounds(bounds, batch))


# ---- the robust parameterisation (notebook 02) ---------------------------------------------------------
class Robust:
    """Lucid's image: a 1/f-scaled Fourier spectrum (n, 2, 3, H, W//2+1) in decorrelated colour space, seen
    through a sigmoid as pixels in (0, 255), randomly rotated (±10°), scaled (0.9–1.1) and shifted (±8 px) at
    every step, optimised by Adam. ``keys``: one int per image, its start and jitter's random stream (so an
    image does not depend on which others share the batch)."""

    def __init__(self, keys, size, steps: int, seed: int):
        spectrum = tf.constant(initial_spectra(keys, size, seed))
        self.state = (spectrum, tf.zeros_like(spectrum), tf.zeros_like(spectrum))
        self.scale, self.size = tf.constant(frequency_scale(size)), tf.constant(size)
        self.jitter = tf.constant(jitter_draws(keys, steps, seed))  # (n, steps, 4) uniform in [-1, 1)

    def pixels(self, state=None):
        return spectrum_to_pixels((self.state if state is None else state)[0], self.scale, tuple(self.size.numpy()))


def transformed(spectrum, scale, size, draws):
    """In-graph: spectra → pixels → each image moved by its own random transform (``draws`` (n, 4))."""
    pixels = spectrum_to_pixels(spectrum, scale, size)
    return keras.ops.image.affine_transform(pixels, random_transforms(draws, size), fill_mode="reflect")


def adam(state, grads, t, learning_rate, ascend: bool = True):
    """One Adam step (β = 0.9, 0.999, ε = 1e-8) on ``state`` = (params, m, v); ``t`` counts from 1."""
    params, mean, var = state
    mean, var = 0.9 * mean + 0.1 * grads, 0.999 * var + 0.001 * tf.square(grads)
    update = learning_rate * (mean / (1 - 0.9 ** t)) / (tf.sqrt(var / (1 - 0.999 ** t)) + 1e-8)
    return (params + update if ascend else params - update), mean, var


def total_variation(images):
    """β = 2 total variation per image (Mahendran & Vedaldi): mean over pixels of (Δx)² + (Δy)² → (N,)."""
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    return tf.reduce_mean(tf.square(dy), axis=(1, 2, 3)) + tf.reduce_mean(tf.square(dx), axis=(1, 2, 3))

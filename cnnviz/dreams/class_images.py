"""Class model visualisation: the image the network finds most "class c" (Simonyan et al., 2014).

Gradient ascent on a class LOGIT ``S_c`` (never the softmax probability, which a network can raise by
lowering the other classes) in input space, from noise:

- classic (the paper, with a total-variation prior): pixels x, ``J(x) = S_c(x) − λ₂‖u‖² − λ_TV·TV(u)`` with
  ``u = (x − 127.5) / 127.5`` and ``TV(u) = Σ (Δx u)² + (Δy u)²``; steps ``x ← clip(x + η·g / rms(g), 0, 255)``,
  ``g = ∇J``. The logit climbs fast — partly on high-frequency patterns no photo has;
- robust (notebook 02, Lucid): a decorrelated-colour Fourier image, Adam, and a random rotation, scale and
  shift at every step: only patterns that survive being moved can raise the logit.

:func:`transform_robustness` measures the difference: each image's probability of its own class under
FRESH random transforms it was not optimised for. Several classes run as one batch in one compiled loop
(classes go in as a tensor: no retracing across classes or calls).
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from ..checks import check_count, check_flag, check_number
from ..models import unwrap
from .common import (Robust, grey_noise, random_transforms, adam, cached, check_classes, check_seed, check_size,
                     compile_, gradients, network, per_image_classes, per_image_draws, photos_in, split,
                     total_variation, transformed)

__all__ = ["ClassImages", "Robustness", "class_visualization", "transform_robustness"]


class ClassImages(NamedTuple):
    """What :func:`class_visualization` returns.

    images: (N, H, W, 3) float32 pixels in [0, 255], one per class. logits: (N,) each image's own-class logit
    (untransformed). probability: (N,) its softmax probability. history: (steps, N) the own-class logit at each
    step (robust: of the randomly transformed image that step). classes: the class of each image.
    """

    images: np.ndarray
    logits: np.ndarray
    probability: np.ndarray
    history: np.ndarray
    classes: tuple


class _ClassAscent:
    """Gradient ascent on class logits through one network, compiled once for every class and call."""

    def __init__(self, net):
        self.net = net
        self.classic = compile_(self._classic)
        self.robust = compile_(self._robust, fixed=("size",))

    def score(self, pixels, classes):
        """S_c of image i for class ``classes[i]``: (N, H, W, 3), (N,) → (N,)."""
        return tf.gather(self.net(pixels)[1], classes, batch_dims=1)

    def _classic(self, pixels, classes, steps, step, l2, tv, sub_batch):
        history = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            logits, grads = gradients(self.score, pixels, (classes,), sub_batch)
            with tf.GradientTape() as tape:  # the priors: no network, one cheap tape over the whole batch
                tape.watch(pixels)
                u = (pixels - 127.5) / 127.5
                prior = l2 * tf.reduce_sum(tf.square(u), axis=(1, 2, 3)) + tv * total_variation(u) * tf.cast(
                    tf.reduce_prod(tf.shape(u)[1:]), tf.float32)
            grads -= tape.gradient(prior, pixels)
            grads /= tf.sqrt(tf.reduce_mean(tf.square(grads), axis=(1, 2, 3), keepdims=True)) + 1e-8
            pixels = tf.clip_by_value(pixels + step * grads, 0.0, 255.0)
            history = history.write(i, logits)
        return pixels, history.stack()

    def _robust(self, state, classes, start, steps, learning_rate, jitter, scale, size, sub_batch):
        def objective(spectrum, classes, draws):
            return self.score(transformed(spectrum, scale, size, draws), classes)

        history = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            logits, grads = gradients(objective, state[0], (classes, jitter[:, start + i]), sub_batch)
            state = adam(state, grads, tf.cast(start + i + 1, tf.float32), learning_rate)
            history = history.write(i, logits)
        return state, history.stack()


def _ascent(keras_model, preprocess) -> _ClassAscent:
    net = network(keras_model, preprocess, (), logits=True)
    return cached(keras_model, "dreams.class_visualization", net, lambda: _ClassAscent(net))


def class_visualization(model, classes, size=128, steps: int = 128, robust: bool = True, seed: int = 0,
                        step: float | None = None, l2: float = 3e-4, tv: float = 3e-2,
                        chunk: int = 32) -> ClassImages:
    """The image that maximises each class's logit, all classes as one batch in one compiled loop.

    model: a :class:`~cnnviz.ModelBundle` or a bare Keras model (it is fed the pixels themselves).
    classes: a class index or a list of them (N images). size: int or (H, W) (a fixed-input model: its size).
    robust: False — the classic pixel ascent with L2 (``l2``) and total-variation (``tv``) priors, steps of
    ``step`` pixels RMS (default 1.0) from grey noise 128 ± 10; True — the Fourier image with Adam
    (learning rate ``step``, default 0.05) under random rotation/scale/shift. Deterministic per ``seed``; a
    class's image does not depend on the other classes in the batch (up to float
    rounding). ``chunk``: steps per compiled call.
    Returns :class:`ClassImages`: images (N, H, W, 3) float32 in [0, 255], final logits and probabilities,
    history (steps, N).
    """
    keras_model, preprocess = unwrap(model)
    robust = check_flag("robust", robust)
    steps, chunk, seed = check_count("steps", steps), check_count("chunk", chunk), check_seed(seed)
    step = (0.05 if robust else 1.0) if step is None else check_number("step", step, 0, np.inf, low_open=True)
    l2, tv = check_number("l2", l2, 0), check_number("tv", tv, 0)
    ascent = _ascent(keras_model, preprocess)
    classes = check_classes("classes", classes, ascent.net.num_classes)
    size = check_size(size, ascent.net)
    classes_t, sub_batch = tf.constant(classes, tf.int32), split(len(classes))
    histories = []
    if robust:
        image = Robust(classes, size, steps, seed)
        state = image.state
        for start in range(0, steps, chunk):
            n = min(chunk, steps - start)
            state, history = ascent.robust(state, classes_t, tf.constant(start), tf.constant(n), tf.constant(step),
                                           image.jitter, image.scale, image.size, sub_batch)
            histories.append(history.numpy())
        pixels = image.pixels(state)
    else:
        pixels = tf.constant(np.stack([grey_noise(size, seed, c) for c in classes]))
        for start in range(0, steps, chunk):
            pixels, history = ascent.classic(pixels, classes_t, tf.constant(min(chunk, steps - start)),
                                             tf.constant(step, tf.float32), tf.constant(l2, tf.float32),
                                             tf.constant(tv, tf.float32), sub_batch)
            histories.append(history.numpy())
    pixels = pixels.numpy()
    _, logits, probabilities = ascent.net.run(pixels)
    rows = np.arange(len(classes))
    return ClassImages(pixels, logits[rows, classes], probabilities[rows, classes], np.concatenate(histories), classes)


class Robustness(NamedTuple):
    """What :func:`transform_robustness` returns, per image: ``untransformed`` (N,) the probability of its class
    on the image itself; ``transformed`` (N,) its mean over the random transforms; ``per_transform`` (N, T)."""

    untransformed: np.ndarray
    transformed: np.ndarray
    per_transform: np.ndarray


def transform_robustness(model, images, classes, transforms: int = 16, strength: float = 1.0,
                         seed: int = 0) -> Robustness:
    """Does an image keep its class when moved? Each image's probability of its class under ``transforms``
    fresh random transforms (rotation up to ±10°·s, scale 1 ± 0.1·s, shift up to ±8·s px, s = ``strength``;
    s = 1 is the distribution the robust images were optimised under, with other draws), and untransformed.

    images: (N, H, W, 3) (or one image) as the model takes them (pixels for a bundle). classes: one class per
    image (or one for all). Deterministic per ``seed``. Returns :class:`Robustness` ((N,), (N,), (N, T)).
    """
    keras_model, preprocess, batch, *_ = photos_in(model, images, None)
    transforms, seed = check_count("transforms", transforms), check_seed(seed)
    strength = check_number("strength", strength, 0)
    net = network(keras_model, preprocess, (), logits=True)
    classes = per_image_classes("classes", classes, len(batch), net.num_classes)
    draws = per_image_draws(seed, len(batch), 2, lambda rng: rng.uniform(-1, 1, (transforms, 4)))
    draws = tf.constant(np.transpose(draws, (1, 0, 2)) * strength, tf.float32)  # (T, N, 4)
    size, images = tf.constant(batch.shape[1:3]), tf.constant(batch)
    moved = tf.concat([keras.ops.image.affine_transform(images, random_transforms(d, size), fill_mode="reflect")
                       for d in draws], axis=0)  # (T·N, H, W, 3): transform-major
    probabilities = net.run(tf.concat([images, moved], axis=0))[2]
    picked = probabilities[np.arange(len(probabilities)), np.tile(classes, transforms + 1)]
    moved = picked[len(batch):].reshape(transforms, len(batch)).T  # (N, T)
    return Robustness(picked[:len(batch)], moved.mean(axis=1), moved)

"""Diversity: several different images of one class (or channel) at once (Olah et al., Distill 2017).

One image per class hides that a class has many looks. Optimise n images together, each for the same
objective, minus a penalty on how alike their STYLE is at a layer — the cosine similarity of their Gram
matrices (which channels fire together, wherever they are):

    G_i = A_iᵀ A_i / (h·w)  (c × c, A_i the layer's (h·w, c) activations of image i)
    J = Σ_i objective_i − λ · S,   S = mean over pairs i ≠ j of ⟨G_i, G_j⟩ / (‖G_i‖ ‖G_j‖)

(Lucid's ``objectives.diversity``). The images share notebook 02's robust parameterisation; the penalty
couples them, so they climb as one batch through one tape. ``diversity=0`` gives the same run without the
penalty (same starts, same jitter): the controlled "without". :func:`gram_similarity` measures S of any set.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ..checks import _is_int, check_count, check_number
from ..layers import conv_layers, spatial_layer
from ..models import unwrap
from .common import (Robust, adam, cached, check_classes, check_seed, check_size, compile_, network, photos_in,
                     transformed)

__all__ = ["DiverseImages", "diverse_visualization", "gram_similarity"]


class DiverseImages(NamedTuple):
    """What :func:`diverse_visualization` returns.

    images: (n, H, W, 3) float32 pixels in [0, 255]. objective: (n,) each image's objective (the class logit, or
    the channel's mean activation) untransformed. similarity: S, the mean pairwise Gram cosine similarity at
    ``layer`` of the final images. history: (steps, n) each image's objective at each step (transformed).
    """

    images: np.ndarray
    objective: np.ndarray
    similarity: float
    history: np.ndarray
    layer: str


def _similarity(maps):
    """S of a batch of activations (n, h, w, c): mean pairwise cosine similarity of the Gram matrices."""
    n, c = tf.shape(maps)[0], tf.shape(maps)[-1]
    flat = tf.reshape(maps, (n, -1, c))
    grams = tf.matmul(flat, flat, transpose_a=True) / tf.cast(tf.shape(flat)[1], tf.float32)
    grams = tf.math.l2_normalize(tf.reshape(grams, (n, -1)), axis=1, epsilon=1e-12)
    cosines = tf.matmul(grams, grams, transpose_b=True)  # (n, n), ones on the diagonal
    pairs = tf.cast(n * (n - 1), tf.float32)
    return (tf.reduce_sum(cosines) - tf.linalg.trace(cosines)) / tf.maximum(pairs, 1.0)


class _Diverse:
    """objective (class logit, or a channel's mean) minus λ·S at the Gram layer; the network taps the Gram
    layer first, then the channel's layer when the objective is a channel."""

    def __init__(self, net):
        self.net = net
        self.run = compile_(self._run, fixed=("size",))

    def objectives(self, pixels, target, channel):
        """((n,) objectives, Gram-layer maps); ``channel`` < 0: class ``target``'s logit, else the mean of
        channel ``channel`` of the second tapped layer."""
        activations, logits = self.net(pixels)
        if self.net.with_logits:
            score = tf.gather(logits, tf.fill(tf.shape(pixels)[:1], target), batch_dims=1)
        else:
            score = tf.reduce_mean(activations[-1][..., channel], axis=(1, 2))
        return score, activations[0]

    def _run(self, state, target, channel, weight, steps, learning_rate, jitter, scale, size):
        history = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            with tf.GradientTape() as tape:
                tape.watch(state[0])
                score, maps = self.objectives(transformed(state[0], scale, size, jitter[:, i]), target, channel)
                total = tf.reduce_sum(score) - weight * _similarity(maps)
            state = adam(state, tape.gradient(total, state[0]), tf.cast(i + 1, tf.float32), learning_rate)
            history = history.write(i, score)
        return state, history.stack()


def _middle_layer(keras_model) -> str:
    layers = conv_layers(keras_model)
    if not layers:
        raise ValueError("the model has no spatial (N, h, w, c) layer for the Gram matrices")
    return layers[len(layers) // 2].name


def diverse_visualization(model, class_index=None, n: int = 4, channel=None, layer: str | None = None,
                          diversity: float = 100.0, size=128, steps: int = 128, learning_rate: float = 0.05,
                          seed: int = 0) -> DiverseImages:
    """``n`` images of ONE class (``class_index``: its logit) or ONE channel (``channel=(layer name, index)``:
    its mean activation), made different by a penalty ``diversity`` · S on the similarity of their Gram matrices
    at ``layer`` (None: the spatial layer in the middle of the network, ``cnnviz.conv_layers(model)[len // 2]``).

    Robust parameterisation (Fourier image, decorrelated colour, random rotation/scale/shift, Adam at
    ``learning_rate``), ``steps`` steps, images of ``size``. ``diversity=0``: the same run without the penalty.
    Deterministic per ``seed``. Returns :class:`DiverseImages` (images (n, H, W, 3) float32 in [0, 255]).
    """
    keras_model, preprocess = unwrap(model)
    if (class_index is None) == (channel is None):
        raise ValueError("give class_index (a class's logit) or channel=(layer name, channel index), exactly one")
    n, steps, seed = check_count("n", n, minimum=2), check_count("steps", steps), check_seed(seed)
    diversity = check_number("diversity", diversity, 0)
    learning_rate = check_number("learning_rate", learning_rate, 0, low_open=True)
    layer = _middle_layer(keras_model) if layer is None else spatial_layer(keras_model, layer).name
    if channel is None:
        net = network(keras_model, preprocess, (layer,), logits=True)
        target, index = check_classes("class_index", class_index, net.num_classes), -1
        if len(target) != 1:
            raise ValueError(f"class_index: one class for all {n} images, got {class_index!r}")
        target = target[0]
    else:
        if not (isinstance(channel, (tuple, list)) and len(channel) == 2 and isinstance(channel[0], str)):
            raise ValueError(f"channel must be (layer name, channel index), got {channel!r}")
        channels = spatial_layer(keras_model, channel[0]).output.shape[-1]
        index = channel[1]
        if not _is_int(index) or not 0 <= index < channels:
            raise ValueError(f"channel: the index must be an int in [0, {channels}) (layer {channel[0]!r} has "
                             f"{channels} channels), got {index!r}")
        index = int(index)
        net, target = network(keras_model, preprocess, (layer, channel[0]), logits=False), -1
    size = check_size(size, net)
    image = Robust(list(range(n)), size, steps, seed)
    ascent = cached(keras_model, "dreams.diversity", net, lambda: _Diverse(net))
    state, history = ascent.run(image.state, tf.constant(target), tf.constant(index), tf.constant(diversity, tf.float32),
                                tf.constant(steps), tf.constant(learning_rate, tf.float32), image.jitter, image.scale,
                                image.size)
    pixels = image.pixels(state).numpy()
    activations, logits, _ = net.run(pixels)
    score = logits[:, target] if channel is None else activations[-1][..., index].mean(axis=(1, 2))
    return DiverseImages(pixels, score, float(_similarity(activations[0])), history.numpy(), layer)


def gram_similarity(model, images, layer: str) -> float:
    """S: the mean pairwise cosine similarity of the images' Gram matrices at ``layer`` (1: the same style,
    0: no channel pair fires in both). images: (N ≥ 2, H, W, 3) as the model takes them (pixels for a bundle)."""
    keras_model, preprocess, batch, *_ = photos_in(model, images, None)
    if len(batch) < 2:
        raise ValueError(f"images: Gram similarity compares images, give at least 2, got {len(batch)}")
    net = network(keras_model, preprocess, (spatial_layer(keras_model, layer).name,), logits=False)
    return float(_similarity(net.run(batch)[0][0]))

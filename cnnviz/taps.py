"""One model cut open, compiled once — plumbing under every method, the trust checks and the explorer.

A :class:`Tap` is a Keras model sharing the user's layers (never copying or changing them, see
:func:`cnnviz.tap_model`): images → ([activations of the tapped layers], scores), where the scores are
the LOGITS (the model's final softmax, sigmoid or log-softmax left out; :attr:`Tap.head` says which)
or, for a custom ``score``, the model's own output. :class:`Compiled` holds the compiled functions of
one (tap, score, preprocessing); images go in as the caller gives them (pixels for a
:class:`~cnnviz.ModelBundle`: the preprocessing runs inside the graph):

- :meth:`Compiled.forward` — activations A (N, h, w, c), classes, scores, outputs;
- :meth:`Compiled.layer_gradients` — the same and G = ∂y/∂A (N, k, h, w, c) of k classes per image;
- :meth:`Compiled.input_gradients` — ∂y/∂x (N, H, W, C) for images or any input points;
- :meth:`Compiled.probabilities` — what the model says: softmax (or sigmoid) of the logits.

One trace each for any batch, image size or classes (shapes open, classes a tensor). Both live in the
model's bounded caches (:func:`cnnviz.caching.per_model_cache`): a sweep over every layer, or a new
``score`` lambda per call, does not grow memory.
"""
from __future__ import annotations

import warnings
import weakref
from functools import partial
from typing import Callable

import numpy as np
import tensorflow as tf

from .caching import function_key, per_model_cache
from .checks import caller_stacklevel
from .guided import guided_clone
from .layers import build_tap
from .targets import select_scores

__all__ = ["Compiled", "ProbabilityWarning", "Tap", "compiled", "tap"]

TAPS = 4  # tap models kept per model
COMPILED = 4  # compiled (tap, score, preprocessing) kept per model: ~25 MiB each on Lite0


class ProbabilityWarning(UserWarning):
    """The model's scores look like probabilities (or log-probabilities): cnnviz could not find the
    final softmax to take off, so the maps explain probabilities, not logits."""


class Tap:
    """images (preprocessed) → ([A of each layer in ``layers``], logits or, with ``mode="output"``, the
    model's own output). ``guided``: through the guided-backprop clone (:mod:`cnnviz.guided`)."""

    def __init__(self, keras_model, layers: tuple, output, mode: str, guided: bool):
        network = guided_clone(keras_model) if guided else keras_model
        self.model, self.head = build_tap(network, list(layers), score="logits" if mode == "logits" else "output",
                                          output=output)
        self.layers, self.mode = layers, mode
        self.num_classes = self.model.outputs[-1].shape[-1]
        self.output_shape = tuple(self.model.outputs[-1].shape)


def tap(keras_model, layers=(), output=None, mode: str = "logits", guided: bool = False) -> Tap:
    """The :class:`Tap` of (model, layers, output, mode, guided), from the model's bounded cache."""
    key = (tuple(layers), output, mode, guided)
    return per_model_cache(keras_model, "taps", size=TAPS).lookup(
        key, lambda: Tap(keras_model, tuple(layers), output, mode, guided))


_SIGNATURE = [tf.TensorSpec((None, None, None, None), tf.float32), tf.TensorSpec((None, None), tf.int32)]


class Compiled:
    """The compiled functions of one (tap, score, preprocessing); each is traced on first use only."""

    def __init__(self, tap_: Tap, score: Callable | None, preprocess: Callable):
        self.tap, self.score, self.preprocess = tap_, score, preprocess
        # partial(), not lambdas or bound methods: TF counts traces per code object and would warn of
        # "retracing" once a few layers or models share one; each partial is counted on its own.
        self.forward = tf.function(partial(self._forward), input_signature=_SIGNATURE)
        self._one_class = tf.function(partial(self._layer_gradients, jacobian=False), input_signature=_SIGNATURE)
        self._many_classes = tf.function(partial(self._layer_gradients, jacobian=True), input_signature=_SIGNATURE)
        self._input_gradients = tf.function(partial(self._gradients_of_input), input_signature=_SIGNATURE)
        self._probabilities = tf.function(partial(self._probabilities_of),
                                          input_signature=_SIGNATURE[:1])

    def _run(self, images, classes):
        activations, scores_from = self.tap.model(self.preprocess(images), training=False)
        activations = [tf.cast(a, tf.float32) for a in activations]  # mixed precision: maps in float32
        scores_from = tf.cast(scores_from, tf.float32)
        classes, scores = select_scores(scores_from, scores_from, classes, self.score)
        return activations, classes, scores, scores_from

    def _forward(self, images, classes):
        return self._run(images, classes)

    def _layer_gradients(self, images, classes, jacobian: bool):
        with tf.GradientTape() as tape:
            # Watching the input puts every op on the tape: a layer right after the input has no weights,
            # so its output would not be recorded and its gradient would be None.
            tape.watch(images)
            (activations, *_), classes, scores, outputs = self._run(images, classes)
            total = tf.reduce_sum(scores)  # images are independent: ∂(Σ_n y_n)/∂A_n = ∂y_n/∂A_n
        if jacobian:  # k classes from one forward pass: k backward passes, vectorised
            gradients = tape.batch_jacobian(scores, activations)  # (N, k, h, w, c)
        else:
            gradients = tape.gradient(total, activations)[:, None]  # (N, 1, h, w, c)
        return activations, gradients, classes, scores, outputs

    def _gradients_of_input(self, images, classes):
        with tf.GradientTape() as tape:
            tape.watch(images)
            _, classes, scores, outputs = self._run(images, classes)
            total = tf.reduce_sum(scores)
        return tape.gradient(total, images), classes, scores, outputs

    def _probabilities_of(self, images):
        _, logits = self.tap.model(self.preprocess(images), training=False)
        logits = tf.cast(logits, tf.float32)
        if self.tap.head == "sigmoid":
            return tf.sigmoid(logits)
        if self.tap.head is None:  # no squash found: the scores may already be probabilities
            is_distribution = tf.reduce_all(logits >= 0) & tf.reduce_all(
                tf.abs(tf.reduce_sum(logits, axis=-1) - 1) < 1e-3)
            return tf.cond(is_distribution, lambda: logits, lambda: tf.nn.softmax(logits))
        return tf.nn.softmax(logits)

    # ---- numpy in, tensors out -------------------------------------------------------------------
    def layer_gradients(self, images, classes):
        """(A (N, h, w, c), G (N, k, h, w, c), classes (N, k), scores (N, k), outputs (N, C)) as tensors."""
        images, classes = _tensors(images, classes)
        return (self._one_class if classes.shape[1] == 1 else self._many_classes)(images, classes)

    def input_gradients(self, images, classes):
        """(∂y/∂x (N, H, W, C), classes (N, 1), scores (N, 1), outputs (N, C)) for classes (N, 1)."""
        return self._input_gradients(*_tensors(images, classes))

    def activations(self, images, classes):
        """(A (N, h, w, c), classes (N, k), scores (N, k), outputs (N, C)): a forward pass only."""
        (activations, *_), classes, scores, outputs = self.forward(*_tensors(images, classes))
        return activations, classes, scores, outputs

    def scores(self, images, classes):
        """(classes (N, k), scores (N, k), outputs (N, C)): a forward pass, no activations kept."""
        _, classes, scores, outputs = self.forward(*_tensors(images, classes))
        return classes, scores, outputs

    def probabilities(self, images) -> tf.Tensor:
        """(N, C): softmax of the logits (sigmoid for a sigmoid head; the scores themselves when the model
        ends in a softmax cnnviz could not take off)."""
        return self._probabilities(tf.convert_to_tensor(images, tf.float32))


def _tensors(images, classes):
    return tf.convert_to_tensor(images, tf.float32), tf.convert_to_tensor(classes, tf.int32)


def compiled(keras_model, preprocess, layers=(), score=None, output=None, guided: bool = False) -> Compiled:
    """The :class:`Compiled` of (model, layers, score, output, guided, preprocess), from the bounded cache."""
    mode = "logits" if score is None else "output"
    key = (tuple(layers), output, mode, guided, function_key(score), function_key(preprocess))
    return per_model_cache(keras_model, "compiled", size=COMPILED).lookup(
        key, lambda: Compiled(tap(keras_model, layers, output, mode, guided), score, preprocess))


_WARNED = weakref.WeakSet()  # models already warned about, once each


def warn_if_probabilities(keras_model, head, logits) -> None:
    """Once per model: warn when no final squash was found and the "logits" (N, C) look like probabilities
    (≥ 0, rows summing to 1) or log-probabilities (≤ 0, rows' log-sum-exp 0)."""
    logits = np.asarray(logits, dtype="float64")
    if head is not None or logits.shape[-1] < 2 or keras_model in _WARNED:
        return
    probabilities = logits.min() >= 0 and np.allclose(logits.sum(axis=-1), 1, atol=1e-3)
    log_probabilities = logits.max() <= 0 and np.allclose(np.log(np.exp(logits).sum(axis=-1)), 0, atol=1e-3)
    if probabilities or log_probabilities:
        _WARNED.add(keras_model)
        kind = "probabilities summing to 1" if probabilities else "log-probabilities"
        warnings.warn(f"model {keras_model.name!r} seems to end in a softmax cnnviz cannot take off (its scores are "
                      f"{kind}), so these maps explain {kind.split()[0]}, not logits. End the model with a "
                      "Softmax layer or Dense(..., activation='softmax') to explain logits.",
                      ProbabilityWarning, stacklevel=caller_stacklevel())

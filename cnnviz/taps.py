"""One model cut open, compiled once — plumbing under every method, the trust checks and the explorer.

A :class:`Tap` is a Keras model sharing the user's layers (never copying or changing them, see
:func:`cnnviz.tap_model`): images → ([activations of the tapped layers], scores), where the scores are
the LOGITS (the model's final softmax, sigmoid or log-softmax left out; :attr:`Tap.head` says which)
or, for a custom ``score``, the model's own output. :class:`Compiled` holds the compiled functions of
one (tap, preprocessing) — a custom score runs eagerly on the model's output and its gradient is pulled
back through them, so any number of scores share one graph; images go in as the caller gives them (pixels for a
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
from .heads import probabilities_from
from .layers import build_tap
from .targets import select_scores

__all__ = ["Bound", "Compiled", "ProbabilityWarning", "Tap", "compiled", "tap"]

TAPS = 4  # tap models kept per model
COMPILED = 4  # compiled (tap, preprocessing) kept per model: ~25 MiB each on Lite0
CHUNK = 16  # images per compiled call: a larger batch runs in pieces (Lite0 at 224²: ~40 MB per image)


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


_IMAGES, _CLASSES = tf.TensorSpec((None, None, None, None), tf.float32), tf.TensorSpec((None, None), tf.int32)
_UPSTREAM = tf.TensorSpec((None, None, None), tf.float32)  # (N, k, C): ∂score_k/∂output, or empty for logits


class Compiled:
    """The compiled functions of one (tap, preprocessing); each is traced on first use only.

    A custom ``score`` is never traced into them: it runs eagerly on the model's output (a cheap function
    of an (N, C) tensor), and its gradient there, U = ∂score/∂output (N, k, C), is pulled back through the
    compiled network as the gradient of the linear score Σ_c output_c U_kc (the chain rule: the same
    gradient at this point). So any number of score functions share one compiled graph — a new lambda per
    call costs no compilation and no memory — for one extra forward pass. Use :meth:`bind`.
    """

    def __init__(self, tap_: Tap, preprocess: Callable):
        self.tap, self.preprocess = tap_, preprocess
        # partial(), not lambdas or bound methods: TF counts traces per code object and would warn of
        # "retracing" once a few layers or models share one; each partial is counted on its own.
        self._forward = tf.function(partial(self._run), input_signature=[_IMAGES, _CLASSES])
        signature = [_IMAGES, _CLASSES, _UPSTREAM]
        self._one_class = tf.function(partial(self._layer_gradients, jacobian=False), input_signature=signature)
        self._many_classes = tf.function(partial(self._layer_gradients, jacobian=True), input_signature=signature)
        self._input_gradients = tf.function(partial(self._gradients_of_input), input_signature=signature)
        self._probabilities = tf.function(partial(self._probabilities_of), input_signature=[_IMAGES])

    def _network(self, images, cast: bool = True):
        """([activations], outputs float32); ``cast=False`` keeps the activations in the model's own dtype
        (mixed precision: a gradient must be taken with respect to the tensors the model used)."""
        activations, outputs = self.tap.model(self.preprocess(images), training=False)
        return [tf.cast(a, tf.float32) for a in activations] if cast else activations, tf.cast(outputs, tf.float32)

    def _scores(self, outputs, classes, upstream):
        """(classes, scores (N, k)): the logits of ``classes`` (-r → r-th best), or the linear score
        Σ_c output_c U_kc whose gradient is the custom score's."""
        if self.tap.mode == "logits":
            return select_scores(outputs, classes)
        return classes, tf.einsum("nc,nkc->nk", outputs, upstream)

    def _run(self, images, classes):
        activations, outputs = self._network(images)
        if self.tap.mode == "logits":
            classes, scores = select_scores(outputs, classes)
        else:  # the custom score is computed eagerly by Bound
            scores = tf.zeros(tf.shape(classes), tf.float32)
        return activations, classes, scores, outputs

    def _layer_gradients(self, images, classes, upstream, jacobian: bool):
        with tf.GradientTape() as tape:
            # Watching the input puts every op on the tape: a layer right after the input has no weights,
            # so its output would not be recorded and its gradient would be None.
            tape.watch(images)
            (activations, *_), outputs = self._network(images, cast=False)
            classes, scores = self._scores(outputs, classes, upstream)
            total = tf.reduce_sum(scores)  # images are independent: ∂(Σ_n y_n)/∂A_n = ∂y_n/∂A_n
        if jacobian:  # k classes from one forward pass: k backward passes, vectorised
            gradients = tape.batch_jacobian(scores, activations)  # (N, k, h, w, c)
        else:
            gradients = tape.gradient(total, activations)[:, None]  # (N, 1, h, w, c)
        return tf.cast(activations, tf.float32), tf.cast(gradients, tf.float32), classes, scores, outputs

    def _gradients_of_input(self, images, classes, upstream):
        with tf.GradientTape() as tape:
            tape.watch(images)
            _, outputs = self._network(images)
            classes, scores = self._scores(outputs, classes, upstream)
            total = tf.reduce_sum(scores)
        return tape.gradient(total, images), classes, scores, outputs

    def _probabilities_of(self, images):
        _, logits = self._network(images)
        return probabilities_from(logits, self.tap.head)

    def bind(self, score: Callable | None) -> "Bound":
        """These functions with ``score`` (None for the logits of the classes asked)."""
        return Bound(self, score)


_NO_UPSTREAM = tf.zeros((0, 0, 0), tf.float32)


class Bound:
    """A :class:`Compiled` with the call's score: numpy or tensors in, tensors out."""

    def __init__(self, functions: Compiled, score: Callable | None):
        self.functions, self.score, self.tap = functions, score, functions.tap

    def _custom(self, outputs, gradient: bool):
        """The custom score of ``outputs`` (N, C), eagerly: (scores (N, k), U = ∂scores/∂outputs (N, k, C))."""
        outputs = tf.convert_to_tensor(outputs)
        with tf.GradientTape() as tape:
            tape.watch(outputs)
            scores = tf.cast(tf.convert_to_tensor(self.score(outputs)), tf.float32)
            scores = tf.reshape(scores, (tf.shape(outputs)[0], -1))
            total = tf.reduce_sum(scores)  # images are independent: ∂Σ_n s_n/∂out_n = ∂s_n/∂out_n
        if not gradient:
            return scores, None
        upstream = tape.gradient(total, outputs) if scores.shape[1] == 1 else tape.batch_jacobian(scores, outputs)
        if upstream is not None and scores.shape[1] == 1:
            upstream = upstream[:, None]
        if upstream is None:
            raise ValueError("the score has no gradient with respect to the model's output (an argmax, a "
                             "comparison or a cast to int?): give a differentiable score, e.g. output[:, 3]")
        return scores, tf.cast(upstream, tf.float32)

    def _with_gradients(self, function, images, classes):
        return _in_chunks(partial(self._gradients_of_chunk, function), images, classes)

    def _gradients_of_chunk(self, function, images, classes):
        images, classes = _tensors(images, classes)
        if self.score is None:
            return function(images, classes, _NO_UPSTREAM)
        _, _, _, outputs = self.functions._forward(images, classes)
        scores, upstream = self._custom(outputs, gradient=True)
        *found, _, outputs = function(images, classes, upstream)  # its scores are the linearisation's
        return (*found, scores, outputs)

    def layer_gradients(self, images, classes):
        """(A (N, h, w, c), G (N, k, h, w, c), classes (N, k), scores (N, k), outputs (N, C))."""
        many = np.shape(classes)[1] > 1
        return self._with_gradients(self.functions._many_classes if many else self.functions._one_class, images,
                                    classes)

    def input_gradients(self, images, classes):
        """(∂y/∂x (N, H, W, C), classes (N, 1), scores (N, 1), outputs (N, C)) for classes (N, 1)."""
        return self._with_gradients(self.functions._input_gradients, images, classes)

    def activations(self, images, classes):
        """(A (N, h, w, c), classes (N, k), scores (N, k), outputs (N, C)): a forward pass only."""
        layers, classes, scores, outputs = _in_chunks(self.functions._forward, *_tensors(images, classes))
        activations = layers[0] if layers else None  # a tap of no layer (the scores alone)
        if self.score is not None:
            scores = self._custom(outputs, gradient=False)[0]
        return activations, classes, scores, outputs

    def scores(self, images, classes):
        """(classes (N, k), scores (N, k), outputs (N, C)): a forward pass, no activations kept."""
        _, classes, scores, outputs = self.activations(images, classes)
        return classes, scores, outputs

    def probabilities(self, images) -> tf.Tensor:
        """(N, C): softmax of the logits (sigmoid for a sigmoid head; the scores themselves when the model
        ends in a softmax cnnviz could not take off)."""
        return self.functions._probabilities(tf.convert_to_tensor(images, tf.float32))


def _tensors(images, classes):
    return tf.convert_to_tensor(images, tf.float32), tf.convert_to_tensor(classes, tf.int32)


def _in_chunks(function, images, classes):
    """``function(images, classes)`` on CHUNK images at a time, the results joined along the batch axis
    (every result has the images first): memory stays bounded for any number of images."""
    if len(images) <= CHUNK:
        return function(images, classes)
    parts = [function(images[i:i + CHUNK], classes[i:i + CHUNK]) for i in range(0, len(images), CHUNK)]
    return tf.nest.map_structure(lambda *pieces: tf.concat(pieces, axis=0), *parts)


def compiled(keras_model, preprocess, layers=(), score=None, output=None, guided: bool = False) -> Bound:
    """The compiled functions of (model, layers, output, guided, preprocess) from the bounded cache, bound
    to ``score``. A custom score runs eagerly inside them, so it is not part of the cache key."""
    mode = "logits" if score is None else "output"
    key = (tuple(layers), output, mode, guided, function_key(preprocess))
    functions = per_model_cache(keras_model, "compiled", size=COMPILED).lookup(
        key, lambda: Compiled(tap(keras_model, layers, output, mode, guided), preprocess))
    return functions.bind(score)


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

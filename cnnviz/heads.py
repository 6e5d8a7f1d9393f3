"""The model's head — plumbing: which final softmax, log-softmax or sigmoid to take off to reach the logits.

Heatmaps explain the score BEFORE the final squashing function (the logits): a probability couples the
classes and saturates (notebook 03). It may be written as a Softmax layer, an Activation or Dense layer's
activation, a Lambda wrapping the function itself, and may be followed by layers that only reshape
(Reshape, Flatten, Identity, Dropout). :func:`final_layers` finds where it would sit, :func:`squash_kind`
says what it is, :class:`PreSoftmax` is a Dense layer without its activation. Nothing here changes a model.
"""
from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["PreSoftmax", "final_layers", "probabilities_from", "squash_kind", "squashes_output"]


# The final squashing functions whose input (the logits) the methods explain instead: softmax in every
# spelling (keras.activations / keras.ops are named "softmax", tf.nn.softmax "softmax_v2"), log-softmax and
# sigmoid. name → the kind of head (how probabilities follow from the logits).
_SQUASHES = {"softmax": "softmax", "softmax_v2": "softmax", "log_softmax": "log_softmax",
             "log_softmax_v2": "log_softmax", "sigmoid": "sigmoid"}
# Layers that may follow the squash without changing what it means (Softmax → Reshape → output).
_PASS_THROUGH = (keras.layers.Identity, keras.layers.Reshape, keras.layers.Flatten, keras.layers.Dropout,
                 keras.layers.ActivityRegularization)


def _squash_name(function) -> str | None:
    return _SQUASHES.get(getattr(function, "__name__", ""))


def squash_kind(layer) -> str | None:
    """"softmax", "log_softmax" or "sigmoid" when ``layer`` ends in one cnnviz can take off — a Softmax
    layer, an Activation or Dense layer with that activation, or a Lambda wrapping the function itself
    (``Lambda(tf.nn.softmax)``) —, else None."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    kind = _squash_name(getattr(layer, "activation", None))
    if kind is None and isinstance(layer, keras.layers.Lambda):
        kind = _squash_name(layer.function)
    return kind


def squashes_output(layer) -> bool:
    """Whether ``layer`` ends in a softmax, log-softmax or sigmoid cnnviz can take off (see squash_kind)."""
    return squash_kind(layer) is not None


def _passes_through(layer) -> bool:
    return isinstance(layer, _PASS_THROUGH) or (isinstance(layer, keras.layers.Activation)
                                                 and getattr(layer.activation, "__name__", "") == "linear")


class PreSoftmax(keras.layers.Layer):
    """A Dense layer's linear part, ``x @ kernel + bias``, sharing the Dense layer's variables."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x):
        y = keras.ops.matmul(x, self.dense.kernel)
        return y + self.dense.bias if self.dense.use_bias else y


def output_layers(model) -> list:
    """The layers whose outputs are the model's outputs (Keras names a Functional model's outputs after
    them), or its last layer."""
    if isinstance(model, keras.Sequential):
        return model.layers[-1:]
    found = []
    for name in getattr(model, "output_names", None) or ():
        try:
            found.append(model.get_layer(name))
        except ValueError:  # an output made by an op, not a layer
            pass
    return found or model.layers[-1:]


def final_layers(model) -> list:
    """The output layers and, walking back from each through pass-through layers (Reshape, Flatten,
    Identity, Dropout), the first layer that does something: where a final softmax would be. The last
    element is that layer for the (first) output."""
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
        chain = [layers.pop()]
        while _passes_through(chain[-1]) and layers:
            chain.append(layers.pop())
        return chain
    try:
        producer = {id(layer.output): layer for layer in model.layers}
    except (AttributeError, ValueError):  # a layer called several times has no single output
        producer = {}
    chains = []
    for layer in output_layers(model):
        chain = [layer]
        while _passes_through(chain[-1]) and id(getattr(chain[-1], "input", None)) in producer:
            chain.append(producer[id(chain[-1].input)])
        chains.append(chain)
    first = chains[0]
    return [layer for chain in chains[1:] for layer in chain] + first


def probabilities_from(logits, head: str | None):
    """What the model says, in-graph: (N, C) logits → probabilities for the head taken off (sigmoid for a
    sigmoid head, else softmax); with no head found (``None``) the scores themselves when they already are
    a distribution (a softmax cnnviz could not take off), else their softmax."""
    if head == "sigmoid":
        return tf.sigmoid(logits)
    if head is None:
        is_distribution = tf.reduce_all(logits >= 0) & tf.reduce_all(
            tf.abs(tf.reduce_sum(logits, axis=-1) - 1) < 1e-3)
        return tf.cond(is_distribution, lambda: logits, lambda: tf.nn.softmax(logits))
    return tf.nn.softmax(logits)

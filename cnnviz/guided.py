"""Guided backpropagation's network — plumbing: the same model with its ReLU gradients gated.

:func:`guided_clone` returns a model that computes the same outputs with the same layers (shared, not
copied) but whose ReLU and ReLU6 layers pass back only positive gradients where they were active
(Springenberg et al. 2015): R_in = R_out · [x > 0] · [R_out > 0] (ReLU6: · [x < 6]). The user's model
and its own gradients are unchanged. :mod:`cnnviz.taps` builds it once per model.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from .layers import _input_tensor, leaves_layers_unchanged

__all__ = ["guided_clone"]


@tf.custom_gradient
def _pass_positive_gradients(x):
    """Identity forward; backward lets only positive gradients through (guided backprop's gate)."""
    return tf.identity(x), tf.nn.relu


class _GuidedGate(keras.layers.Layer):
    """``layer``'s output, unchanged, with the backward gradient gated: ∂ ↦ max(∂, 0). Put after a ReLU
    (or ReLU6), whose own backward already keeps only where its input was active."""

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_guided", **kwargs)
        self.layer = layer  # shared, not copied: same weights

    def call(self, *args, **kwargs):
        return _pass_positive_gradients(self.layer(*args, **kwargs))


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    return getattr(getattr(layer, "activation", None), "__name__", "") in ("relu", "relu6")


def _replay_guided(model, inputs):
    """``model`` called on symbolic ``inputs`` with every ReLU-type layer gated; nested models too."""
    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Model):
            return _replay_guided(layer, args[0])
        return _GuidedGate(layer)(*args, **kwargs) if _is_relu(layer) else layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        return x
    if isinstance(model.input, (list, tuple)):
        inputs = [inputs]
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                                     call_function=call)
    return clone.outputs[0] if len(clone.outputs) == 1 else clone.outputs


@leaves_layers_unchanged
def guided_clone(keras_model) -> keras.Model:
    """A model computing the same outputs as ``keras_model`` (same layers, same weights) whose ReLU and
    ReLU6 gradients are guided. ``keras_model`` itself is not changed."""
    inputs = _input_tensor(keras_model)  # a clear error for a Sequential never built
    return keras.Model(inputs, _replay_guided(keras_model, inputs), name=f"{keras_model.name}_guided")

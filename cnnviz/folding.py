"""Folding inference BatchNormalization into the convolution before it — plumbing for speed.

Gradient ascent (notebook 02) runs a truncated network forward and backward hundreds of times. In
inference a BatchNormalization is an affine map per channel, ``(x − mean)·s + beta`` with
``s = gamma / sqrt(var + eps)``, so it can be folded into the linear convolution before it:
``conv(x, kernel·s) + (bias − mean)·s + beta``. That removes two memory-bound passes forward and one
backward per BatchNormalization; the outputs are equal to float rounding.
"""
from __future__ import annotations

import collections

import keras
import tensorflow as tf

from .layers import as_keras_model, leaves_layers_unchanged

__all__ = ["fold_batchnorm"]


class _FoldedConv(keras.layers.Layer):
    """A linear Conv2D / DepthwiseConv2D and the inference BatchNormalization after it, as one conv:
    ``conv(x, kernel·s) + (bias − mean)·s + beta`` with ``s = gamma / sqrt(var + eps)``. The weights
    are folded from the two layers' own variables at every call, so they stay shared and current."""

    def __init__(self, conv, batchnorm, **kwargs):
        super().__init__(**kwargs)
        self.conv, self.batchnorm = conv, batchnorm

    def call(self, x):
        conv, bn = self.conv, self.batchnorm
        scale = keras.ops.rsqrt(bn.moving_variance + bn.epsilon) * (bn.gamma if bn.scale else 1.0)
        shift = ((conv.bias if conv.use_bias else 0.0) - bn.moving_mean) * scale + (bn.beta if bn.center else 0.0)
        options = dict(strides=conv.strides, padding=conv.padding, data_format=conv.data_format,
                       dilation_rate=conv.dilation_rate)
        if isinstance(conv, keras.layers.DepthwiseConv2D):  # kernel (h, w, in, multiplier), out = in·multiplier
            kernel = conv.kernel * keras.ops.reshape(scale, conv.kernel.shape[2:])
            return tf.nn.bias_add(keras.ops.depthwise_conv(x, kernel, **options), shift)
        return tf.nn.bias_add(keras.ops.conv(x, conv.kernel * scale, **options), shift)


def _foldable(conv, batchnorm) -> bool:
    return (type(conv) in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
            and getattr(conv.activation, "__name__", "") == "linear" and conv.data_format == "channels_last"
            and getattr(conv, "groups", 1) == 1 and batchnorm.axis in (-1, 3))


def _pairs(keras_model) -> dict:
    """{conv: its BatchNormalization, that BatchNormalization: None} for each conv whose only use is
    a foldable BatchNormalization."""
    try:
        producer = {id(layer.output): layer for layer in keras_model.layers}
        consumed = [t for layer in keras_model.layers if not isinstance(layer, keras.layers.InputLayer)
                    for t in keras.tree.flatten(layer.input)] + keras.tree.flatten(keras_model.outputs)
    except (AttributeError, ValueError):  # e.g. a layer that was never called
        return {}
    uses = collections.Counter(id(tensor) for tensor in consumed)
    pairs = {}
    for bn in keras_model.layers:
        conv = producer.get(id(bn.input)) if isinstance(bn, keras.layers.BatchNormalization) else None
        if conv is not None and uses[id(conv.output)] == 1 and _foldable(conv, bn):
            pairs[conv], pairs[bn] = bn, None
    return pairs


@leaves_layers_unchanged
def fold_batchnorm(model, input_tensors=None) -> keras.Model:
    """The same functional model with each inference-mode BatchNormalization folded into the linear
    convolution before it: about a quarter less work forward and backward (gradient ascent, notebook
    02). Outputs are equal to float rounding (~1e-6 relative); a folded BatchNormalization's output is
    its conv's. Layers of nested models, and layers called more than once, are left as they are.
    ``input_tensors``: a new input, as in ``keras.models.clone_model`` (e.g. one with free H and W).
    """
    keras_model = as_keras_model(model)
    pairs, calls = _pairs(keras_model), collections.Counter()
    fused = {conv: _FoldedConv(conv, bn, name=f"{conv.name}_folded") for conv, bn in pairs.items() if bn}

    def call(layer, *args, **kwargs):
        calls[layer] += 1
        if layer not in pairs:
            return layer(*args, **kwargs)
        if pairs[layer] is None:  # the BatchNormalization: already inside its conv
            return args[0]
        return fused[layer](args[0])

    while True:
        folded = keras.models.clone_model(keras_model, input_tensors=input_tensors,
                                          clone_function=lambda layer: layer, call_function=call)
        shared = [conv for conv, bn in pairs.items() if bn is not None and max(calls[conv], calls[bn]) > 1]
        if not shared:
            return folded
        for conv in shared:  # a shared layer's output is the first call's: fold nothing around it
            del pairs[pairs.pop(conv)]
        calls.clear()

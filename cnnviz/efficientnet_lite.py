"""EfficientNet-Lite0 as a Keras 3 functional model with readable, keras.applications-style names.

Lite0 is EfficientNet-B0 made friendly to mobile hardware: ReLU6 instead of swish and no
squeeze-excite. Names follow keras.applications' EfficientNet (``block2a_expand_conv``,
``top_activation``…), so code written for the Keras models reads the same here.
The spatial input is (None, None, 3): any size works; 224×224 is the size it was trained at.
"""
from __future__ import annotations

import string

import keras
from keras import layers

INPUT_SIZE = (224, 224)
BN_EPSILON = 1e-3  # measured: 1e-5 is off by up to 1.7 logits against the PyTorch reference
# (repeats, kernel, stride, expand ratio, filters in, filters out) per stage, as in EfficientNet-B0
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


def block_names() -> list[str]:
    """Keras-style block prefixes in order: ['block1a', 'block2a', 'block2b', …] (16 blocks)."""
    return [f"block{s + 1}{string.ascii_lowercase[r]}" for s, stage in enumerate(STAGES) for r in range(stage[0])]


def _conv_bn_relu6(x, filters, kernel, stride, name):
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_activation")(x)


def _mbconv(x, kernel, stride, expand, filters_in, filters_out, name):
    """Inverted residual: 1×1 expand → k×k depthwise → 1×1 project (+ skip when shapes allow)."""
    inputs = x
    if expand != 1:
        x = _conv_bn_relu6(x, filters_in * expand, 1, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_project_bn")(x)
    if stride == 1 and filters_in == filters_out:
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build_efficientnet_lite0(classes: int = 1000) -> keras.Model:
    """Untrained Lite0: (N, H, W, 3) preprocessed images → (N, classes) softmax probabilities.

    The classifier is a linear ``logits`` Dense layer followed by a separate ``predictions``
    softmax, so Grad-CAM can read the logits without touching the model.
    """
    inputs = keras.Input((None, None, 3), name="input_image")
    x = _conv_bn_relu6(inputs, 32, 3, 2, "stem")
    names = iter(block_names())
    for repeats, kernel, stride, expand, filters_in, filters_out in STAGES:
        for r in range(repeats):
            x = _mbconv(x, kernel, stride if r == 0 else 1, expand,
                        filters_in if r == 0 else filters_out, filters_out, next(names))
    x = _conv_bn_relu6(x, 1280, 1, 1, "top")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.2, name="top_dropout")(x)
    x = layers.Dense(classes, name="logits")(x)
    outputs = layers.Softmax(name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")

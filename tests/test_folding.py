"""fold_batchnorm: the same maps and gradients with each BatchNormalization folded into its conv."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import cnnviz
from cnnviz.folding import fold_batchnorm
from cnnviz.layers import tap_model


def batchnorms(model):
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def randomise_statistics(model, seed=0):
    """Non-trivial gamma, beta, mean and variance, so a wrong fold shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for weight in layer.weights:
                positive = weight.path.endswith(("gamma", "moving_variance"))
                weight.assign(rng.uniform(0.5, 2.0, weight.shape) if positive else rng.normal(0, 0.5, weight.shape))


def small_model():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=True, name="conv")(inputs)
    x = keras.layers.BatchNormalization(center=False, name="conv_bn")(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = keras.layers.BatchNormalization(scale=False, name="dw_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.Conv2D(4, 1, name="pointwise")(x)
    pointwise_bn = keras.layers.BatchNormalization(name="pointwise_bn")(x)
    relu = keras.layers.Conv2D(4, 3, activation="relu", padding="same", name="relu_conv")(pointwise_bn)
    relu_bn = keras.layers.BatchNormalization(name="relu_conv_bn")(relu)  # after an activation: not linear
    return keras.Model(inputs, [relu_bn, x])  # the pointwise conv's output is also a model output


def test_folds_exactly_the_foldable_pairs_and_keeps_the_outputs():
    model = small_model()
    randomise_statistics(model)
    folded = fold_batchnorm(model)
    assert batchnorms(folded) == ["pointwise_bn", "relu_conv_bn"]  # used elsewhere / after an activation
    x = np.random.default_rng(1).normal(0, 1, (2, 17, 20, 3)).astype("float32")
    for want, got in zip(model(x), folded(x)):
        assert want.shape == got.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_folded_weights_follow_the_original_variables():
    model = small_model()
    folded = fold_batchnorm(model)
    bn = model.get_layer("dw_bn")
    bn.moving_mean.assign(bn.moving_mean + 3.0)  # after folding: the fold reads the variables at each call
    x = np.ones((1, 8, 8, 3), "float32")
    np.testing.assert_allclose(folded(x)[1], model(x)[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", ["stem_bn", "block2b_project_bn", "block4a_expand_bn", "top_bn"])
def test_lite0_maps_and_input_gradients_are_unchanged(bundle, layer):
    tap = tap_model(bundle.model, [layer], score=None)
    folded = fold_batchnorm(tap)
    assert batchnorms(folded) == [] and batchnorms(tap)  # every BatchNormalization follows a linear conv

    def map_and_gradient(model, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            maps = keras.tree.flatten(model(x))[0]
            objective = tf.reduce_mean(maps[..., 3])
        return maps, tape.gradient(objective, x)

    x = bundle.preprocess(tf.random.stateless_uniform((2, 96, 128, 3), (0, 1), 0, 255))
    (want, want_gradient), (got, got_gradient) = map_and_gradient(tap, x), map_and_gradient(folded, x)
    scale = float(tf.reduce_max(tf.abs(want)))
    np.testing.assert_allclose(got, want, atol=1e-4 * scale)
    np.testing.assert_allclose(got_gradient, want_gradient, atol=1e-4 * float(tf.reduce_max(tf.abs(want_gradient))))


def test_a_shared_conv_is_not_folded():
    inputs = keras.Input((8, 8, 3))
    conv, bn = keras.layers.Conv2D(3, 3, padding="same", name="shared"), keras.layers.BatchNormalization(name="bn")
    first = bn(conv(inputs))
    model = keras.Model(inputs, [first, conv(first)])  # the conv is called twice, once without the BN
    randomise_statistics(model)
    folded = fold_batchnorm(model)
    assert batchnorms(folded) == ["bn"]
    x = np.random.default_rng(2).normal(0, 1, (1, 8, 8, 3)).astype("float32")
    for want, got in zip(model(x), folded(x)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, kept", [("resnet50", 0), ("xception", 34)])  # Xception's SeparableConv2D: kept
def test_seed_architectures_fold_to_the_same_maps(name, kept):
    seed = cnnviz.load_model(name, weights=None)
    randomise_statistics(seed.model)
    tap = tap_model(seed.model, [seed.last_conv_layer], score=None)
    folded = fold_batchnorm(tap)
    assert len(batchnorms(folded)) == kept < len(batchnorms(tap))
    x = seed.preprocess(tf.random.stateless_uniform((1, *seed.input_size, 3), (0, 2), 0, 255))
    want, got = tap(x)[0][0], folded(x)[0][0]
    np.testing.assert_allclose(got, want, atol=1e-4 * float(tf.reduce_max(tf.abs(want))))

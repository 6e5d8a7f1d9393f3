"""Intermediate activations: the grid, dead channels, one forward pass, nested models, plots."""
import warnings

import keras
import matplotlib
import numpy as np
import pytest
import tensorflow as tf

import cnnviz
from cnnviz.activations import DEAD_COLOUR, GAP_COLOUR

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def classic_tile(channel):
    """Deep Learning with Python's post-processing, written out for one (h, w) channel."""
    x = channel.astype("float64") - channel.mean()
    x /= channel.std()
    return np.clip(x * 64 + 128, 0, 255).astype("uint8")


def tiles(grid, h, w, cols, rows, separator):
    return [grid[r * (h + separator):r * (h + separator) + h, c * (w + separator):c * (w + separator) + w]
            for r in range(rows) for c in range(cols)]


@pytest.mark.parametrize("h, w, c, per_row, separator, expected", [
    (5, 7, 32, 16, 0, (10, 112)),   # divisible
    (5, 7, 33, 16, 0, (15, 112)),   # one channel over: a third row, not dropped
    (4, 4, 17, 16, 1, (9, 79)),     # separators between tiles only
    (3, 6, 10, 16, 2, (3, 78)),     # fewer channels than a row
    (6, 6, 1, 16, 0, (6, 6)),
    (2, 3, 20, 6, 1, (11, 23)),
])
def test_grid_shape(h, w, c, per_row, separator, expected):
    rng = np.random.default_rng(0)
    grid = cnnviz.activation_grid(rng.normal(size=(1, h, w, c)), per_row, separator)
    assert grid.shape == expected
    assert grid.dtype == np.uint8


def test_every_channel_appears_exactly_once_in_order():
    h, w, c, per_row, separator = 6, 5, 21, 8, 1
    activation = np.random.default_rng(1).normal(size=(1, h, w, c)).astype("float32")
    grid = cnnviz.activation_grid(activation, per_row, separator, fill=255)
    rows = 3
    expected = [classic_tile(activation[0, :, :, k]) for k in range(c)]
    slots = tiles(grid, h, w, per_row, rows, separator)
    found = [[k for k in range(c) if np.abs(slot.astype(int) - expected[k]).max() <= 1] for slot in slots]
    assert found[:c] == [[k] for k in range(c)]  # slot k holds channel k and only channel k
    assert all(np.all(slot == 255) for slot in slots[c:])  # the rest of the last row is empty
    separators = grid[h::h + separator, :]
    assert np.all(separators == 255)


def test_dead_and_constant_channels_give_flat_grey_not_nan():
    activation = np.random.default_rng(2).normal(size=(1, 8, 8, 4)).astype("float32")
    activation[..., 1] = 0.0  # dead after ReLU
    activation[..., 3] = 6.0  # saturated ReLU6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in divide"
        grid = cnnviz.activation_grid(activation, images_per_row=4)
    flat = tiles(grid, 8, 8, 4, 1, 0)
    assert np.all(flat[1] == 128) and np.all(flat[3] == 128)
    assert flat[0].std() > 10  # a live channel keeps its contrast


def test_grid_values_are_clipped_uint8():
    activation = np.zeros((1, 10, 10, 2), "float32")
    activation[0, 0, 0, 0] = 1000.0  # one outlier: mean + 9.9 std, beyond the 255 clip
    activation[..., 1] = np.linspace(-1, 1, 100).reshape(10, 10)
    grid = cnnviz.activation_grid(activation, images_per_row=2)
    assert grid.dtype == np.uint8
    assert grid[0, 0] == 255 and grid.min() < 128


def test_grid_rejects_a_batch_and_bad_arguments():
    with pytest.raises(ValueError, match=r"activation\[i:i \+ 1\]"):
        cnnviz.activation_grid(np.ones((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="images_per_row"):
        cnnviz.activation_grid(np.ones((1, 4, 4, 3)), images_per_row=0)


def test_dead_channels():
    activation = np.ones((2, 3, 3, 4), "float32")
    activation[0, ..., 2] = 0
    activation[1, 1:, :, 0] = 0  # partly zero: alive
    assert cnnviz.dead_channels(activation).tolist() == [[False, False, True, False], [False] * 4]


class CountCalls(keras.layers.Layer):
    """Identity that counts how often it runs on real (eager) data, not while a graph is built."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.eager_calls = 0

    def call(self, x):
        if tf.executing_eagerly():
            self.eager_calls += 1
        return x


@pytest.fixture(scope="module")
def nested():
    """A transfer-learning shape: Sequential([functional conv base, pooling, dense])."""
    inputs = keras.Input((16, 16, 3))
    x = CountCalls(name="count_inner")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="inner_conv1")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="inner_conv2")(x)
    base = keras.Model(inputs, x, name="base")
    outer = keras.Sequential([keras.Input((16, 16, 3)), base, CountCalls(name="count_outer"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, name="head")])
    return outer, base


def test_one_forward_pass_for_many_layers(nested):
    outer, _ = nested
    counters = [cnnviz.get_layer(outer, "count_inner"), outer.get_layer("count_outer")]
    for counter in counters:
        counter.eager_calls = 0
    images = np.random.default_rng(3).uniform(size=(2, 16, 16, 3)).astype("float32")
    acts = cnnviz.layer_activations(outer, images, ["inner_conv1", "inner_conv2", "count_outer"])
    assert [counter.eager_calls for counter in counters] == [1, 1]
    assert [a.shape for a in acts.values()] == [(2, 14, 14, 4), (2, 12, 12, 6), (2, 12, 12, 6)]


def test_nested_layers_are_found_with_the_right_values(nested):
    outer, base = nested
    images = np.random.default_rng(4).uniform(size=(1, 16, 16, 3)).astype("float32")
    acts = cnnviz.layer_activations(outer, images, ["inner_conv2", "inner_conv1"])
    assert list(acts) == ["inner_conv2", "inner_conv1"]
    np.testing.assert_allclose(acts["inner_conv2"], base(images), rtol=1e-5, atol=1e-6)


def test_matches_the_classic_truncated_model(bundle, cat):
    """The seed idiom, Model(model.input, [layer.output for layer in model.layers[1:9]]), agrees."""
    model = bundle.model
    classic = keras.Model(model.input, [layer.output for layer in model.layers[1:9]])
    expected = classic(bundle.preprocess(cat[None]))
    acts = cnnviz.layer_activations(bundle, cat)  # default: the first 8 spatial layers
    assert list(acts) == [layer.name for layer in model.layers[1:9]]
    for got, want in zip(acts.values(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert list(cnnviz.layer_activations(bundle, cat, depth=3)) == ["stem_conv", "stem_bn", "stem_activation"]


def test_wrong_layer_name_lists_close_matches(bundle, cat):
    with pytest.raises(ValueError, match="closest: stem_activation"):
        cnnviz.layer_activations(bundle, cat, ["stem_activaton"])
    with pytest.raises(ValueError, match="no layers"):
        cnnviz.activation_model(bundle, [])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        cnnviz.layer_activations(bundle, cat[0], ["stem_conv"])


def test_plot_activation_grid_marks_dead_channels_and_titles():
    activation = np.random.default_rng(5).uniform(size=(1, 12, 12, 70)).astype("float32")
    activation[..., [0, 65]] = 0
    ax = cnnviz.plot_activation_grid(activation, "block9_activation", max_channels=64)
    title = ax.get_title(loc="left")
    assert "block9_activation" in title and "12×12×70" in title and "2 of 70 channels dead" in title
    picture = ax.images[0].get_array()
    assert picture.shape[:2] == (4 * 13 - 1, 16 * 13 - 1)  # 64 channels shown, 1-pixel separators
    np.testing.assert_allclose(picture[0, 0], DEAD_COLOUR)  # channel 0 tile
    np.testing.assert_allclose(picture[12, 0], GAP_COLOUR)  # separator row
    assert not np.allclose(picture[0, 13], DEAD_COLOUR)  # channel 1 is alive
    width, height = ax.figure.get_size_inches()
    assert width == 14 and 3 < height < 5  # 64 channels in 4 readable rows
    plt.close("all")


def test_plot_channel_uses_matshow_viridis():
    activation = np.arange(2 * 3 * 5, dtype="float32").reshape(1, 2, 3, 5)
    ax = cnnviz.plot_channel(activation, 3, "layer")
    np.testing.assert_array_equal(ax.images[0].get_array(), activation[0, :, :, 3])
    assert ax.images[0].get_cmap().name == "viridis" and ax.get_title() == "layer · channel 3"
    with pytest.raises(ValueError, match="5 channels"):
        cnnviz.plot_channel(activation, 5)
    plt.close("all")


def test_plot_dead_fraction_bar_heights():
    a = np.ones((2, 2, 2, 4), "float32")
    a[0, ..., :3] = 0
    b = np.zeros((2, 2, 2, 2), "float32")
    ax = cnnviz.plot_dead_fraction({"a": a, "b": b}, labels=["cat", "coffee"])
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == [0.75, 1.0, 0.0, 1.0]  # cat: a, b; coffee: a, b
    plt.close("all")

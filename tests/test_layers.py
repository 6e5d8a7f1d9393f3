"""Finding layers (also inside nested models) and tapping them in one forward pass."""
import keras
import numpy as np
import pytest

import cnnviz
from cnnviz.layers import spatial_layer


@pytest.fixture(scope="module")
def nested(bundle):
    """Transfer-learning style: the Lite0 convolutional base nested inside Sequential and functional models."""
    base = keras.Model(bundle.model.inputs, cnnviz.get_layer(bundle, "top_activation").output, name="base")
    head = keras.layers.Dense(3, activation="softmax", name="head")
    sequential = keras.Sequential([keras.Input((None, None, 3)), base, keras.layers.GlobalAveragePooling2D(), head])
    inputs = keras.Input((None, None, 3))
    functional = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(base(inputs))))
    return sequential, functional


def test_conv_layers_lists_spatial_layers_in_order(bundle):
    layers = cnnviz.conv_layers(bundle)
    names = [info.name for info in layers]
    assert names[0] == "stem_conv" and names[-1] == "top_activation"
    assert layers[0].shape == (None, 112, 112, 32) and layers[-1].shape == (None, 7, 7, 1280)
    assert "avg_pool" not in names and "logits" not in names
    assert len(names) == len(set(names))


def test_conv_layers_inside_nested_model(nested):
    sequential, _ = nested
    layers = cnnviz.conv_layers(sequential, input_size=(224, 224))
    assert layers[-1].name == "top_activation" and layers[-1].path == ("base",)
    assert layers[-1].shape == (None, 7, 7, 1280)


def test_get_layer_wrong_name_lists_close_matches(bundle, nested):
    with pytest.raises(ValueError, match="top_activation"):
        cnnviz.get_layer(bundle, "top_activaton")
    with pytest.raises(ValueError, match="block6a_expand_conv"):
        cnnviz.get_layer(nested[0], "block6a_expand_cnv")
    assert cnnviz.get_layer(nested[1], "block1a_dwconv").name == "block1a_dwconv"


def test_spatial_layer_refuses_flat_layers(bundle):
    assert spatial_layer(bundle).name == "top_activation"
    with pytest.raises(ValueError, match="not \\(N, h, w, c\\)"):
        spatial_layer(bundle, "logits")


def test_tap_model_nested_equals_flat(bundle, nested, cat):
    x = bundle.preprocess(cat[None])
    (flat,), _ = cnnviz.tap_model(bundle, ["top_activation"])(x)
    for model in nested:
        (features, shallow), logits = cnnviz.tap_model(model, ["top_activation", "block2a_expand_bn"])(x)
        np.testing.assert_allclose(features, flat, atol=1e-5)
        assert shallow.shape == (1, 112, 112, 96)
        np.testing.assert_allclose(keras.ops.softmax(logits), model(x), atol=1e-6)


def test_tap_model_is_one_forward_pass(bundle, cat, monkeypatch):
    calls = []
    stem = cnnviz.get_layer(bundle, "stem_conv")
    original = type(stem).call
    monkeypatch.setattr(type(stem), "call", lambda self, *a, **k: calls.append(self.name) or original(self, *a, **k))
    tap = cnnviz.tap_model(bundle, ["stem_activation", "block3a_project_bn", "top_activation"], score=None)
    calls.clear()
    activations = tap(bundle.preprocess(cat[None]))
    assert [a.shape[-1] for a in activations] == [32, 40, 1280]
    assert calls.count("stem_conv") == 1


def test_unbuilt_sequential_gets_a_clear_error():
    model = keras.Sequential([keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(ValueError, match="keras.Input"):
        cnnviz.tap_model(model, [model.layers[0].name])

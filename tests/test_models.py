"""The offline model, its decoding and logits, and the seed models' offline behaviour."""
import glob
import json
import os
import socket

import keras
import numpy as np
import pytest

import cnnviz
from cnnviz.models import SEED_MODELS, class_index, decode

CATS = {"tiger_cat", "Egyptian_cat", "tabby"}


def top1(bundle, name):
    image = cnnviz.load_image(name, size=bundle.input_size, crop=0.875)
    return bundle.predict(image[None], top=5)[0]


@pytest.mark.parametrize("photo, expected", [("coffee", {"espresso"}), ("camera", {"tripod"}), ("cat", CATS)])
def test_top1_on_sample_photos(bundle, photo, expected):
    best = top1(bundle, photo)
    assert best[0][1] in expected
    assert 0.3 < best[0][2] <= 1.0


def test_coffee_is_confident_and_probabilities_sum_to_one(bundle, coffee):
    probabilities = bundle.model.predict_on_batch(bundle.preprocess(coffee[None]))
    assert probabilities.shape == (1, 1000)
    assert np.isclose(probabilities.sum(), 1.0, atol=1e-4)
    assert probabilities[0].argmax() == 967 and probabilities[0, 967] > 0.9  # 967 = espresso


def test_bundle_attributes(bundle):
    assert bundle.input_size == (224, 224)
    assert bundle.last_conv_layer == "top_activation"
    assert bundle.model.inputs[0].shape[1:] == (None, None, 3)  # any spatial size
    assert bundle.model.count_params() == 4_652_008 + 42_016
    x = np.array([[0.0, 127.0, 255.0]])
    np.testing.assert_allclose(bundle.preprocess(x), [[-127 / 128, 0.0, 1.0]])


def test_flexible_input_size(bundle):
    tap = cnnviz.tap_model(bundle, ["top_activation"], score=None)
    (features,) = tap(np.zeros((1, 224, 448, 3), "float32"))
    assert features.shape == (1, 7, 14, 1280)


def test_decode_matches_keras_format(bundle):
    scores = np.zeros((2, 1000), "float32")
    scores[0, [285, 281, 282]] = [0.5, 0.3, 0.2]
    scores[1, 967] = 1.0
    decoded = decode(scores, top=3)
    assert decoded[0] == [("n02124075", "Egyptian_cat", 0.5), ("n02123045", "tabby", 0.30000001192092896),
                          ("n02123159", "tiger_cat", 0.20000000298023224)]
    assert decoded[1][0] == ("n07920052", "espresso", 1.0)
    assert all(isinstance(s, float) for _, _, s in decoded[0])
    with pytest.raises(ValueError, match=r"\(N, 1000\)"):
        decode(np.zeros((1, 10)))


def test_class_index_is_keras_format():
    raw = json.loads((cnnviz.models.CLASS_INDEX).read_text())
    assert len(raw) == 1000 and raw["0"] == ["n01440764", "tench"]
    wnids = [wnid for wnid, _ in class_index()]
    assert wnids == sorted(wnids)  # Keras' order is sorted WordNet ids
    names = [name for _, name in class_index()]
    assert names[134] == names[517] == "crane" and names[638] == names[639] == "maillot"
    assert all(" " not in name for name in names)


def test_logits_equal_softmax_stripped_scores(bundle, cat):
    tap = cnnviz.tap_model(bundle, [bundle.last_conv_layer], score="logits")
    _, logits = tap(bundle.preprocess(cat[None]))
    probabilities = bundle.model(bundle.preprocess(cat[None]))
    np.testing.assert_allclose(keras.ops.softmax(logits), probabilities, atol=1e-6)
    # the logits are the Dense layer's linear output: not probabilities
    assert float(keras.ops.max(logits)) > 1.0
    assert bundle.model.layers[-1].name == "predictions"  # the model itself is unchanged


def test_unknown_model_name():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        cnnviz.load_model("alexnet")


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails, as on a machine with no network."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_seed_model_offline_error(no_network, name):
    keras_home = os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras"))
    if glob.glob(os.path.join(keras_home, "models", f"*{name}*")):
        pytest.skip(f"{name} weights are cached in {keras_home}: no download is attempted")
    with pytest.raises(RuntimeError, match="network") as error:
        cnnviz.load_model(name)
    assert "cnnviz.load_model()" in str(error.value) and "weights=None" in str(error.value)


@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_seed_model_without_weights(no_network, name):
    bundle = cnnviz.load_model(name, weights=None)
    layer = cnnviz.get_layer(bundle, bundle.last_conv_layer)
    assert len(layer.output.shape) == 4
    assert cnnviz.conv_layers(bundle)[-1].name == bundle.last_conv_layer or name == "vgg16"
    x = np.random.default_rng(0).uniform(0, 255, (1, *bundle.input_size, 3)).astype("float32")
    _, logits = cnnviz.tap_model(bundle, [bundle.last_conv_layer])(bundle.preprocess(x))
    assert logits.shape == (1, 1000)
    keras.backend.clear_session()

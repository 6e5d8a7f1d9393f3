"""The CAM family (cnnviz.methods.cams) against eager NumPy implementations of each paper's formula on a
tiny seeded network; Lite0 facts (CAM == Grad-CAM == HiResCAM at top_activation); nested models, custom
scores, raw maps of several classes, zero gradients, the Grad-CAM++ warning, errors."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import cnnviz
from cnnviz import cam, explain_classes, gradcam_plus_plus, hirescam, layercam, scorecam
from cnnviz.methods import METHODS, SignedActivationWarning
from cnnviz.models import class_names
from cnnviz.taps import compiled
from nets import constant_score_model, nested_versions, random_images, tiny_base, tiny_classifier

ESPRESSO, EGYPTIAN_CAT = class_names().index("espresso"), class_names().index("Egyptian_cat")
GRADIENT_METHODS = ["gradcam", "gradcam_plus_plus", "layercam", "hirescam"]
CAM_METHODS = {name: method for name, method in METHODS.items() if method.at_layer}


@pytest.fixture(scope="module")
def tiny():
    return tiny_classifier()


@pytest.fixture(scope="module")
def images():
    return random_images()


def eager_parts(model, images, layer, classes):
    """A (N, h, w, c), g (N, h, w, c) = ∂logit_c/∂A, logits, eagerly, without cnnviz."""
    logits_model = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer("head").output])
    with tf.GradientTape() as tape:
        activations, logits = logits_model(images)
        picked = tf.gather(logits, classes, batch_dims=1)
    return activations.numpy(), tape.gradient(picked, activations).numpy(), logits.numpy()


def normalised(maps):
    maps = np.maximum(maps, 0)
    top = maps.max(axis=(1, 2), keepdims=True)
    return np.where(top > 0, maps / np.where(top > 0, top, 1), 0)


def reference(method, model, images, layer, classes):
    """The papers' formulas in NumPy, one image and channel at a time where that reads closer to the paper."""
    A, g, logits = eager_parts(model, images, layer, classes)
    maps = []
    for a, grad, logit, c in zip(A, g, logits, classes):
        if method == "gradcam":
            weights = grad.mean(axis=(0, 1))
            heatmap = sum(weights[k] * a[..., k] for k in range(a.shape[-1]))
        elif method == "gradcam_plus_plus":  # with the exponential score Y = exp(S): its derivatives are e^S g^n
            e = np.exp(logit[c])
            d1, d2, d3 = e * grad, e * grad ** 2, e * grad ** 3
            heatmap = np.zeros(a.shape[:2])
            for k in range(a.shape[-1]):
                denominator = 2 * d2[..., k] + a[..., k].sum() * d3[..., k]
                alpha = np.where(denominator != 0, d2[..., k] / np.where(denominator != 0, denominator, 1), 0)
                heatmap += (alpha * np.maximum(d1[..., k], 0)).sum() * a[..., k]
        elif method == "layercam":
            heatmap = (np.maximum(grad, 0) * a).sum(axis=-1)
        elif method == "hirescam":  # Draelos & Carin: the element-wise product, summed over channels
            heatmap = sum(grad[..., k] * a[..., k] for k in range(a.shape[-1]))
        elif method == "cam":
            kernel = model.get_layer("head").get_weights()[0]  # (c, classes)
            heatmap = a @ kernel[:, c]
        maps.append(heatmap)
    return normalised(np.stack(maps))


def scorecam_reference(model, image, layer, class_index, score=None):
    """Score-CAM channel by channel, eagerly: mask, forward, softmax probability of the class.
    ``layer``: a layer name of ``model``, or a model giving the activations."""
    features = layer if isinstance(layer, keras.Model) else keras.Model(model.input, model.get_layer(layer).output)
    activations = features(image[None]).numpy()[0]
    heatmap = np.zeros(activations.shape[:2])
    for k in range(activations.shape[-1]):
        mask = tf.image.resize(activations[None, ..., k:k + 1], image.shape[:2]).numpy()[0]
        span = mask.max() - mask.min()
        mask = (mask - mask.min()) / span if span > 0 else np.zeros_like(mask)
        output = model(image[None] * mask)
        if score is None:
            logits = keras.Model(model.input, model.get_layer("head").output)(image[None] * mask)
            weight = float(tf.nn.softmax(logits)[0, class_index])
        else:
            weight = float(score(output)[0])
        heatmap += weight * activations[..., k]
    return np.maximum(heatmap, 0)


@pytest.mark.parametrize("method, layer", [(method, layer) for method in GRADIENT_METHODS
                                           for layer in ("conv1", "conv2")]
                         + [("cam", "conv2")])  # CAM only before GAP: see test_cam_needs_gap_dense
def test_each_method_matches_its_formula(tiny, images, method, layer):
    classes = np.array([0, 3, 4])
    maps = CAM_METHODS[method](tiny, images, layer=layer, class_index=classes)
    expected = reference(method, tiny, images, layer, classes)
    assert maps.shape == expected.shape == ((3, 8, 8) if layer == "conv1" else (3, 6, 6))
    np.testing.assert_allclose(maps, expected, atol=1e-5)


def test_methods_differ_from_each_other(tiny, images):
    """conv1's gradients vary over positions (ReLU in conv2): the three weightings give three maps."""
    maps = [CAM_METHODS[m](tiny, images, layer="conv1", class_index=2) for m in GRADIENT_METHODS]
    assert np.abs(maps[0] - maps[1]).max() > 0.05 and np.abs(maps[0] - maps[2]).max() > 0.05


def test_scorecam_matches_channel_by_channel_reference(tiny, images):
    for layer in ("conv1", "conv2"):
        raw = scorecam(tiny, images[:2], layer=layer, class_index=[1, 3], normalize=False, batch_size=4)
        for map_, image, c in zip(raw, images, [1, 3]):
            np.testing.assert_allclose(map_, scorecam_reference(tiny, image, layer, c), rtol=1e-4, atol=1e-6)
    normalised_map = scorecam(tiny, images[0], layer="conv2", class_index=1)
    np.testing.assert_allclose(normalised_map, raw[0] / raw[0].max(), atol=1e-6)


def test_scorecam_channel_limit_keeps_the_most_varied_channels(tiny, images):
    image = images[0]
    full = scorecam(tiny, image, layer="conv2", class_index=1, normalize=False)
    np.testing.assert_allclose(scorecam(tiny, image, layer="conv2", class_index=1, channels=6, normalize=False),
                               full, rtol=1e-5)
    activations = keras.Model(tiny.input, tiny.get_layer("conv2").output)(image[None]).numpy()[0]
    kept = np.argsort(-activations.std(axis=(0, 1)), kind="stable")[:2]
    limited = scorecam(tiny, image, layer="conv2", class_index=1, channels=2, normalize=False)
    weights = [scorecam_weight(tiny, image, activations[..., k], 1) for k in kept]
    expected = np.maximum(sum(w * activations[..., k] for w, k in zip(weights, kept)), 0)
    np.testing.assert_allclose(limited, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="channels must be a whole number >= 1"):
        scorecam(tiny, image, layer="conv2", channels=0)


def scorecam_weight(model, image, feature_map, class_index):
    mask = tf.image.resize(feature_map[None, ..., None], image.shape[:2]).numpy()[0]
    mask = (mask - mask.min()) / (mask.max() - mask.min())
    logits = keras.Model(model.input, model.get_layer("head").output)(image[None] * mask)
    return float(tf.nn.softmax(logits)[0, class_index])


def test_cam_equals_gradcam_on_lite0(bundle, cat, coffee, collage):
    """GAP → Dense: ∂logit_c/∂A_ijk = W_kc/(h·w) everywhere, so Grad-CAM's α_k ∝ W_kc: the same map."""
    images = np.stack([cat, coffee, collage])
    for class_index in (None, [EGYPTIAN_CAT, ESPRESSO, ESPRESSO]):
        np.testing.assert_allclose(cam(bundle, images, class_index=class_index),
                                   cnnviz.gradcam(bundle, images, class_index=class_index), atol=1e-5)
    raw_cam = cam(bundle, cat, normalize=False)
    raw_gradcam = explain_classes("gradcam", bundle, cat)[0]
    np.testing.assert_allclose(raw_cam, 49 * raw_gradcam, rtol=1e-4, atol=1e-4)  # h·w = 7·7


def test_cam_needs_gap_dense(tiny, images):
    with pytest.raises(ValueError, match="GlobalAveragePooling2D of 'conv1' → Dense.*cnnviz.gradcam"):
        cam(tiny, images, layer="conv1")
    inputs = keras.Input((10, 10, 3))
    flat = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    with pytest.raises(ValueError, match="come \\['flatten"):
        cam(keras.Model(inputs, keras.layers.Dense(3)(flat)), images)


def test_cam_refuses_a_layer_no_dense_reads_before_compiling(images):
    """No Dense takes as many inputs as the layer has channels: the error comes before any tap is compiled."""
    from cnnviz.caching import per_model_cache
    inputs = keras.Input((10, 10, 3))
    early = keras.layers.Conv2D(5, 3, name="early")(inputs)
    late = keras.layers.Conv2D(4, 3, name="late")(early)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(late)))
    with pytest.raises(ValueError, match="GlobalAveragePooling2D of 'early' → Dense"):
        cam(model, images, layer="early")
    assert len(per_model_cache(model, "compiled")) == 0
    assert cam(model, images, layer="late").shape == (len(images), 6, 6)
    assert len(per_model_cache(model, "compiled")) == 1  # the cache the refused call left empty


@pytest.fixture(scope="module")
def nested(tiny):
    """The tiny network with its base nested in a Sequential and in a functional model (same weights)."""
    return nested_versions(tiny, "conv2")


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_nested_models_and_custom_scores(tiny, nested, images, method):
    function = CAM_METHODS[method]
    flat = function(tiny, images, layer="conv2", class_index=[0, 1, 2])
    for model in nested:
        np.testing.assert_allclose(function(model, images, layer="conv2", class_index=[0, 1, 2]), flat, atol=1e-5)
        np.testing.assert_allclose(function(model, images, class_index=[0, 1, 2]), flat, atol=1e-5)  # layer=None
    # a regression head (Dense(1)) whose weights are class 3's column, explained through a custom score
    head = keras.layers.Dense(1, name="value")
    base = nested[0].layers[0]
    inputs = keras.Input((10, 10, 3))
    regression = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(base(inputs))))
    kernel, bias = tiny.get_layer("head").get_weights()
    head.set_weights([kernel[:, 3:4], bias[3:4]])
    value = lambda output: output[:, 0]  # noqa: E731
    maps = function(regression, images, score=value)
    if method == "scorecam":  # weights are the score itself on each masked input, not a probability
        for map_, image in zip(function(regression, images, score=value, normalize=False), images):
            np.testing.assert_allclose(map_, scorecam_reference(regression, image, base, None, value),
                                       rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(maps, function(tiny, images, layer="conv2", class_index=3), atol=1e-5)
    with pytest.raises(ValueError, match="class_index or score, not both"):
        function(regression, images, class_index=0, score=value)


@pytest.mark.parametrize("method", sorted(CAM_METHODS))
def test_zero_gradient_or_zero_activation_gives_zeros_not_nan(method):
    """Class 1's logit does not depend on the layer (its Dense column is 0), and a layer can be all 0."""
    base = tiny_base()
    head = keras.layers.Dense(3, name="head")
    model = keras.Model(base.inputs, head(keras.layers.GlobalAveragePooling2D()(base.output)))
    kernel, bias = head.get_weights()
    kernel[:, 1] = 0
    head.set_weights([kernel, bias])
    images = random_images(2, seed=1)
    if method != "scorecam":  # Score-CAM has no gradient; its weights are probabilities > 0
        with pytest.warns(cnnviz.EmptyMapWarning, match="all zero for image 0"):
            maps = CAM_METHODS[method](model, images, layer="conv2", class_index=1)
        assert maps.shape == (2, 6, 6) and not np.isnan(maps).any() and (maps == 0).all()
    with pytest.warns(cnnviz.EmptyMapWarning):
        maps = CAM_METHODS[method](constant_score_model(), images, class_index=0)
    assert maps.shape == (2, 8, 8) and not np.isnan(maps).any() and (maps == 0).all()


@pytest.mark.parametrize("method", ["cam", *GRADIENT_METHODS, "scorecam"])
def test_explain_classes_several_classes_raw_from_one_pass(tiny, images, method):
    options = {"batch_size": 3} if method == "scorecam" else {}
    raw = explain_classes(method, tiny, images[0], [4, 0, 2], layer="conv2", **options)
    assert raw.shape == (3, 6, 6) and (raw >= 0).all()
    function = CAM_METHODS[method]
    for map_, c in zip(raw, [4, 0, 2]):
        single = function(tiny, images[0], layer="conv2", class_index=c)
        np.testing.assert_allclose(map_ / map_.max(), single, atol=1e-5)
        np.testing.assert_allclose(function(tiny, images[0], layer="conv2", class_index=c, normalize=False),
                                   map_, rtol=1e-5, atol=1e-7)
    top = explain_classes(method, tiny, images[0], layer="conv2", **options)  # classes None → the top class
    best = int(np.argmax(tiny(images[:1])[0]))
    np.testing.assert_allclose(top[0], explain_classes(method, tiny, images[0], [best], layer="conv2",
                                                       **options)[0])


def test_shared_scale_shows_an_absent_class_as_weak(bundle, cat):
    """Goldfish on the cat photo: on its own scale its map peaks at 1 like the cat's; shared, lower (measured:
    Grad-CAM 0.37 of the cat's peak, Score-CAM 0.01: its weights are probabilities)."""
    goldfish = class_names().index("goldfish")
    raw = explain_classes("gradcam", bundle, cat, [EGYPTIAN_CAT, goldfish])
    assert raw[1].max() < 0.5 * raw[0].max()
    raw = explain_classes("scorecam", bundle, cat, [EGYPTIAN_CAT, goldfish], channels=64)
    assert raw[1].max() < 0.1 * raw[0].max()
    assert gradcam_plus_plus(bundle, cat, class_index=goldfish).max() == pytest.approx(1.0)


def test_layercam_on_an_early_lite0_layer_and_no_retracing(bundle, cat, coffee):
    maps = layercam(bundle, np.stack([cat, coffee]), layer="block3b_add", class_index=[EGYPTIAN_CAT, ESPRESSO])
    assert maps.shape == (2, 28, 28) and maps.max(axis=(1, 2)) == pytest.approx([1, 1])
    functions = compiled(bundle.model, bundle.preprocess, ("block3b_add",))
    traces = functions.functions._one_class.experimental_get_tracing_count()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SignedActivationWarning)  # block3b_add is signed: tested below
        for c in (1, 2, 3):
            gradcam_plus_plus(bundle, cat, layer="block3b_add", class_index=c)
            layercam(bundle, cat, layer="block3b_add", class_index=c)
    assert functions.functions._one_class.experimental_get_tracing_count() == traces


def test_clear_errors(bundle, cat):
    with pytest.raises(ValueError, match="unknown method 'gradcam\\+\\+'"):
        explain_classes("gradcam++", bundle, cat, [1])
    with pytest.raises(ValueError, match="one image"):
        explain_classes("layercam", bundle, cat[None], [1])
    with pytest.raises(ValueError, match="class index 1000 is out of range"):
        layercam(bundle, cat, class_index=1000)
    with pytest.raises(ValueError, match="no layer named"):
        gradcam_plus_plus(bundle, cat, layer="top_activaton")
    with pytest.raises(ValueError, match="batch_size must be"):
        scorecam(bundle, cat, batch_size=0)
    with pytest.raises(TypeError, match="layercam takes no option 'channels'"):
        explain_classes("layercam", bundle, cat, [1], channels=3)


def test_hirescam_equals_gradcam_where_the_gradient_is_constant(bundle, cat, coffee):
    """At top_activation (→ GAP → Dense) ∂y/∂A_ijk = W_kc/(h·w) at every position: the element-wise product
    is Grad-CAM's average. At block5c_add the gradient varies, and so do the maps."""
    images = np.stack([cat, coffee])
    np.testing.assert_allclose(hirescam(bundle, images), cnnviz.gradcam(bundle, images), atol=1e-5)
    early = hirescam(bundle, images, layer="block6a_expand_activation")
    assert np.abs(early - cnnviz.gradcam(bundle, images, layer="block6a_expand_activation")).max() > 0.1


def test_gradcam_plus_plus_warns_on_signed_activations(bundle, cat):
    with pytest.warns(SignedActivationWarning, match="block5c_add.*negative.*'block5c_activation'"):
        gradcam_plus_plus(bundle, cat, layer="block5c_add")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # after a ReLU6: no warning
        gradcam_plus_plus(bundle, cat, layer="top_activation")
        layercam(bundle, cat, layer="block5c_add")

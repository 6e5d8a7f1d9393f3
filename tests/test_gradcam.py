"""Grad-CAM: both forms agree, batching, nested models, custom scores, pictures, errors, no retracing."""
import logging

import keras
import numpy as np
import pytest

import cnnviz
from cnnviz.taps import compiled
from cnnviz.models import class_names

EGYPTIAN_CAT, ESPRESSO = class_names().index("Egyptian_cat"), class_names().index("espresso")


def left_share(heatmap, size=(224, 224)):
    """Share of the heatmap's mass on the left half of the image (the map upsampled to the image)."""
    full = cnnviz.upsample(heatmap, size)
    return full[:, : size[1] // 2].sum() / full.sum()


@pytest.fixture(scope="module")
def images(cat, coffee, collage):
    return np.stack([cat, coffee, collage])


@pytest.fixture(scope="module")
def nested(bundle):
    """A transfer-learning style model: the convolutional base nested in a Sequential, the classifier
    on top reusing the bundled weights (so it must give the flat model's heatmaps)."""
    flat = bundle.model
    base = keras.Model(flat.inputs, flat.get_layer("top_activation").output, name="base")
    dense = keras.layers.Dense(1000, activation="softmax", name="classifier")
    sequential = keras.Sequential([keras.Input((224, 224, 3)), base, keras.layers.GlobalAveragePooling2D(), dense])
    dense.set_weights(flat.get_layer("logits").get_weights())
    inputs = keras.Input((224, 224, 3))
    functional = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(base(inputs))))
    return sequential, functional


@pytest.mark.parametrize("layer", ["top_activation", "block5c_add"])
def test_matmul_and_loop_forms_agree(bundle, images, layer):
    for class_index in (None, EGYPTIAN_CAT, [ESPRESSO, EGYPTIAN_CAT, ESPRESSO]):
        fast = cnnviz.gradcam(bundle, images, layer=layer, class_index=class_index)
        loop = cnnviz.gradcam_loop(bundle, images, layer=layer, class_index=class_index)
        assert fast.shape == loop.shape == ((3, 7, 7) if layer == "top_activation" else (3, 14, 14))
        np.testing.assert_allclose(fast, loop, atol=1e-5)
        assert fast.max(axis=(1, 2)) == pytest.approx(1.0)  # normalised: each map peaks at 1


def test_batch_equals_one_by_one(bundle, images):
    classes = [EGYPTIAN_CAT, ESPRESSO, ESPRESSO]
    batch = cnnviz.gradcam(bundle, images, class_index=classes)
    for image, class_index, heatmap in zip(images, classes, batch):
        np.testing.assert_allclose(cnnviz.gradcam(bundle, image, class_index=class_index), heatmap, atol=1e-5)


def test_default_class_is_the_top_prediction(bundle, coffee):
    assert bundle.predict(coffee[None])[0][0][1] == "espresso"
    np.testing.assert_allclose(cnnviz.gradcam(bundle, coffee), cnnviz.gradcam(bundle, coffee, class_index=ESPRESSO), atol=1e-6)


def test_no_positive_evidence_gives_zeros_not_nan():
    """ReLU activations (≥ 0) and an all-negative classifier: every α_k < 0, so Σ α_k A_k ≤ 0."""
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    head = keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(-0.5), name="head")
    model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(features)))
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    for method in (cnnviz.gradcam, cnnviz.gradcam_loop):
        heatmaps = method(model, images, class_index=1)
        assert heatmaps.shape == (2, 30, 30)
        assert not np.isnan(heatmaps).any()
        assert (heatmaps == 0).all()


def test_collage_cat_left_espresso_right(bundle, collage):
    heatmaps = cnnviz.gradcam(bundle, np.stack([collage, collage]), class_index=[EGYPTIAN_CAT, ESPRESSO])
    assert left_share(heatmaps[0]) >= 0.85
    assert 1 - left_share(heatmaps[1]) >= 0.80


def test_several_classes_from_one_pass_match_single_class_maps(bundle, cat):
    parts = cnnviz.gradcam_parts(bundle, cat, top=3)
    logits = parts.scores[0]
    assert parts.heatmaps.shape == (1, 3, 7, 7) and parts.weights.shape == (1, 3, 1280)
    assert (np.diff(logits) <= 0).all()  # best first
    for k, class_index in enumerate(parts.class_indices[0]):
        single = cnnviz.gradcam(bundle, cat, class_index=int(class_index))
        np.testing.assert_allclose(parts.heatmaps[0, k], single, atol=1e-5)
    redrawn = cnnviz.weighted_heatmap(parts.activations[0], parts.weights[0])
    np.testing.assert_allclose(redrawn, parts.heatmaps[0], atol=1e-5)
    listed = cnnviz.gradcam_parts(bundle, cat, class_index=[ESPRESSO, EGYPTIAN_CAT])
    np.testing.assert_array_equal(listed.class_indices, [[ESPRESSO, EGYPTIAN_CAT]])


def test_nested_sequential_and_functional_match_flat(bundle, nested, images):
    x = bundle.preprocess(images)
    flat = cnnviz.gradcam(bundle.model, x, layer="top_activation", class_index=EGYPTIAN_CAT)
    for model in nested:
        heatmaps = cnnviz.gradcam(model, x, layer="top_activation", class_index=EGYPTIAN_CAT)
        np.testing.assert_allclose(heatmaps, flat, atol=1e-5)
        default = cnnviz.gradcam(model, x)  # layer=None finds the last spatial layer inside the base
        np.testing.assert_allclose(default, cnnviz.gradcam(bundle, images), atol=1e-5)


def test_custom_score_on_a_regression_head(bundle, nested, cat):
    """A one-value head whose weights are the Egyptian-cat column: same map as that class."""
    base = nested[0].layers[0]
    inputs = keras.Input((224, 224, 3))
    head = keras.layers.Dense(1, name="age")
    regression = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(base(inputs))))
    kernel, bias = bundle.model.get_layer("logits").get_weights()
    head.set_weights([kernel[:, EGYPTIAN_CAT:EGYPTIAN_CAT + 1], bias[EGYPTIAN_CAT:EGYPTIAN_CAT + 1]])
    x = bundle.preprocess(cat[None])
    age = lambda output: output[:, 0]  # noqa: E731  the single regression value
    parts = cnnviz.gradcam_parts(regression, x, score=age)
    assert parts.scores[0, 0] == pytest.approx(float(regression(x)[0, 0]), abs=1e-3)
    heatmap = cnnviz.gradcam(regression, x, score=age)
    np.testing.assert_array_equal(heatmap, parts.heatmaps[:, 0])
    np.testing.assert_allclose(heatmap, cnnviz.gradcam(bundle, cat[None], class_index=EGYPTIAN_CAT), atol=1e-5)
    # a contrast: "cat rather than espresso" on the bundle's probabilities
    contrast = cnnviz.gradcam(bundle, cat, score=lambda p: p[:, EGYPTIAN_CAT] - p[:, ESPRESSO])
    assert contrast.shape == (7, 7) and contrast.max() == pytest.approx(1.0)


def test_overlay_is_uint8_at_original_resolution(bundle):
    image = cnnviz.load_image("grace_hopper")  # 600 × 512, not square, not 224
    heatmap = np.zeros((7, 7), "float32")
    heatmap[0, 0] = 1.0  # hot in the top-left corner only
    picture = cnnviz.overlay(image, heatmap)
    assert picture.dtype == np.uint8 and picture.shape == image.shape
    corner, far = picture[5, 5].astype(int), picture[-5, -5].astype(int)
    assert corner[0] - corner[2] > far[0] - far[2]  # jet: hot is red, cold is blue


def test_save_gradcam_writes_the_overlay(tmp_path, cat):
    heatmap = np.linspace(0, 1, 49, dtype="float32").reshape(7, 7)
    path = cnnviz.save_gradcam(cat, heatmap, tmp_path / "cam.png")
    np.testing.assert_array_equal(cnnviz.load_image(path), cnnviz.overlay(cat, heatmap))


def test_clear_errors(bundle, cat):
    with pytest.raises(ValueError, match="no layer named 'top_activaton'.*top_activation"):
        cnnviz.gradcam(bundle, cat, layer="top_activaton")
    with pytest.raises(ValueError, match="not \\(N, h, w, c\\)"):
        cnnviz.gradcam(bundle, cat, layer="logits")
    for bad in (1000, -1):
        with pytest.raises(ValueError, match=f"class index {bad} is out of range.*1000 classes"):
            cnnviz.gradcam(bundle, cat, class_index=bad)
    with pytest.raises(ValueError, match="images must be"):
        cnnviz.gradcam(bundle, cat[0])


def test_no_retracing_across_twenty_classes(bundle, cat, caplog):
    cnnviz.gradcam(bundle, cat, class_index=0)  # the first call traces
    function = compiled(bundle.model, bundle.preprocess, ("top_activation",)).functions._one_class
    traces = function.experimental_get_tracing_count()
    with caplog.at_level(logging.WARNING):
        heatmaps = [cnnviz.gradcam(bundle, cat, class_index=c) for c in range(0, 1000, 50)]
    assert function.experimental_get_tracing_count() == traces
    assert "retracing" not in caplog.text
    assert len({h.tobytes() for h in heatmaps}) == 20  # 20 different classes, 20 different maps

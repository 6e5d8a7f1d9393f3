"""No silent wrong answers (issue 11, part 3): every bad input works right or raises a clear error.

Each case here gave, before this file existed, a NaN map, a silently ignored argument, a map of the
wrong thing, or a TensorFlow trace dump.
"""
import datetime
import io
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import cnnviz
from cnnviz.models import class_names

EGYPTIAN_CAT, ESPRESSO = class_names().index("Egyptian_cat"), class_names().index("espresso")


def small_body(channels=3, size=16):
    inputs = keras.Input((size, size, channels), name="image")
    features = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    return inputs, keras.layers.GlobalAveragePooling2D()(features)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")


# ---- NaN and inf -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_images_are_refused(bundle, cat, bad):
    image = cat.copy()
    image[3, 4, 1] = bad
    for call in (lambda: cnnviz.gradcam(bundle, image), lambda: cnnviz.layer_activations(bundle, image),
                 lambda: cnnviz.overlay(image, np.ones((7, 7))), lambda: cnnviz.load_image(image)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            call()


def test_float_tiff_with_nan_is_refused(tmp_path):
    grey = np.full((32, 32), 0.5, "float32")
    grey[0, 0] = np.nan
    Image.fromarray(grey, mode="F").save(tmp_path / "grey.tiff")
    with pytest.raises(ValueError, match="NaN or infinite"):
        cnnviz.load_image(tmp_path / "grey.tiff")


def test_nan_heatmap_is_refused(cat):
    with pytest.raises(ValueError, match="heatmap"):
        cnnviz.overlay(cat, np.full((7, 7), np.nan))


# ---- softmax and sigmoid not as their own layer ---------------------------------------------------
HEADS = {
    "Dense softmax": lambda: keras.layers.Dense(5, activation="softmax"),
    "Dense tf.nn.softmax": lambda: keras.layers.Dense(5, activation=tf.nn.softmax),
    "Dense keras.ops.softmax": lambda: keras.layers.Dense(5, activation=keras.ops.softmax),
    "Activation softmax": lambda: keras.Sequential([keras.layers.Dense(5), keras.layers.Activation("softmax")]),
    "Activation tf.nn.softmax": lambda: keras.Sequential([keras.layers.Dense(5),
                                                          keras.layers.Activation(tf.nn.softmax)]),
    "Softmax": lambda: keras.Sequential([keras.layers.Dense(5), keras.layers.Softmax()]),
    "Lambda tf.nn.softmax": lambda: keras.Sequential([keras.layers.Dense(5), keras.layers.Lambda(tf.nn.softmax)]),
    "Dense sigmoid": lambda: keras.layers.Dense(5, activation="sigmoid"),
}


def build_head(make_head, inputs, features):
    """The model with ``make_head``'s head, its Dense weights; the head's layers called one by one so the
    squashing layer is the model's LAST layer (a Sequential head would hide it)."""
    head = make_head()
    x = features
    for layer in (head.layers if isinstance(head, keras.Sequential) else [head]):
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("head", list(HEADS))
def test_every_softmax_form_explains_logits(pixels, head):
    keras.utils.set_random_seed(1)
    inputs, features = small_body()
    logits_model = keras.Model(inputs, keras.layers.Dense(5, name="dense")(features))
    model = build_head(HEADS[head], *small_body())
    model.set_weights(logits_model.get_weights())
    expected = cnnviz.gradcam(logits_model, pixels, layer="conv", class_index=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recovered logits: no warning
        got = cnnviz.gradcam(model, pixels, layer="conv", class_index=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_unrecoverable_softmax_warns_once(pixels):
    inputs, features = small_body()
    hidden = keras.layers.Lambda(lambda z: keras.ops.softmax(z), name="hidden_softmax")
    model = keras.Model(inputs, hidden(keras.layers.Dense(5)(features)))
    with pytest.warns(UserWarning, match="probabilities"):
        cnnviz.gradcam(model, pixels, layer="conv", class_index=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model
        cnnviz.gradcam(model, pixels, layer="conv", class_index=2)


# ---- score and class arguments --------------------------------------------------------------------
def test_unknown_score_string_lists_the_choices(bundle):
    with pytest.raises(ValueError, match="'logits', 'output' or None"):
        cnnviz.tap_model(bundle, ["top_activation"], score="logit")


@pytest.mark.parametrize("score", [lambda out: tf.reduce_sum(out), lambda out: out[0], lambda out: out[:, None]])
def test_score_of_the_wrong_shape(bundle, cat, score):
    with pytest.raises(ValueError, match=r"\(N,\)"):
        cnnviz.gradcam(bundle, cat, score=score)


def test_several_scores_need_gradcam_parts(bundle, cat):
    with pytest.raises(ValueError, match="gradcam_parts"):
        cnnviz.gradcam(bundle, cat, score=lambda out: out[:, :3])
    parts = cnnviz.gradcam_parts(bundle, cat, score=lambda out: out[:, :3])
    assert parts.heatmaps.shape == (1, 3, 7, 7)
    one = cnnviz.gradcam_parts(bundle, cat, score=lambda out: out[:, 2]).heatmaps[:, 0]
    np.testing.assert_allclose(parts.heatmaps[:, 2], one, atol=1e-5)  # each score its own map, not their sum


def test_class_index_and_score_together(bundle, cat):
    with pytest.raises(ValueError, match="not both"):
        cnnviz.gradcam(bundle, cat, class_index=ESPRESSO, score=lambda out: out[:, 3])


def test_two_classes_for_one_image(bundle, cat):
    with pytest.raises(ValueError, match="gradcam_parts"):
        cnnviz.gradcam(bundle, cat, class_index=[EGYPTIAN_CAT, ESPRESSO])
    assert cnnviz.gradcam_parts(bundle, cat, class_index=[EGYPTIAN_CAT, ESPRESSO]).heatmaps.shape == (1, 2, 7, 7)


# ---- numbers out of range -------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, says", [
    ({"steps": 0}, "steps"), ({"steps": -3}, "steps"), ({"steps": 2.5}, "steps"), ({"steps": True}, "steps"),
    ({"step": 0}, "step"), ({"step": -1.0}, "step"), ({"step": float("nan")}, "step"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"progress": "yes"}, "progress"),
])
def test_filter_arguments(bundle, kwargs, says):
    with pytest.raises(ValueError, match=says):
        cnnviz.visualize_filters(bundle, "block1a_project_bn", [0], size=32, **{"steps": 2, "progress": False,
                                                                                **kwargs})


@pytest.mark.parametrize("kwargs", [{"margin": -1}, {"columns": 0}, {"columns": -2}, {"columns": 1.5}])
def test_filter_grid_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cnnviz.filter_grid(np.zeros((4, 8, 8, 3), "uint8"), **kwargs)


@pytest.mark.parametrize("depth", [0, -1, 2.0])
def test_depth(bundle, cat, depth):
    with pytest.raises(ValueError, match="depth"):
        cnnviz.layer_activations(bundle, cat, depth=depth)


@pytest.mark.parametrize("kwargs, says", [({"alpha": 1.5}, "alpha"), ({"alpha": -0.1}, "alpha"),
                                          ({"colormap": "nope"}, "colormap")])
def test_overlay_arguments(cat, kwargs, says):
    with pytest.raises(ValueError, match=says):
        cnnviz.overlay(cat, np.ones((7, 7)), **kwargs)


def test_top_must_be_positive(bundle, cat):
    with pytest.raises(ValueError, match="top"):
        cnnviz.gradcam_parts(bundle, cat, top=0)


# ---- shapes of images and models ------------------------------------------------------------------
def test_empty_batch(bundle):
    with pytest.raises(ValueError, match="empty"):
        cnnviz.gradcam(bundle, np.zeros((0, 224, 224, 3)))


@pytest.mark.parametrize("channels, says", [(4, "alpha"), (1, "grey")])
def test_wrong_channel_count(bundle, cat, channels, says):
    image = np.concatenate([cat, cat[..., :1]], -1) if channels == 4 else cat[..., :1]
    for call in (lambda: cnnviz.gradcam(bundle, image), lambda: cnnviz.layer_activations(bundle, image)):
        with pytest.raises(ValueError, match=says):
            call()


def test_wrong_size_for_a_fixed_size_model(pixels):
    model = keras.Model(*small_body())
    with pytest.raises(ValueError, match=r"16×16"):
        cnnviz.gradcam(model, np.zeros((1, 20, 20, 3)), layer="conv", score=lambda out: out[:, 0])


def test_grey_model_works():
    inputs, features = small_body(channels=1)
    model = keras.Model(inputs, keras.layers.Dense(3)(features))
    grey = np.random.default_rng(1).random((2, 16, 16, 1)).astype("float32")
    heatmaps = cnnviz.gradcam(model, grey, layer="conv", class_index=0)
    assert heatmaps.shape == (2, 14, 14) and np.isfinite(heatmaps).all()


def test_model_without_layers():
    inputs = keras.Input((16, 16, 3))
    for model in (keras.Model(inputs, inputs), keras.Sequential()):
        with pytest.raises(ValueError, match="no spatial"):
            cnnviz.gradcam(model, np.zeros((1, 16, 16, 3)))


def test_multi_input_model():
    a, b = keras.Input((16, 16, 3)), keras.Input((4,))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(a))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([features, b])))
    with pytest.raises(ValueError, match="2 inputs"):
        cnnviz.gradcam(model, np.zeros((1, 16, 16, 3)), layer="conv")


def test_multi_output_model_needs_output_argument(pixels):
    keras.utils.set_random_seed(2)
    inputs, features = small_body()
    first = keras.layers.Dense(5, activation="softmax", name="species")(features)
    second = keras.layers.Dense(1, name="size")(features)
    model = keras.Model(inputs, [first, second])
    with pytest.raises(ValueError, match="'species', 'size'"):
        cnnviz.gradcam(model, pixels, layer="conv", class_index=1)
    alone = keras.Model(inputs, first)  # same layers, one output
    np.testing.assert_allclose(cnnviz.gradcam(model, pixels, layer="conv", class_index=1, output="species"),
                               cnnviz.gradcam(alone, pixels, layer="conv", class_index=1), atol=1e-6)
    by_index = cnnviz.gradcam(model, pixels, layer="conv", output=1, score=lambda out: out[:, 0])
    assert by_index.shape == (2, 14, 14)
    with pytest.raises(ValueError, match="output"):
        cnnviz.gradcam(model, pixels, layer="conv", output="nope")


# ---- load_image and load_model --------------------------------------------------------------------
def test_int_size_is_square_and_bad_sizes_fail():
    assert cnnviz.load_image("cat", size=100).shape == (100, 100, 3)
    for size in [(0, 224), (224, -1), (224,), 0, "224", (224.5, 224)]:
        with pytest.raises(ValueError, match="size"):
            cnnviz.load_image("cat", size=size)


def test_arrays_pil_images_and_bytes(cat):
    photo = cat.astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="png")
    for source in (photo, cat, Image.fromarray(photo), buffer.getvalue()):
        np.testing.assert_allclose(cnnviz.load_image(source), photo, atol=0.5)
    assert cnnviz.load_image(photo[..., 0]).shape == (224, 224, 3)  # a grey array
    with pytest.raises(ValueError, match="image"):
        cnnviz.load_image(b"not an image")
    with pytest.raises(ValueError, match="shape"):
        cnnviz.load_image(np.zeros((4, 4, 3, 2)))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_png_transparency_key_is_composited_on_white(tmp_path, mode):
    image = Image.new(mode, (8, 8), (10, 20, 30) if mode == "RGB" else 40)
    key = (10, 20, 30) if mode == "RGB" else 40
    image.save(tmp_path / "keyed.png", transparency=key)
    assert (cnnviz.load_image(tmp_path / "keyed.png") == 255).all()  # fully transparent → white


def test_too_long_file_name():
    with pytest.raises(ValueError, match="too long") as error:
        cnnviz.load_image("x" * 300 + ".png")
    assert "/tmp" not in str(error.value)


def test_huge_image_is_reduced_on_open(tmp_path):
    Image.new("RGB", (6000, 4000), (200, 100, 50)).save(tmp_path / "big.jpg", quality=80)
    small = cnnviz.load_image(tmp_path / "big.jpg", size=(224, 224))
    assert small.shape == (224, 224, 3) and abs(small.mean(axis=(0, 1)) - [200, 100, 50]).max() < 3
    with pytest.warns(UserWarning, match="6000×4000"):
        full = cnnviz.load_image(tmp_path / "big.jpg")
    assert max(full.shape) <= cnnviz.images.MAX_SIDE


def test_load_model_weights_paths(tmp_path, bundle):
    with pytest.raises(FileNotFoundError, match="weights"):
        cnnviz.load_model("vgg16", weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(FileNotFoundError, match="weights"):
        cnnviz.load_model(weights=tmp_path / "missing.weights.h5")
    path = tmp_path / "lite0.weights.h5"
    bundle.model.save_weights(path)
    again = cnnviz.load_model(weights=path)
    np.testing.assert_array_equal(again.model.get_layer("logits").get_weights()[0],
                                  bundle.model.get_layer("logits").get_weights()[0])
    with pytest.raises(ValueError, match="weights"):
        cnnviz.load_model(weights="imagenet21k")


# ---- robust filter mode ---------------------------------------------------------------------------
def test_robust_filter_does_not_depend_on_its_batch(bundle):
    common = dict(size=48, steps=4, seed=3, robust=True, progress=False)
    alone = cnnviz.visualize_filters(bundle, "block2a_project_bn", [5], **common)
    batch = cnnviz.visualize_filters(bundle, "block2a_project_bn", list(range(16)), **common)
    assert np.abs(alone.images[0].astype(int) - batch.images[5].astype(int)).max() <= 2


def test_explorer_refuses_non_finite_photos(bundle, cat):
    image = cat.copy()
    image[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        cnnviz.ClassExplorer(bundle, image=image)
    grey = np.full((32, 32), 0.5, "float32")
    grey[1, 1] = np.inf
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="F").save(buffer, format="tiff")
    explorer = cnnviz.ClassExplorer(bundle)
    content = buffer.getvalue()
    explorer.upload.value = ({"name": "grey.tiff", "type": "image/tiff", "size": len(content),
                              "content": memoryview(content), "last_modified": datetime.datetime.now()},)
    assert "NaN or infinite" in explorer.message and explorer.image_name == "cat_and_coffee"

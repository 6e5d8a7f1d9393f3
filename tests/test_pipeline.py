"""The one pipeline every heatmap method runs on (cnnviz/methods/base.py), tested method by method.

Every test is parametrised over ``cnnviz.METHODS``: a method added to the registry inherits all of it.
Tiny seeded networks (tests/nets.py) and cheap options (CHEAP) keep the file fast.
"""
import contextlib
import math
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import cnnviz
from cnnviz.layers import _walk
from cnnviz.methods import METHODS, EmptyMapWarning
from cnnviz.taps import ProbabilityWarning
from nets import constant_score_model, logits_model, nested_versions, random_images, tiny_base, tiny_classifier
from nets import tiny_relu6_bundle

NAMES = list(METHODS)
CHEAP = {"scorecam": {"batch_size": 4}, "smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 4},
         "occlusion": {"patch": 4, "stride": 2}, "rise": {"masks": 16}}
# Values each declared option must refuse with a ValueError naming it (a new option must be added here).
BAD_OPTIONS = {
    "batch_size": [0, -1, 2.0, True], "samples": [0, 3.0], "steps": [0, 4.0], "masks": [0, 16.0], "grid": [0, 7.0],
    "channels": [0, 2.5], "noise": [-0.1, math.nan], "keep": [0, 1.5], "seed": [-1, 1.5], "absolute": ["no"],
    "baseline": [np.full((10, 10, 3), np.nan)], "patch": [0, 11, 4.0], "stride": [0, 2.0], "fill": ["grey", math.nan],
}
TRACE = ("Traceback", 'File "', "autograph", "Graph execution error", "{{node", "tf.function", "NoneType")


def call(name, model, images, layer="conv2", **kwargs):
    """METHODS[name] with the cheap options, ``layer`` only for methods that take one."""
    method = METHODS[name]
    kwargs = {**CHEAP.get(name, {}), **kwargs}
    return method(model, images, layer, **kwargs) if method.uses_layer else method(model, images, **kwargs)


@contextlib.contextmanager
def refused(match, error=ValueError):
    """The call raises ``error`` matching ``match``, in plain words (no TensorFlow or autograph trace)."""
    with pytest.raises(error, match=match) as caught:
        yield
    text = str(caught.value)
    assert not any(bit in text for bit in TRACE), f"trace-like message: {text[:500]}"


def close(a, b, tolerance=1e-5):
    """Max difference below ``tolerance`` relative to the maps' scale (IG and occlusion maps are raw)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    return float(np.abs(a - b).max()) <= tolerance * max(1.0, float(np.abs(b).max()))


def head_model(*tail, size=10):
    """tiny_base → GAP → Dense(5) "head" → ``tail`` layers; and the same model ending at the logits."""
    base = tiny_base(size)
    logits = keras.layers.Dense(5, name="head")(keras.layers.GlobalAveragePooling2D()(base.output))
    x = logits
    for layer in tail:
        x = layer(x)
    return keras.Model(base.input, x), keras.Model(base.input, logits)


@pytest.fixture(scope="module")
def tiny():
    return tiny_classifier()


@pytest.fixture(scope="module")
def images():
    return random_images(3)


# ---- 1. calling convention --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["keras", "bundle"])
@pytest.mark.parametrize("name", NAMES)
def test_calling_convention(name, kind, tiny):
    """One image → one 2-D map, a batch → (N, …), at the layer's (h, w) or the image's (H, W); normalize=True
    in [0, 1] with max 1, False ≥ 0 unless signed; class_index=None is each image's top class by logits."""
    method = METHODS[name]
    if kind == "keras":
        model, logits, size, cells, layer = tiny, logits_model(tiny), 10, 6, "conv2"
        batch = random_images(3)
    else:
        model = tiny_relu6_bundle()
        logits, size, cells, layer = logits_model(model.model), 9, 5, "relu6"
        batch = random_images(3, 9, 0, 255)
    shape = (cells, cells) if method.at_layer else (size, size)
    assert call(name, model, batch[0], layer).shape == shape
    maps = call(name, model, batch, layer, normalize=True)
    assert maps.shape == (3, *shape) and maps.dtype == np.float32
    assert maps.min() >= 0 and np.allclose(maps.reshape(3, -1).max(axis=1)[maps.reshape(3, -1).any(axis=1)], 1)
    raw = call(name, model, batch, layer, normalize=False)
    assert np.isfinite(raw).all() and (method.signed or raw.min() >= 0)
    pixels = model.preprocess(batch) if kind == "bundle" else batch
    top = np.asarray(logits(pixels)).argmax(axis=-1)
    assert close(call(name, model, batch, layer), call(name, model, batch, layer, class_index=top))


# ---- 2. images --------------------------------------------------------------------------------------
BAD_IMAGES = {
    "4 channels": (np.zeros((10, 10, 4)), "channel"), "1 channel": (np.zeros((10, 10, 1)), "channel"),
    "NaN": (np.full((10, 10, 3), np.nan), "NaN or infinite"), "inf": (np.full((10, 10, 3), np.inf), "NaN or infinite"),
    "empty batch": (np.zeros((0, 10, 10, 3)), "empty"), "2-D": (np.zeros((10, 10)), "shape"),
    "5-D": (np.zeros((1, 1, 10, 10, 3)), "shape"), "wrong size": (np.zeros((12, 12, 3)), "10×10"),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
@pytest.mark.parametrize("name", NAMES)
def test_bad_images_are_refused(name, case, tiny):
    """Images the model cannot take raise a ValueError saying why, never a tf.function binding TypeError or
    a TensorFlow InvalidArgumentError."""
    images, match = BAD_IMAGES[case]
    with refused(match):
        call(name, tiny, images.astype("float32"))


# ---- 3. targets -------------------------------------------------------------------------------------
def _nan_for_image_1(value):
    return lambda out: tf.where(tf.range(tf.shape(out)[0]) == 1, tf.constant(value, out.dtype), out[:, 0])


BAD_TARGETS = {
    "class -1": ({"class_index": -1}, "out of range"), "class 1000": ({"class_index": 1000}, "out of range"),
    "float class": ({"class_index": 2.0}, "whole numbers"), "bool class": ({"class_index": True}, "whole numbers"),
    "class and score": ({"class_index": 0, "score": lambda out: out[:, 0]}, "not both"),
    "(N, 2) score": ({"score": lambda out: out[:, :2]}, "one map per image"),
    "scalar score": ({"score": lambda out: tf.reduce_sum(out)}, "one value per image"),
    "int score": ({"score": lambda out: tf.cast(out[:, 0], tf.int32)}, "floats"),
    "bool score": ({"score": lambda out: out[:, 0] > 0.2}, "floats"),
    "string score": ({"score": lambda out: "high"}, "floats|one value per image"),
    "raising score": ({"score": lambda out: 1 / 0}, "score failed"),
    "NaN score": ({"score": _nan_for_image_1(np.nan)}, r"NaN or infinite for image\S* \[1\]"),
    "inf score": ({"score": _nan_for_image_1(np.inf)}, r"NaN or infinite for image\S* \[1\]"),
}


@pytest.mark.parametrize("case", BAD_TARGETS)
@pytest.mark.parametrize("name", NAMES)
def test_bad_targets_are_refused(name, case, tiny, images):
    """A class or score that cannot give one finite value per image raises a one-line ValueError (the NaN
    one naming the image), never a NaN or all-zero map or an autograph trace."""
    kwargs, match = BAD_TARGETS[case]
    with refused(match):
        call(name, tiny, images, **kwargs)


# ---- 4. probabilities -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_a_softmax_cnnviz_cannot_take_off_warns(name, images):
    """A Lambda(lambda x: softmax(x)) head hides the logits: the maps explain probabilities, and a
    ProbabilityWarning says so, once per model. (CAM reads the Dense weights themselves: it explains the
    logits, says nothing, and gives the logits model's maps.)"""
    model, logits = head_model(keras.layers.Lambda(lambda x: keras.ops.softmax(x)))
    if name == "cam":
        with warnings.catch_warnings():
            warnings.simplefilter("error", ProbabilityWarning)
            np.testing.assert_allclose(call(name, model, images), call(name, logits, images), atol=1e-5)
        return
    with pytest.warns(ProbabilityWarning, match="softmax"):
        call(name, model, images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbabilityWarning)
        call(name, model, images)


HEADS = {"Softmax → Reshape": lambda: [keras.layers.Softmax(), keras.layers.Reshape((5,))],
         "Softmax → Identity": lambda: [keras.layers.Softmax(), keras.layers.Identity()],
         "log_softmax": lambda: [keras.layers.Activation("log_softmax")]}


@pytest.fixture(scope="module")
def heads():
    return {kind: head_model(*make()) for kind, make in HEADS.items()}


@pytest.mark.parametrize("kind", HEADS)
@pytest.mark.parametrize("name", NAMES)
def test_squashes_are_taken_off(name, kind, heads, images):
    """A softmax followed by Reshape or Identity, or a log-softmax, is taken off: the maps are the logits'."""
    model, logits = heads[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbabilityWarning)
        assert close(call(name, model, images), call(name, logits, images))


# ---- 5. output= -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_outputs():
    base = tiny_base()
    features = keras.layers.GlobalAveragePooling2D()(base.output)
    species = keras.layers.Softmax(name="species")(keras.layers.Dense(5, name="head")(features))
    size = keras.layers.Dense(1, name="size")(features)
    return keras.Model(base.input, [species, size]), keras.Model(base.input, species)


@pytest.mark.parametrize("name", NAMES)
def test_output_picks_one_output(name, two_outputs, images):
    """A two-output model needs output=: without it, or with a wrong one, a ValueError listing the outputs;
    output="species" or output=0 gives the maps of the model with that output alone."""
    model, single = two_outputs
    with refused("'species'.*'size'"):
        call(name, model, images)
    with refused("nope"):
        call(name, model, images, output="nope")
    expected = call(name, single, images)
    assert close(call(name, model, images, output="species"), expected)
    assert close(call(name, model, images, output=0), expected)


# ---- 6. channels_first ------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["model's (3, H, W)", "photo's (H, W, 3)"])
@pytest.mark.parametrize("name", NAMES)
def test_channels_first_is_refused(name, layout):
    """cnnviz reads activations as (N, h, w, c): a channels_first model is refused by name, whichever layout
    the images come in (not with a misleading "takes 10-channel images")."""
    inputs = keras.Input((3, 10, 10))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", activation="relu", name="conv2")(inputs)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    images = np.zeros((2, 3, 10, 10) if layout.startswith("model") else (2, 10, 10, 3), "float32")
    with refused("channels_first"):
        call(name, model, images)


# ---- 7. options -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_is_a_type_error(name, tiny, images):
    """A misspelt option is a TypeError naming it, never silently ignored."""
    with pytest.raises(TypeError, match="bogus"):
        call(name, tiny, images, bogus=1)


BAD_OPTION_CASES = [(name, option, value) for name in NAMES for option in METHODS[name].options
                    for value in BAD_OPTIONS.get(option, [None])]


@pytest.mark.parametrize("name, option, value", BAD_OPTION_CASES,
                         ids=[f"{n}-{o}-{np.shape(v) or v!r}" for n, o, v in BAD_OPTION_CASES])
def test_bad_option_values_are_refused(name, option, value, tiny, images):
    """Each declared option refuses bad values (0 counts, floats for counts, negative noise, keep=0, a NaN
    baseline, a patch larger than the image) with a ValueError naming it: no `x or default` replacement."""
    assert option in BAD_OPTIONS, f"add bad values of {name}'s new option {option!r} to BAD_OPTIONS"
    default, check = METHODS[name].options[option]
    check(option, default)  # the default itself passes
    with refused(option):
        call(name, tiny, images, **{option: value})


# ---- 8. empty maps ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def constant():
    return constant_score_model()


@pytest.mark.parametrize("name", NAMES)
def test_empty_maps_warn_at_the_callers_line(name, constant, images):
    """A score independent of the image gives all-zero maps (no NaN) and an EmptyMapWarning pointing at the
    caller's file; RISE's map is then the masks' average, not empty, and gives no warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = call(name, constant, images, layer="dead")
    empty = [w for w in caught if issubclass(w.category, EmptyMapWarning)]
    assert np.isfinite(maps).all()
    if name == "rise":
        assert not empty and maps.reshape(3, -1).any(axis=1).all()
        return
    assert not maps.any(), f"max {maps.max()}"
    assert empty, f"no EmptyMapWarning; warnings: {[str(w.message)[:80] for w in caught]}"
    assert {w.filename for w in empty} == {__file__}


# ---- 9. awkward models ------------------------------------------------------------------------------
FIRST_LAYERS = {"ZeroPadding2D": lambda: keras.layers.ZeroPadding2D(1, name="first"),
                "Rescaling": lambda: keras.layers.Rescaling(1 / 2, name="first"),
                "MaxPooling2D": lambda: keras.layers.MaxPooling2D(2, name="first")}


@pytest.fixture(scope="module")
def first_layer_models():
    models = {}
    for kind, make in FIRST_LAYERS.items():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(make()(inputs))
        x = keras.layers.Dense(5, name="head")(keras.layers.GlobalAveragePooling2D()(x))
        models[kind] = keras.Model(inputs, keras.layers.Softmax()(x))
    return models


@pytest.mark.parametrize("kind", FIRST_LAYERS)
@pytest.mark.parametrize("name", NAMES)
def test_a_weightless_first_layer(name, kind, first_layer_models):
    """layer= a weightless layer right after the input gives a map ('NoneType' is not subscriptable once);
    CAM refuses it as any layer not followed by GAP → Dense."""
    model = first_layer_models[kind]
    if name == "cam":
        with refused("GlobalAveragePooling2D"):
            call(name, model, random_images(2, 16), layer="first")
        return
    maps = call(name, model, random_images(2, 16), layer="first")
    cells = tuple(model.get_layer("first").output.shape[1:3])
    assert maps.shape == (2, *(cells if METHODS[name].at_layer else (16, 16))) and np.isfinite(maps).all()


@pytest.mark.parametrize("name", NAMES)
def test_an_image_too_small_for_the_pooling(name):
    """A 1×1 image on a model pooling 4×4 "valid" is a ValueError saying it is too small (no AbortedError)."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.MaxPooling2D(4)(keras.layers.Conv2D(4, 1, activation="relu", name="conv1")(inputs))
    x = keras.layers.Conv2D(4, 1, activation="relu", name="conv2")(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x)))
    with refused("small"):
        call(name, model, np.ones((1, 1, 3), "float32"))


@contextlib.contextmanager
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def half():
    with mixed_float16():
        model = tiny_classifier()
    full = tiny_classifier()
    full.set_weights(model.get_weights())
    return model, full


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision(name, half, images):
    """A model built under mixed_float16 gives float32 maps close to the float32 model's."""
    model, full = half
    with mixed_float16():
        maps = call(name, model, images)
    assert maps.dtype == np.float32 and np.isfinite(maps).all()
    assert close(maps, call(name, full, images), tolerance=0.05)


@pytest.fixture(scope="module")
def same_names():
    """base (conv1 → conv2) nested in an outer model with its own "conv2"; a flat copy with unique names."""
    base = tiny_base()
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv2")(base(inputs))
    x = keras.layers.Dense(5, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    nested = keras.Model(inputs, keras.layers.Softmax()(x))
    flat = keras.Sequential([keras.Input((10, 10, 3))] + [
        keras.layers.Conv2D(channels, 3, activation="relu", name=layer_name)
        for channels, layer_name in ((4, "inner1"), (6, "inner2"), (3, "outer"))]
        + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5, name="head")])
    flat.set_weights(nested.get_weights())
    return nested, flat


@pytest.mark.parametrize("name", NAMES)
def test_a_layer_name_used_twice(name, same_names, images):
    """Inner and outer "conv2": a ValueError saying the name is used twice, or the maps of one of the two
    layers (input methods, which take no layer: the flat model's maps)."""
    nested, flat = same_names
    try:
        maps = call(name, nested, images)
    except ValueError as error:
        text = str(error)
        assert "conv2" in text and re.search("2 times|2 layers are named|twice|ambiguous|more than one|several", text), text
        assert not any(bit in text for bit in TRACE), text
        return
    candidates = ["inner2", "outer"] if METHODS[name].uses_layer else ["outer"]
    matches = [c for c in candidates if close(maps, call(name, flat, images, layer=c))]
    assert matches, "maps match neither the inner nor the outer conv2"


# ---- 10. determinism --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_maps_are_reproducible(name, tiny, images):
    """The same call twice gives identical maps; an image alone or inside a batch of 3, and (methods with
    batch_size) at batch_size 1 or 7, give the same map (seeded noise depends on the seed only)."""
    first = call(name, tiny, images)
    assert np.array_equal(first, call(name, tiny, images))
    assert close(call(name, tiny, images[1]), first[1])
    if "batch_size" in METHODS[name].options:
        assert close(call(name, tiny, images, batch_size=1), call(name, tiny, images, batch_size=7))


# ---- 11. the user's model is left alone -------------------------------------------------------------
def fingerprint(model):
    layers = [layer for layer, _ in _walk(model)]
    return ([len(m.layers) for m in [model, *layers] if isinstance(m, keras.Model)],
            [(layer.name, len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers],
            [w.copy() for w in model.get_weights()])


@pytest.mark.parametrize("kind", ["flat", "nested"])
@pytest.mark.parametrize("name", NAMES)
def test_the_model_is_not_mutated(name, kind, images):
    """Layer counts, every layer's node lists and the weights are the same after the method ran."""
    model = tiny_classifier() if kind == "flat" else nested_versions(tiny_classifier(), "conv2")[0]
    before = fingerprint(model)
    call(name, model, images)
    call(name, model, images, class_index=1, normalize=False)
    after = fingerprint(model)
    assert after[:2] == before[:2]
    assert all(np.array_equal(a, b) for a, b in zip(after[2], before[2]))


# ---- 12. explain_classes ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_explain_classes(name, tiny, images):
    """explain_classes gives (k, …) raw maps (≥ 0 unless signed) whose max-normalised versions are the
    single-class maps."""
    method, classes = METHODS[name], [0, 2, 4]
    layer = "conv2" if method.uses_layer else None
    raw = cnnviz.explain_classes(name, tiny, images[0], classes=classes, layer=layer, **CHEAP.get(name, {}))
    assert raw.shape == (3, *call(name, tiny, images[0]).shape)
    assert method.signed or raw.min() >= 0
    for maps, c in zip(cnnviz.normalise(raw), classes):
        assert close(maps, call(name, tiny, images[0], class_index=c, normalize=True)), f"class {c}"

import warnings
"""cnnviz.trust: curves against a slow reference, known-bad maps score worse, pointing, cascade, errors."""
import keras
import numpy as np
import pytest

import cnnviz
from cnnviz import trust
from cnnviz.trust import randomization
from cnnviz.models import class_names

ESPRESSO, TIGER_CAT = class_names().index("espresso"), class_names().index("tiger_cat")


# ---------------------------------------------------------------- a tiny model and a slow reference
@pytest.fixture(scope="module")
def tiny():
    """A bare Keras model on 8×8 inputs, ending in a Softmax layer, with fixed random weights."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, keras.layers.Softmax()(logits))


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(3)
    return rng.uniform(-1, 1, (3, 8, 8, 3)).astype("float32"), rng.random((3, 8, 8)).astype("float32")


def slow_curve(model, image, heatmap, class_index, steps, background, insert):
    """Pixel by pixel, one eager forward pass per step: the formula written out."""
    pixels = sorted(range(heatmap.size), key=lambda p: -heatmap.ravel()[p])  # stable: ties in reading order
    width = heatmap.shape[1]
    scores = []
    for s in range(steps + 1):
        changed = (background if insert else image).copy()
        for p in pixels[:round(s / steps * heatmap.size)]:
            changed[p // width, p % width] = (image if insert else background)[p // width, p % width]
        scores.append(float(keras.ops.convert_to_numpy(model(changed[None]))[0, class_index]))
    return np.array(scores)


@pytest.mark.parametrize("insert", [False, True])
@pytest.mark.parametrize("baseline", ["grey", "array"])
def test_curves_match_a_slow_reference(tiny, tiny_data, insert, baseline):
    images, maps = tiny_data
    background = np.random.default_rng(5).uniform(-1, 1, (8, 8, 3)).astype("float32")
    curve = trust.insertion_curve if insert else trust.deletion_curve
    fractions, scores = curve(tiny, images, maps, class_index=[0, 3, 4], steps=4,
                              baseline=background if baseline == "array" else "grey")
    np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75, 1])
    assert scores.shape == (3, 5)
    expected = background if baseline == "array" else np.zeros_like(background)  # a bare model's grey is 0
    for image, heatmap, class_index, row in zip(images, maps, [0, 3, 4], scores):
        np.testing.assert_allclose(row, slow_curve(tiny, image, heatmap, class_index, 4, expected, insert), atol=1e-6)


def test_default_class_is_the_top_class_on_the_image(tiny, tiny_data):
    images, maps = tiny_data
    top = keras.ops.convert_to_numpy(tiny(images)).argmax(axis=1)
    for curve in (trust.deletion_curve, trust.insertion_curve):
        np.testing.assert_allclose(curve(tiny, images, maps, steps=3)[1],
                                   curve(tiny, images, maps, class_index=top, steps=3)[1], atol=1e-7)


def test_low_resolution_maps_are_upsampled_and_ranked(tiny, tiny_data):
    images, _ = tiny_data
    small = np.random.default_rng(7).random((3, 4, 4)).astype("float32") * 5 - 2  # any range
    big = np.stack([cnnviz.upsample((m - m.min()) / (m.max() - m.min()), (8, 8)) for m in small])
    np.testing.assert_allclose(trust.deletion_curve(tiny, images, small, steps=8)[1],
                               trust.deletion_curve(tiny, images, big, steps=8)[1], atol=1e-7)


def test_insertion_of_a_map_is_deletion_of_its_inverse(tiny, tiny_data):
    images, maps = tiny_data  # continuous maps: no ties, so the same images are shown in reverse order
    fractions, inserted = trust.insertion_curve(tiny, images, maps, steps=8, baseline="blur")
    _, deleted = trust.deletion_curve(tiny, images, 1 - maps, steps=8, baseline="blur")
    np.testing.assert_allclose(inserted, deleted[:, ::-1], atol=1e-7)


def test_curve_auc_is_the_trapezoid_area():
    fractions = np.linspace(0, 1, 5)
    scores = np.array([[1, 1, 1, 1, 1], [1, 0.75, 0.5, 0.25, 0], [0, 0, 0, 0, 1]])
    np.testing.assert_allclose(trust.curve_auc(fractions, scores), [1, 0.5, 0.125])


@pytest.mark.parametrize("bad, message", [
    ({"steps": 0}, "steps must be a whole number >= 1"),
    ({"steps": 2.5}, "steps must be a whole number >= 1"),
    ({"baseline": "white"}, "unknown baseline 'white'"),
    ({"baseline": np.zeros((5, 5, 3))}, "does not match the images"),
    ({"maps": np.ones((2, 8, 8))}, "must be 3 heatmaps"),
    ({"maps": np.full((3, 8, 8), np.nan)}, "NaN"),
    ({"class_index": 5}, "out of range: the model has 5 classes \\(0 … 4\\)"),
    ({"class_index": [1, 2]}, "3 ints"),
])
def test_bad_curve_arguments_raise(tiny, tiny_data, bad, message):
    images, maps = tiny_data
    arguments = {"maps": maps, **bad}
    for curve in (trust.deletion_curve, trust.insertion_curve):
        with pytest.raises(ValueError, match=message):
            curve(tiny, images, **arguments)


# ---------------------------------------------------------------- Lite0: Grad-CAM against known-bad maps
@pytest.fixture(scope="module")
def photos(cat, coffee):
    return np.stack([cat, coffee])


@pytest.fixture(scope="module")
def maps(bundle, photos):
    gradcam = cnnviz.gradcam(bundle, photos)
    return {"gradcam": gradcam, "inverted": 1 - gradcam,
            "random": np.random.default_rng(0).random(gradcam.shape).astype("float32")}


@pytest.fixture(scope="module")
def areas(bundle, photos, maps):
    """{(curve, map): AUC (2,)} with the blur baseline, 16 steps."""
    return {(curve.__name__, name): trust.curve_auc(*curve(bundle, photos, heatmaps, steps=16))
            for curve in (trust.deletion_curve, trust.insertion_curve) for name, heatmaps in maps.items()}


def test_curves_start_and_end_where_they_must(bundle, photos, maps):
    fractions, deleted = trust.deletion_curve(bundle, photos, maps["gradcam"], steps=3, baseline="grey")
    _, inserted = trust.insertion_curve(bundle, photos, maps["gradcam"], steps=3, baseline="grey")
    # independently: the model's own softmax output, eager, on the photos and on a grey image
    grey = np.full((1, 224, 224, 3), 127.5, "float32")
    probabilities = keras.ops.convert_to_numpy(bundle.model(bundle.preprocess(np.concatenate([photos, grey]))))
    top = probabilities[:2].argmax(axis=1)
    np.testing.assert_array_equal(top, [TIGER_CAT, ESPRESSO])
    np.testing.assert_allclose(deleted[:, 0], probabilities[[0, 1], top], rtol=1e-4)
    np.testing.assert_allclose(inserted[:, -1], probabilities[[0, 1], top], rtol=1e-4)
    for row in (deleted[:, -1], inserted[:, 0]):  # everything removed: the grey image's probability
        np.testing.assert_allclose(row, probabilities[2, top], rtol=1e-3)


def test_gradcam_beats_the_inverted_map_on_both_curves(areas):
    assert (areas["deletion_curve", "gradcam"] < areas["deletion_curve", "inverted"]).all()
    assert (areas["insertion_curve", "gradcam"] > areas["insertion_curve", "inverted"]).all()


def test_gradcam_beats_a_random_map(areas):
    # on average over the photos (on the cat alone a random 7×7 map deletes almost as fast: 0.106 vs 0.096)
    assert areas["deletion_curve", "gradcam"].mean() < areas["deletion_curve", "random"].mean()
    assert areas["insertion_curve", "gradcam"].mean() > areas["insertion_curve", "random"].mean()


def test_confidence_change(bundle, photos, maps):
    good = trust.confidence_change(bundle, photos, maps["gradcam"], class_index=[TIGER_CAT, ESPRESSO])
    bad = trust.confidence_change(bundle, photos, maps["inverted"], class_index=[TIGER_CAT, ESPRESSO])
    # independent: the explanation image image · map, scored by the model's own (softmax) output
    # each cell on its receptive field's centre (Lite0: pixel 32j + 31), as trust places maps of a known model
    masks = np.stack([cnnviz.upsample(m / m.max(), (224, 224), bundle, "top_activation")
                      for m in maps["gradcam"]])[..., None]
    outputs = keras.ops.convert_to_numpy(bundle.model(bundle.preprocess(np.concatenate([photos * masks, photos]))))
    explained, original = outputs[[0, 1], [TIGER_CAT, ESPRESSO]], outputs[[2, 3], [TIGER_CAT, ESPRESSO]]
    np.testing.assert_allclose(good.explained, explained, rtol=1e-4)
    np.testing.assert_allclose(good.original, original, rtol=1e-4)
    assert good.average_drop == pytest.approx(np.mean(np.maximum(0, original - explained) / original) * 100, rel=1e-3)
    assert good.increase == 100 * np.mean(explained > original)
    assert good.average_drop < bad.average_drop and good.increase >= bad.increase


# ---------------------------------------------------------------- pointing game and mass in box
def test_pointing_game_and_mass_in_box_by_hand():
    heatmap = np.zeros((4, 4), "float32")
    heatmap[1, 3] = 1  # the peak, upsampled to 8×8, lies in the top-right quarter
    boxes = [[0, 4, 4, 8], [4, 0, 8, 4]]
    np.testing.assert_array_equal(trust.pointing_game(np.stack([heatmap] * 2), boxes, (8, 8), tolerance=0),
                                  [True, False])
    full = cnnviz.upsample(heatmap, (8, 8))
    row, column = np.unravel_index(full.argmax(), full.shape)
    beside = [row, column - 3, row + 1, column]  # the peak's pixel is just right of this box
    assert trust.pointing_game(heatmap, beside, (8, 8), tolerance=0) == [False]
    assert trust.pointing_game(heatmap, beside, (8, 8), tolerance=1) == [True]
    np.testing.assert_allclose(trust.mass_in_box(np.stack([heatmap] * 2), boxes, (8, 8)),
                               [full[:4, 4:].sum() / full.sum(), full[4:, :4].sum() / full.sum()], rtol=1e-6)
    assert trust.mass_in_box(np.zeros((1, 4, 4)), [[0, 0, 8, 8]], (8, 8)) == [0]  # empty map: 0, not NaN


@pytest.mark.parametrize("box", [[0, 0, 9, 4], [-1, 0, 4, 4], [4, 0, 4, 8], [0, 5, 8, 2]])
def test_boxes_outside_the_image_raise(box):
    with pytest.raises(ValueError, match="inside the 8×8 image"):
        trust.pointing_game(np.ones((1, 4, 4)), [box], (8, 8))
    with pytest.raises(ValueError, match="inside the 8×8 image"):
        trust.mass_in_box(np.ones((1, 4, 4)), [box], (8, 8))


def test_one_box_per_map():
    with pytest.raises(ValueError, match="one per map"):
        trust.pointing_game(np.ones((3, 4, 4)), [[0, 0, 4, 4]] * 2, (8, 8))


def test_collage_puts_each_photo_in_its_half(bundle):
    image, boxes = trust.collage("cat", "coffee", (224, 224))
    assert image.shape == (224, 224, 3)
    np.testing.assert_array_equal(boxes, [[0, 0, 224, 112], [0, 112, 224, 224]])
    np.testing.assert_array_equal(image[:, :112], cnnviz.images.fit(cnnviz.load_image("cat"), (224, 112)))
    # close to the bundled collage, made the same way (resampling differs a little)
    assert np.abs(image - cnnviz.load_image("cat_and_coffee", size=(224, 224))).mean() < 2


def test_pointing_table_gradcam_hits_and_the_inverted_map_misses(bundle):
    table = trust.pointing_table(bundle)
    assert len(table) == 2 * len(trust.PAIRS)
    assert table[0][:3] == ("cat|coffee", "cat", "tiger_cat") and table[1][:3] == ("cat|coffee", "coffee", "espresso")
    assert all(row.hit for row in table) and min(row.mass for row in table) > 0.7

    def inverted(model, images, class_index, layer=None):
        return 1 - cnnviz.gradcam(model, images, class_index=class_index, layer=layer)

    bad = trust.pointing_table(bundle, method=inverted, layer="top_activation")
    assert sum(row.hit for row in bad) < len(bad) / 2
    assert np.mean([row.mass for row in bad]) < np.mean([row.mass for row in table])


def test_pointing_table_needs_a_bundle(bundle):
    with pytest.raises(TypeError, match="ModelBundle"):
        trust.pointing_table(bundle.model)


# ---------------------------------------------------------------- cascading randomisation
LITE0_BLOCKS = ["logits", "top", "block7a", "block6d", "block6c", "block6b", "block6a", "block5c", "block5b",
                "block5a", "block4c", "block4b", "block4a", "block3b", "block3a", "block2b", "block2a", "block1a",
                "stem"]


@pytest.fixture(scope="module")
def cascade(bundle, cat):
    weights = [w.copy() for w in bundle.model.get_weights()]
    steps = trust.cascading_randomization(bundle, cat[None], seed=0)
    return steps, weights


def test_cascade_steps_block_by_block_from_the_top(cascade):
    steps, _ = cascade
    assert [step.block for step in steps] == ["original", *LITE0_BLOCKS]
    assert all(step.correlation.shape == (1,) for step in steps)
    np.testing.assert_array_equal(steps[0].correlation, [1.0])


def test_gradcam_correlation_falls_towards_zero(cascade):
    steps, _ = cascade
    correlations = np.array([step.correlation[0] for step in steps[1:]])
    assert np.isfinite(correlations).all() and (np.abs(correlations) <= 1).all()
    assert np.abs(correlations[-5:]).mean() < 0.5 and np.abs(correlations).mean() < 0.5


def test_users_model_is_untouched(bundle, cascade):
    _, before = cascade
    after = bundle.model.get_weights()
    assert len(before) == len(after)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def test_cascade_is_deterministic_for_a_seed(tiny, tiny_data):
    images, _ = tiny_data

    def conv_map(model, images, class_index, layer=None):  # Grad-CAM of the tiny model's conv layer
        return cnnviz.gradcam(model, images, class_index=class_index, layer="conv")

    runs = [trust.cascading_randomization(tiny, images, method=conv_map, seed=seed) for seed in (4, 4, 5)]
    assert [step.block for step in runs[0]] == ["original", "logits", "conv"]
    for first, again in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(first.correlation, again.correlation)
    assert not np.array_equal(runs[0][-1].correlation, runs[2][-1].correlation)


def test_a_blank_map_of_a_randomised_network_scores_zero_without_a_warning(tiny, tiny_data):
    """Destroying the weights may blank a map: that is the test's outcome (ρ = 0), not a user's mistake."""
    images, _ = tiny_data

    def blank_once_random(model, images, class_index, layer=None):
        if model is tiny:
            return cnnviz.gradcam(model, images, class_index=class_index, layer="conv")
        warnings.warn("blank map", cnnviz.EmptyMapWarning)
        return np.zeros((len(images), 8, 8), "float32")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        steps = trust.cascading_randomization(tiny, images, method=blank_once_random)
    assert [step.block for step in steps] == ["original", "logits", "conv"]
    for step in steps[1:]:
        np.testing.assert_array_equal(step.correlation, np.zeros(len(images)))


def test_a_map_blind_to_the_model_fails_the_sanity_check(tiny, tiny_data):
    """An edge detector ignores the weights: ρ stays 1 however much of the model is destroyed."""
    images, _ = tiny_data

    def edges(model, images, class_index):
        return np.abs(np.diff(images.mean(axis=-1), axis=1))

    for step in trust.cascading_randomization(tiny, images, method=edges):
        np.testing.assert_allclose(step.correlation, 1.0)


def test_randomisation_uses_each_layers_initialisers(tiny):
    clone = keras.models.clone_model(tiny)
    layer = clone.get_layer("logits")
    for variable in layer.weights:
        init = randomization._initializer(layer, variable, seed=1)
        variable.assign(init(variable.shape, variable.dtype))
    np.testing.assert_array_equal(layer.bias.numpy(), 0)  # bias: zeros
    limit = np.sqrt(6 / (6 + 5))  # Glorot uniform of a 6 → 5 kernel
    assert np.abs(layer.kernel.numpy()).max() <= limit and layer.kernel.numpy().std() > limit / 4
    bn = keras.layers.BatchNormalization()
    bn.build((None, 3))
    values = {v.name: randomization._initializer(bn, v, seed=0)(v.shape, v.dtype) for v in bn.weights}
    assert [float(np.mean(values[n])) for n in ("gamma", "beta", "moving_mean", "moving_variance")] == [1, 0, 0, 1]


def test_constant_maps_correlate_zero_not_nan():
    flat, varied = np.zeros((1, 3, 3)), np.arange(9.0).reshape(1, 3, 3)
    np.testing.assert_array_equal(randomization._spearman(varied, flat), [0.0])
    np.testing.assert_allclose(randomization._spearman(varied, varied ** 2), [1.0])
    np.testing.assert_allclose(randomization._spearman(varied, -varied), [-1.0])


def test_cascade_reaches_into_a_nested_base_and_leaves_it_untouched():
    keras.utils.set_random_seed(2)
    base_input = keras.Input((8, 8, 3))
    base = keras.Model(base_input, keras.layers.Conv2D(4, 3, activation="relu", name="feature_conv")(base_input),
                       name="base")
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(pooled))
    before = [w.copy() for w in model.get_weights()]
    layers = [*model.layers, *base.layers]
    nodes = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]  # Keras' call records
    images = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    steps = trust.cascading_randomization(model, images, layer="feature_conv")
    assert [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers] == nodes
    assert [step.block for step in steps] == ["original", "head", "feature"]
    assert all(np.isfinite(step.correlation).all() for step in steps)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_pointing_table_names_classes_of_other_models(tiny):
    """A five-class model (no ImageNet names): classes are shown by index."""
    small = cnnviz.ModelBundle("tiny", tiny, (8, 8), lambda x: x / 127.5 - 1, "conv")
    table = trust.pointing_table(small, pairs=[("cat", "coffee")], layer="conv", tolerance=0)
    assert [row[:2] for row in table] == [("cat|coffee", "cat"), ("cat|coffee", "coffee")]
    assert {row.class_name for row in table} <= {"0", "1", "2", "3", "4"}

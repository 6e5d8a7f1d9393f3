"""Dreams (notebook 07): class images, diversity, DeepDream, feature inversion, adversarial examples.

Each against an independent formula or a property. Tiny seeded networks wherever the property holds on
them; EfficientNet-Lite0 (the ``bundle`` fixture) only where it needs a real network (attacks that change
the class of a photo, the folded batch norms).
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import cnnviz
from cnnviz.caching import per_model_cache
from cnnviz.dreams import (adversarial, class_visualization, deep_dream, diverse_visualization, gram_similarity,
                           invert_features, transform_robustness)
from cnnviz.dreams import attacks, class_images, common, deepdream
from cnnviz.models import ModelBundle
from nets import logits_model, preprocess, tiny_relu6_bundle


def flexible_classifier(classes: int = 5):
    """Any image size: conv1 (ReLU) → conv2 (ReLU) → conv3 → GAP → Dense ``head`` → Softmax; seeded."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(12, 3, name="conv3")(x)
    head = keras.layers.Dense(classes, name="head")
    x = head(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(x), name="flexible")
    head.kernel.assign(head.kernel * 20.0)  # logits of order 1: margins a test can see
    return model


@pytest.fixture(scope="module")
def tiny():
    """The flexible classifier as a bundle (pixels in [0, 255], preprocessed inside)."""
    return ModelBundle("flexible", flexible_classifier(), (32, 32), preprocess, "conv3")


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(5)
    smooth = tf.image.resize(rng.uniform(0, 255, (3, 8, 8, 3)).astype("float32"), (32, 32)).numpy()
    return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype("float32")


def logits_of(bundle, images):
    """Independent: the Keras model itself, eagerly, up to its logits (the Dense before the softmax)."""
    model = bundle.model
    head = "logits" if any(layer.name == "logits" for layer in model.layers) else "head"
    return keras.Model(model.input, model.get_layer(head).output)(bundle.preprocess(np.asarray(images)),
                                                                   training=False).numpy()


# ---- class model visualisation ------------------------------------------------------------------------------
def test_own_class_logit_rises(tiny):
    result = class_visualization(tiny, [0, 3, 4], size=32, steps=40, robust=False, l2=0.0, tv=0.0, seed=1)
    assert result.images.shape == (3, 32, 32, 3) and result.images.dtype == np.float32
    assert result.images.min() >= 0 and result.images.max() <= 255 and result.history.shape == (40, 3)
    np.testing.assert_allclose(result.logits, logits_of(tiny, result.images)[np.arange(3), [0, 3, 4]], atol=1e-3)
    assert np.all(result.logits > result.history[0] + 1.0)  # by a margin
    assert np.mean(np.diff(result.history, axis=0) > 0) > 0.9  # and (almost) every step


def test_priors_make_the_classic_image_smoother(tiny):
    def roughness(images):
        return np.mean(np.square(np.diff(images, axis=1))) + np.mean(np.square(np.diff(images, axis=2)))

    bare = class_visualization(tiny, [3], size=32, steps=30, robust=False, l2=0.0, tv=0.0)
    smooth = class_visualization(tiny, [3], size=32, steps=30, robust=False, tv=0.1)
    assert roughness(smooth.images) < 0.5 * roughness(bare.images)
    assert smooth.logits[0] > smooth.history[0, 0] + 1.0


def test_batch_of_classes_equals_one_at_a_time(tiny):
    batched = class_visualization(tiny, [1, 2], size=32, steps=8, robust=False)
    for i, c in enumerate([1, 2]):
        alone = class_visualization(tiny, c, size=32, steps=8, robust=False)
        np.testing.assert_allclose(batched.images[i], alone.images[0], atol=1e-3)


def test_class_images_deterministic_per_seed(tiny):
    for robust in (False, True):
        first, again, other = (class_visualization(tiny, [2], size=32, steps=4, robust=robust, seed=s)
                               for s in (3, 3, 4))
        np.testing.assert_array_equal(first.images, again.images)
        assert not np.array_equal(first.images, other.images)


def test_no_retracing_across_classes_or_calls(tiny):
    ascent = class_images._ascent(tiny.model, tiny.preprocess)
    class_visualization(tiny, [0, 1], size=32, steps=2, robust=False)
    class_visualization(tiny, [0, 1], size=32, steps=2, robust=True)
    traces = ascent.classic.experimental_get_tracing_count(), ascent.robust.experimental_get_tracing_count()
    for classes, steps in (([2, 3], 3), ([4, 0, 1], 2), ([1], 5)):  # other classes, batch sizes, step counts
        class_visualization(tiny, classes, size=32, steps=steps, robust=False, seed=7)
        class_visualization(tiny, classes, size=32, steps=steps, robust=True, seed=7)
    assert (ascent.classic.experimental_get_tracing_count(), ascent.robust.experimental_get_tracing_count()) == traces


def test_transform_robustness_against_the_model_itself(tiny, photos):
    result = transform_robustness(tiny, photos, [0, 1, 2], transforms=5, seed=2)
    probabilities = tiny.model(tiny.preprocess(photos)).numpy()
    np.testing.assert_allclose(result.untransformed, probabilities[np.arange(3), [0, 1, 2]], atol=1e-5)
    assert result.per_transform.shape == (3, 5)
    np.testing.assert_allclose(result.transformed, result.per_transform.mean(axis=1))
    still = transform_robustness(tiny, photos, 1, transforms=3, strength=0.0)  # identity transforms
    np.testing.assert_allclose(still.per_transform, still.untransformed[:, None].repeat(3, 1), atol=1e-5)
    again = transform_robustness(tiny, photos, [0, 1, 2], transforms=5, seed=2)
    np.testing.assert_array_equal(result.per_transform, again.per_transform)


def test_class_images_on_lite0(bundle):
    """The real network (folded batch norms, 1000 classes; the classic path shares it, tested on the tiny
    net): the robust logits rise, and agree with the model's own."""
    result = class_visualization(bundle, [1, 417], size=64, steps=16, robust=True)
    assert np.all(result.logits > result.history[0] + 3)
    assert np.mean(np.diff(result.history, axis=0) > 0) > 0.6  # mostly up: a new random transform each step,
    assert np.all(result.history[-4:].mean(0) > result.history[4:8].mean(0) + 3)  # but up over the run
    np.testing.assert_allclose(result.logits, logits_of(bundle, result.images)[[0, 1], [1, 417]], rtol=1e-3,
                               atol=1e-2)


# ---- diversity ----------------------------------------------------------------------------------------------
def grams_cosine(maps):
    """Independent: mean over pairs i ≠ j of the cosine of the flattened Gram matrices, in float64."""
    flat = maps.reshape(len(maps), -1, maps.shape[-1]).astype("float64")
    grams = np.einsum("npc,npd->ncd", flat, flat).reshape(len(maps), -1)
    grams /= np.linalg.norm(grams, axis=1, keepdims=True)
    pairs = [grams[i] @ grams[j] for i in range(len(maps)) for j in range(len(maps)) if i != j]
    return float(np.mean(pairs))


def test_gram_similarity_formula(tiny, photos):
    maps = keras.Model(tiny.model.input, tiny.model.get_layer("conv2").output)(preprocess(photos)).numpy()
    assert gram_similarity(tiny, photos, "conv2") == pytest.approx(grams_cosine(maps), abs=1e-5)
    same = np.repeat(photos[:1], 3, axis=0)
    assert gram_similarity(tiny, same, "conv2") == pytest.approx(1.0, abs=1e-5)


def test_diversity_penalty_makes_the_images_less_alike(tiny):
    # class 3: the one the tiny net can draw under random transforms (its other logits fall when moved)
    without = diverse_visualization(tiny, 3, n=3, layer="conv2", diversity=0.0, size=32, steps=40, seed=1)
    with_ = diverse_visualization(tiny, 3, n=3, layer="conv2", diversity=5.0, size=32, steps=40, seed=1)
    assert with_.similarity < without.similarity - 0.1 and with_.images.shape == (3, 32, 32, 3)
    assert without.similarity == pytest.approx(gram_similarity(tiny, without.images, "conv2"), abs=1e-5)
    assert np.all(with_.objective > with_.history[0] + 1.0)  # the class still climbs
    channel = diverse_visualization(tiny, channel=("conv3", 5), n=2, layer="conv1", diversity=0.0, size=32, steps=40)
    assert np.all(channel.objective > channel.history[0])


def test_diversity_no_retracing_across_classes_weights_or_calls(tiny):
    diverse_visualization(tiny, 1, n=2, layer="conv2", size=32, steps=2)
    net = common.network(tiny.model, tiny.preprocess, ("conv2",), logits=True)
    run = per_model_cache(tiny.model, "dreams.diversity")[net].run
    traces = run.experimental_get_tracing_count()
    for c, weight, steps in ((2, 0.0, 3), (4, 7.5, 2), (0, 1.0, 4)):
        diverse_visualization(tiny, c, n=2, layer="conv2", diversity=weight, size=32, steps=steps, seed=c)
    assert run.experimental_get_tracing_count() == traces


# ---- DeepDream ----------------------------------------------------------------------------------------------
def dream_loss(bundle, images, layer, trim):
    """Independent: keras.io's loss of one layer — Σ trimmed A² / |A| — through the Keras model, eagerly."""
    maps = keras.Model(bundle.model.input, bundle.model.get_layer(layer).output)(bundle.preprocess(images)).numpy()
    inner = maps[:, trim:maps.shape[1] - trim, trim:maps.shape[2] - trim]
    return np.sum(np.square(inner), axis=(1, 2, 3)) / np.prod(maps.shape[1:])


def test_deep_dream_raises_the_chosen_layer(tiny, photos):
    dream = deep_dream(tiny, photos[0], "conv3", octaves=2, octave_scale=1.3, steps=5, step=2.0, trim=1)
    assert dream.image.shape == photos[0].shape and dream.loss.shape == (10,)
    assert dream.shapes == [(24, 24), (32, 32)] and 0 <= dream.image.min() and dream.image.max() <= 255
    assert dream_loss(tiny, dream.image[None], "conv3", 1)[0] > 1.5 * dream_loss(tiny, photos[:1], "conv3", 1)[0]
    np.testing.assert_allclose(dream.loss[0], dream_loss(tiny, tf.image.resize(photos[:1], (24, 24)), "conv3", 1)[0],
                               rtol=1e-4)


def test_one_dream_step_is_the_keras_io_step(tiny, photos):
    """octaves=1, steps=1: x + η·g / max(mean |g|, 1e-6), g the gradient of keras.io's loss (eager, independent)."""
    weights = {"conv2": 1.0, "conv3": 2.5}
    x = tf.constant(photos[1:2])
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = 0.0
        for name, w in weights.items():
            maps = keras.Model(tiny.model.input, tiny.model.get_layer(name).output)(tiny.preprocess(x))
            loss += w * tf.reduce_sum(tf.square(maps[:, 2:-2, 2:-2])) / tf.cast(tf.size(maps), tf.float32)
    g = tape.gradient(loss, x).numpy()
    expected = np.clip(photos[1] + 1.5 * g[0] / max(np.abs(g).mean(), 1e-6), 0, 255)
    dream = deep_dream(tiny, photos[1], weights, octaves=1, steps=1, step=1.5)
    np.testing.assert_allclose(dream.image, expected, atol=1e-3)
    assert dream.loss[0] == pytest.approx(float(loss), rel=1e-4)


def test_deep_dream_one_trace_for_all_octaves_and_max_loss(tiny, photos):
    first = deep_dream(tiny, photos, ["conv3"], octaves=3, octave_scale=1.2, steps=2, trim=1)
    assert first.image.shape == photos.shape and first.loss.shape == (6, 3)
    net = common.network(tiny.model, tiny.preprocess, ("conv3",), logits=False)
    dreamer = per_model_cache(tiny.model, "dreams.deep_dream")[net]
    assert isinstance(dreamer, deepdream._Dreamer) and dreamer.octave.experimental_get_tracing_count() == 1
    start = deep_dream(tiny, photos[0], ["conv3"], octaves=1, steps=1, trim=1).loss[0]
    capped = deep_dream(tiny, photos[0], ["conv3"], octaves=1, steps=50, trim=1, max_loss=1.5 * float(start))
    assert 2 <= len(capped.loss) < 50 and capped.loss[-1] > 1.5 * start >= capped.loss[-2]  # stops after crossing
    assert dreamer.octave.experimental_get_tracing_count() == 1


# ---- feature inversion --------------------------------------------------------------------------------------
@pytest.mark.parametrize("parameterization", ["fourier", "pixels"])
def test_inversion_loss_falls_and_an_early_layer_gives_the_photo_back(tiny, photos, parameterization):
    result = invert_features(tiny, photos[0], "conv1", steps=150, learning_rate=0.1,
                             parameterization=parameterization)
    assert result.images.shape == photos[0].shape and result.history.shape == (150,)
    assert result.history[-1] < 0.3 * result.history[0] and result.relative_loss < 0.3 * result.history[0]
    assert np.mean(np.diff(result.history) < 0) > 0.8
    assert result.correlation > 0.8 and 0 <= result.images.min() and result.images.max() <= 255
    assert result.rmse == pytest.approx(np.sqrt(np.mean((result.images - photos[0]) ** 2)), rel=1e-5)
    maps = lambda x: keras.Model(tiny.model.input, tiny.model.get_layer("conv1").output)(preprocess(x)).numpy()  # noqa
    target = maps(photos[:1])
    independent = np.sum((maps(result.images[None]) - target) ** 2) / np.sum(target ** 2)
    assert result.relative_loss == pytest.approx(independent, rel=1e-3, abs=1e-6)


def test_inversion_batch_and_seed(tiny, photos):
    batch = invert_features(tiny, photos[:2], "conv3", steps=5, seed=1)
    again = invert_features(tiny, photos[:2], "conv3", steps=5, seed=1)
    assert batch.images.shape == (2, 32, 32, 3) and batch.history.shape == (5, 2)
    np.testing.assert_array_equal(batch.images, again.images)
    alone = invert_features(tiny, photos[1], "conv3", steps=5, seed=1)  # image 1 of a batch ≠ image 0 alone
    assert not np.array_equal(alone.images, batch.images[1])


def test_inversion_no_retracing_and_bounded_caches(tiny, photos):
    invert_features(tiny, photos[0], "conv2", steps=2)
    net = common.network(tiny.model, tiny.preprocess, ("conv2",), logits=False)
    fourier = per_model_cache(tiny.model, "dreams.inversion")[net].fourier
    traces = fourier.experimental_get_tracing_count()
    for i, steps in ((1, 3), (2, 2)):
        invert_features(tiny, photos[i], "conv2", steps=steps, learning_rate=0.05 * i, tv=0.01 * i, seed=i)
    assert fourier.experimental_get_tracing_count() == traces
    for layer in ("conv1", "conv3", "conv2", "conv1", "conv3"):  # more layers than the caches keep
        invert_features(tiny, photos[0], layer, steps=1)
    assert len(per_model_cache(tiny.model, "dreams.inversion")) <= 3
    assert len(per_model_cache(tiny.model, "dreams.networks")) <= common.NETWORKS


# ---- adversarial examples -----------------------------------------------------------------------------------
def test_fgsm_is_x_plus_epsilon_sign_gradient(photos):
    bundle = tiny_relu6_bundle(size=12)
    x = photos[:, :12, :12]
    labels = logits_of(bundle, x).argmax(axis=1)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:  # independent: the Keras model's logits, eagerly
        tape.watch(xt)
        logits = logits_model(bundle.model)(bundle.preprocess(xt))
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    expected = np.clip(x + 3.0 * np.sign(tape.gradient(loss, xt).numpy()), 0, 255)
    result = adversarial(bundle, x, epsilon=3.0, steps=1)
    np.testing.assert_allclose(result.images, expected, atol=1e-4)
    np.testing.assert_array_equal(result.before, labels)
    np.testing.assert_array_equal(result.source, labels)
    np.testing.assert_array_equal(result.after, logits_of(bundle, result.images).argmax(axis=1))


def test_pgd_stays_in_the_ball_and_the_pixel_range(tiny, photos):
    edge = photos.copy()
    edge[:, :4] = 255.0  # pixels at the top of the range: the projection must keep them there
    for kwargs in ({}, {"random_start": True, "seed": 3}, {"target_class": [1, 2, 3]}):
        result = adversarial(tiny, edge, epsilon=4.0, steps=6, **kwargs)
        assert np.abs(result.images - edge).max() <= 4.0 + 1e-4
        assert result.images.min() >= 0 and result.images.max() <= 255
        np.testing.assert_allclose(result.perturbation, result.images - edge)
        assert result.history.shape == (6, 3)
    a, b = (adversarial(tiny, photos, epsilon=4.0, steps=3, random_start=True, seed=s).images for s in (1, 1))
    np.testing.assert_array_equal(a, b)


def test_bare_model_epsilon_in_its_own_units(photos):
    model = logits_model(flexible_classifier())
    inputs = preprocess(photos)  # about [-1, 1]
    with pytest.raises(ValueError, match="bounds"):
        adversarial(model, inputs, epsilon=0.01)  # the pixel range (0, 255) does not hold these inputs
    result = adversarial(model, inputs, epsilon=0.01, steps=4, bounds=(-1.0, 1.0))
    assert np.abs(result.perturbation).max() <= 0.01 + 1e-6


@pytest.mark.parametrize("photo", ["cat", "coffee", "rocket"])
def test_attacks_change_the_class_of_lite0_photos(bundle, photo):
    image = cnnviz.sample_photo(photo)
    both = np.stack([image, image])
    result = adversarial(bundle, both, target_class=[1, 948], epsilon=2.0, steps=8)  # goldfish, Granny Smith
    assert np.all(result.after == [1, 948]) and np.all(result.success)
    assert np.abs(result.images - both).max() <= 2.0 + 1e-4 and 0 <= result.images.min() <= result.images.max() <= 255
    untargeted = adversarial(bundle, image, epsilon=1.0, steps=5)
    assert untargeted.success and untargeted.after != untargeted.before
    assert np.abs(untargeted.perturbation).max() <= 1.0 + 1e-4


def test_no_retracing_across_targets(tiny, photos):
    net = common.network(tiny.model, tiny.preprocess, (), logits=True)
    adversarial(tiny, photos, target_class=0, epsilon=2.0, steps=2)
    attack = per_model_cache(tiny.model, "dreams.adversarial")[net]
    traces = attack.run.experimental_get_tracing_count(), net.forward.experimental_get_tracing_count()
    for target in (1, [2, 3, 4], 0):
        adversarial(tiny, photos, target_class=target, epsilon=3.0, steps=4)
    adversarial(tiny, photos, epsilon=1.0, steps=3, loss="logit")
    adversarial(tiny, photos[:2], target_class=[3, 1], epsilon=1.0, steps=2)  # another batch size
    assert (attack.run.experimental_get_tracing_count(), net.forward.experimental_get_tracing_count()) == traces
    assert isinstance(attack, attacks._Attack)


# ---- every function: the user's model unchanged, bad arguments refused ------------------------------------------
def test_the_users_model_is_unchanged(photos):
    bundle = ModelBundle("flexible", flexible_classifier(), (32, 32), preprocess, "conv3")
    model = bundle.model
    weights = [w.copy() for w in model.get_weights()]
    nodes = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in model.layers]
    outputs = model(preprocess(photos)).numpy()
    class_visualization(bundle, [0], size=32, steps=2)
    transform_robustness(bundle, photos, 0, transforms=2)
    diverse_visualization(bundle, 1, n=2, size=32, steps=2)
    deep_dream(bundle, photos[0], "conv3", octaves=1, steps=2, trim=1)
    invert_features(bundle, photos[0], "conv2", steps=2)
    adversarial(bundle, photos, epsilon=1.0, steps=2)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in model.layers] == nodes
    np.testing.assert_array_equal(model(preprocess(photos)).numpy(), outputs)
    assert model.layers[-1].name == "probabilities"


BAD = [
    (class_visualization, dict(classes=[7]), "classes"),
    (class_visualization, dict(classes=[]), "classes"),
    (class_visualization, dict(classes="cat"), "classes"),
    (class_visualization, dict(classes=1, steps=0), "steps"),
    (class_visualization, dict(classes=1, steps=2.0), "steps"),
    (class_visualization, dict(classes=1, robust="yes"), "robust"),
    (class_visualization, dict(classes=1, seed=-1), "seed"),
    (class_visualization, dict(classes=1, step=0), "step"),
    (class_visualization, dict(classes=1, size=0), "size"),
    (class_visualization, dict(classes=1, l2=-1.0), "l2"),
    (class_visualization, dict(classes=True), "classes"),
    (transform_robustness, dict(images="photos", classes=[0, 1, 2], transforms=0), "transforms"),
    (transform_robustness, dict(images="photos", classes=[0, 1]), "classes"),
    (transform_robustness, dict(images="photos", classes=0, strength=-1), "strength"),
    (diverse_visualization, dict(class_index=1, n=1), "n"),
    (diverse_visualization, dict(), "class_index"),
    (diverse_visualization, dict(class_index=1, channel=("conv1", 0)), "class_index"),
    (diverse_visualization, dict(channel=("conv1", 8)), "channel"),
    (diverse_visualization, dict(channel="conv1"), "channel"),
    (diverse_visualization, dict(class_index=1, diversity=-1.0), "diversity"),
    (diverse_visualization, dict(class_index=1, layer="head"), "not \\(N, h, w, c\\)"),
    (gram_similarity, dict(images="one photo", layer="conv1"), "at least 2"),
    (deep_dream, dict(image="photo", layers=[]), "layers"),
    (deep_dream, dict(image="photo", layers={"conv1": -1.0}), "layers"),
    (deep_dream, dict(image="photo", layers="conv3", octaves=0), "octaves"),
    (deep_dream, dict(image="photo", layers="conv3", octave_scale=0.5), "octave_scale"),
    (deep_dream, dict(image="photo", layers="conv3", step=0.0), "step"),
    (deep_dream, dict(image="photo", layers="conv3", max_loss=float("nan")), "max_loss"),
    (deep_dream, dict(image="photo", layers="conv3", octaves=3, octave_scale=2.0), "octaves: the smallest"),
    (deep_dream, dict(image="photo", layers="conv3", octaves=2, octave_scale=1.4, trim=4), "layers: 'conv3' is 7×7"),
    (deep_dream, dict(image="photo", layers="nope"), "no layer named"),
    (deep_dream, dict(image="photo", layers="conv3", bounds=(255, 0)), "bounds"),
    (invert_features, dict(image="photo", layer="conv1", steps=-3), "steps"),
    (invert_features, dict(image="photo", layer="conv1", tv=-1.0), "tv"),
    (invert_features, dict(image="photo", layer="conv1", parameterization="dct"), "parameterization"),
    (invert_features, dict(image="photo", layer="conv1", bounds=None), "bounds"),
    (invert_features, dict(image="photo", layer="conv1", learning_rate=0), "learning_rate"),
    (adversarial, dict(images="photos", epsilon=0.0), "epsilon"),
    (adversarial, dict(images="photos", epsilon=-2.0), "epsilon"),
    (adversarial, dict(images="photos", steps=0), "steps"),
    (adversarial, dict(images="photos", step=-1.0), "step"),
    (adversarial, dict(images="photos", target_class=[1, 2]), "target_class"),
    (adversarial, dict(images="photos", target_class=5), "target_class"),
    (adversarial, dict(images="photos", true_class=[0, 1, 2], target_class=1), "not both"),
    (adversarial, dict(images="photos", loss="hinge"), "loss"),
    (adversarial, dict(images="photos", random_start=1), "random_start"),
    (adversarial, dict(images="photos", bounds=(0, 100)), "bounds"),
]


@pytest.mark.parametrize("function, kwargs, match", BAD, ids=[f"{f.__name__}-{m}-{i}" for i, (f, _, m) in enumerate(BAD)])
def test_bad_arguments_raise_value_errors_naming_them(tiny, photos, function, kwargs, match):
    given = {"photos": photos, "photo": photos[0], "one photo": photos[:1]}
    kwargs = {k: given.get(v, v) if isinstance(v, str) and k in ("images", "image") else v for k, v in kwargs.items()}
    if function is class_visualization or function is diverse_visualization:
        kwargs.setdefault("size", 32)
    with pytest.raises(ValueError, match=match):
        function(tiny, **kwargs)


def test_fixed_size_models_and_wrong_sizes():
    bundle = tiny_relu6_bundle(size=9)
    assert class_visualization(bundle, 1, size=9, steps=2).images.shape == (1, 9, 9, 3)
    with pytest.raises(ValueError, match="size must be the model's input size 9×9"):
        class_visualization(bundle, 1, size=32, steps=2)
    with pytest.raises(ValueError, match="takes 9×9 images"):
        adversarial(bundle, np.zeros((12, 12, 3), "float32"))

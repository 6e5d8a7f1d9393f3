"""cnnviz.trust.shortcut: the watermark data set is as designed, and the model trained on it is caught cheating."""
import numpy as np
import pytest

import cnnviz
from cnnviz.trust import shortcut
from cnnviz.trust import mass_in_box


def test_dataset_is_deterministic_and_balanced():
    first, again = shortcut.watermark_dataset(12, seed=3), shortcut.watermark_dataset(12, seed=3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert first.images.shape == (12, 224, 224, 3) and first.images.dtype == np.float32
    assert 0 <= first.images.min() and first.images.max() <= 255
    assert np.bincount(first.labels).tolist() == [6, 6]
    assert not np.array_equal(first.images, shortcut.watermark_dataset(12, seed=4).images)


def test_label_noise_flips_the_content_not_the_label():
    clean = shortcut.watermark_dataset(40, label_noise=0.0, seed=5)
    np.testing.assert_array_equal(clean.content, clean.labels)
    noisy = shortcut.watermark_dataset(200, label_noise=0.35, seed=5)
    assert 0.25 < np.mean(noisy.content != noisy.labels) < 0.45
    np.testing.assert_array_equal(noisy.watermarked, noisy.labels == 1)  # the watermark is never wrong


def test_the_watermark_sits_in_its_box_on_its_class_only():
    stamped = shortcut.watermark_dataset(10, watermark_class=1, seed=7)
    plain = shortcut.watermark_dataset(10, watermark_class=None, seed=7)
    swapped = shortcut.watermark_dataset(10, watermark_class=0, seed=7)
    top, left, bottom, right = shortcut.watermark_box()
    assert (bottom, right) <= (224, 224) and bottom - top >= 16 and right - left >= 40
    changed = np.abs(stamped.images - plain.images).max(axis=-1) > 0  # (N, H, W)
    assert changed[stamped.labels == 0].sum() == 0
    assert changed[stamped.labels == 1].any(axis=(1, 2)).all()
    outside = changed.copy()
    outside[:, top:bottom, left:right] = False
    assert outside.sum() == 0
    tag = stamped.images[stamped.labels == 1][:, top + 1, left + 4:right - 4]  # the tag's white top edge
    assert (tag == 255).all()
    swapped_changed = np.abs(swapped.images - plain.images).max(axis=(1, 2, 3)) > 0
    np.testing.assert_array_equal(swapped_changed, swapped.labels == 0)


def test_objects_keep_out_of_the_watermark_corner():
    data = shortcut.watermark_dataset(60, seed=2)
    top, left, bottom, right = data.boxes.T
    sides = bottom - top
    np.testing.assert_array_equal(sides, right - left)
    assert sides.min() >= shortcut.OBJECT_SIDE[0] and sides.max() <= shortcut.OBJECT_SIDE[1]
    corner = 224 - shortcut.CORNER
    assert not ((bottom > corner) & (right > corner)).any()
    assert top.min() >= 0 and left.min() >= 0 and bottom.max() <= 224 and right.max() <= 224


@pytest.mark.parametrize("arguments", [{"n": 1}, {"watermark_class": 2}, {"label_noise": 0.5},
                                       {"label_noise": -0.1}])
def test_bad_arguments_are_refused(arguments):
    with pytest.raises(ValueError):
        shortcut.watermark_dataset(**arguments)


def test_training_is_deterministic_and_needs_lite0(bundle):
    data = shortcut.watermark_dataset(4, seed=9)
    first = shortcut.train_shortcut_model(bundle, data, epochs=5)
    again = shortcut.train_shortcut_model(bundle, data, epochs=5)
    for a, b in zip(first.bundle.model.get_layer("logits").get_weights(),
                    again.bundle.model.get_layer("logits").get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError):
        shortcut.train_shortcut_model(bundle.model, data)


def test_corner_share_of_known_maps():
    uniform = np.ones((7, 7))
    np.testing.assert_allclose(shortcut.corner_share(uniform), [64 ** 2 / 224 ** 2], rtol=1e-6)
    corner = np.zeros((7, 7))
    corner[-2:, -2:] = 1
    opposite = np.zeros((7, 7))
    opposite[:2, :2] = 1
    shares = shortcut.corner_share(np.stack([corner, opposite, np.zeros((7, 7))]))
    assert shares[0] > 0.8 and shares[1] == 0 and shares[2] == 0


@pytest.fixture(scope="module")
def trained(bundle):
    """The cheating model (watermark on coffee in training) and the clean one (no watermark), same photos."""
    weights = [w.copy() for w in bundle.model.get_weights()]
    cheat = shortcut.train_shortcut_model(bundle, shortcut.watermark_dataset(seed=0))
    clean = shortcut.train_shortcut_model(bundle, shortcut.watermark_dataset(watermark_class=None, seed=0))
    return cheat, clean, weights


def test_the_frozen_base_is_untouched(bundle, trained):
    cheat, _, before = trained
    for a, b in zip(before, bundle.model.get_weights()):  # the user's model
        np.testing.assert_array_equal(a, b)
    copied = [layer for layer in cheat.base.layers if layer.weights]
    assert len(copied) > 90 and not cheat.base.trainable
    for layer in copied:  # the nested copy still holds the ImageNet weights after training
        for a, b in zip(layer.get_weights(), bundle.model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    model = cheat.bundle.model
    assert {w.path for w in model.trainable_weights} == {"logits/kernel", "logits/bias"}
    assert len(model.layers) == 5 and model.layers[1] is cheat.base  # input, base, pool, logits, softmax


def test_the_cheat_reads_the_watermark_and_the_clean_model_the_content(trained):
    cheat, clean, _ = trained
    assert cheat.train_accuracy > 0.95
    cheat_accuracy, clean_accuracy = (shortcut.shortcut_accuracy(model, n=48) for model in (cheat, clean))
    assert cheat_accuracy.with_watermark > 0.9
    assert cheat_accuracy.swapped < 0.45 < cheat_accuracy.with_watermark - 0.45
    assert clean_accuracy.without > 0.7 and clean_accuracy.swapped > cheat_accuracy.swapped + 0.3


def test_gradcam_finds_the_corner_in_the_cheat_and_the_object_in_the_clean_model(trained):
    cheat, clean, _ = trained
    test = shortcut.watermark_dataset(12, label_noise=0.0, seed=1)
    coffee = test.labels == 1
    maps = [cnnviz.gradcam(model.bundle, test.images[coffee], layer="top_activation", class_index=1)
            for model in (cheat, clean)]
    corner = [shortcut.corner_share(m).mean() for m in maps]
    on_object = [mass_in_box(m, test.boxes[coffee], (224, 224)).mean() for m in maps]
    assert corner[0] > 2 * 64 ** 2 / 224 ** 2 and corner[0] > corner[1] + 0.15
    assert on_object[1] > on_object[0] + 0.1

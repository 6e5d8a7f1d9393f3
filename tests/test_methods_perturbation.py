"""Occlusion and RISE (cnnviz.methods.perturbation) against eager implementations of their papers' formulas
on a tiny seeded network; Lite0: each points at the right half of the cat|coffee collage for espresso."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import cnnviz
from cnnviz.models import class_names
from nets import logits_model, random_images, tiny_classifier

ESPRESSO, EGYPTIAN_CAT = class_names().index("espresso"), class_names().index("Egyptian_cat")


@pytest.fixture(scope="module")
def tiny():
    return tiny_classifier(size=12)


@pytest.fixture(scope="module")
def images():
    return random_images(2, size=12)


def occlusion_reference(model, image, class_index, patch, stride):
    """Zeiler & Fergus, one patch at a time: the logit's drop when a square of the image's mean colour hides
    each place, averaged over the patches that cover a pixel. Places: every ``stride`` px, plus one flush
    with the far edge."""
    logits = logits_model(model)
    clean = float(logits(image[None])[0, class_index])
    size = image.shape[0]
    starts = sorted(set(range(0, size - patch + 1, stride)) | {size - patch})
    drop, covered = np.zeros(image.shape[:2]), np.zeros(image.shape[:2])
    for top in starts:
        for left in starts:
            hidden = image.copy()
            hidden[top:top + patch, left:left + patch] = image.mean(axis=(0, 1))
            drop[top:top + patch, left:left + patch] += clean - float(logits(hidden[None])[0, class_index])
            covered[top:top + patch, left:left + patch] += 1
    return drop / covered


@pytest.mark.parametrize("patch, stride", [(4, 2), (5, 3), (12, 1)])
def test_occlusion_matches_the_patch_by_patch_formula(tiny, images, patch, stride):
    classes = [1, 3]
    maps = cnnviz.occlusion(tiny, images, class_index=classes, patch=patch, stride=stride, normalize=False,
                            batch_size=7)
    expected = np.stack([occlusion_reference(tiny, image, c, patch, stride) for image, c in zip(images, classes)])
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-5)
    if patch == 12:  # one patch hides the whole image: one drop everywhere
        assert np.ptp(maps, axis=(1, 2)).max() < 1e-6


def test_occlusion_fill_value_and_batch_size(tiny, images):
    grey = cnnviz.occlusion(tiny, images, class_index=0, patch=4, stride=4, fill=0.0, normalize=False)
    mean = cnnviz.occlusion(tiny, images, class_index=0, patch=4, stride=4, normalize=False)
    assert np.abs(grey - mean).max() > 1e-4  # the fill value is used
    np.testing.assert_allclose(cnnviz.occlusion(tiny, images, class_index=0, patch=4, stride=4, fill=0.0,
                                                normalize=False, batch_size=1), grey, atol=1e-6)


def rise_reference(model, image, class_index, masks, grid, keep, seed):
    """Petsiuk et al.'s RISE, written out: mask i is a grid × grid Bernoulli(keep) grid drawn from
    default_rng([seed, i]) (the grid first, then the shift), upsampled bilinearly to (grid + 1) cells of
    ceil(H / grid) px and cropped at that shift; S = Σ_i p_c(X ⊙ M_i) M_i / (masks · keep), X the model's
    input (the tiny model takes its input as is)."""
    size = image.shape[0]
    cell = math.ceil(size / grid)
    total = np.zeros(image.shape[:2])
    for i in range(masks):
        rng = np.random.default_rng([seed, i])
        coarse = (rng.random((grid, grid)) < keep).astype("float32")
        dy, dx = int(rng.integers(cell)), int(rng.integers(cell))
        up = tf.image.resize(coarse[None, ..., None], ((grid + 1) * cell, (grid + 1) * cell)).numpy()[0, ..., 0]
        mask = up[dy:dy + size, dx:dx + size]
        probability = float(model((image * mask[..., None])[None])[0, class_index])  # the model ends in a softmax
        total += probability * mask
    return total / (masks * keep)


def test_rise_matches_the_mask_by_mask_formula(tiny, images):
    maps = cnnviz.rise(tiny, images, class_index=[2, 4], masks=24, grid=3, keep=0.4, seed=5, normalize=False,
                       batch_size=5)
    expected = np.stack([rise_reference(tiny, image, c, 24, 3, 0.4, 5) for image, c in zip(images, [2, 4])])
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
    other = cnnviz.rise(tiny, images, class_index=[2, 4], masks=24, grid=3, keep=0.4, seed=6, normalize=False)
    assert np.abs(other - maps).max() > 1e-4  # another seed, other masks


def test_rise_of_a_model_that_looks_at_one_corner(images):
    """A model whose class 0 score is the mean of the top-left 6×6 quadrant of channel 0 (and class 1 its
    negative): RISE must put class 0's mass there."""
    inputs = keras.Input((12, 12, 3))
    corner = keras.layers.Lambda(lambda x: tf.reduce_mean(x[:, :6, :6, 0], axis=(1, 2))[:, None])(inputs)
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Concatenate()([corner, -corner])))
    bright = np.full((1, 12, 12, 3), 1.0, "float32")
    heatmap = cnnviz.rise(model, bright, class_index=0, masks=400, grid=4, seed=0)[0]
    corners = [heatmap[:6, :6].mean(), heatmap[:6, 6:].mean(), heatmap[6:, :6].mean(), heatmap[6:, 6:].mean()]
    assert np.argmax(corners) == 0, corners  # (RISE maps sit on a large constant: E[p] where a pixel is kept)


@pytest.mark.parametrize("method, options", [("occlusion", {"patch": 48, "stride": 24}),
                                             ("rise", {"masks": 300, "seed": 0})])
def test_lite0_points_at_the_coffee_for_espresso(bundle, collage, method, options):
    heatmaps = cnnviz.METHODS[method](bundle, np.stack([collage, collage]), class_index=[EGYPTIAN_CAT, ESPRESSO],
                                      **options)
    left, right = heatmaps[:, :, :112].mean(axis=(1, 2)), heatmaps[:, :, 112:].mean(axis=(1, 2))
    assert left[0] > right[0] and right[1] > left[1], (left, right)  # the cat on the left, the coffee right


def test_occlusion_patch_larger_than_the_image(tiny, images):
    with pytest.raises(ValueError, match="patch \\(13 px\\) is larger than the image \\(12 px\\)"):
        cnnviz.occlusion(tiny, images, patch=13)

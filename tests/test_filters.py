"""Filter visualisation (notebook 02): deprocess_image, gradient ascent classic and robust, grids."""
import keras
import numpy as np
import pytest

from cnnviz.filters import deprocess_image, filter_grid, generate_pattern, visualize_filters

LAYER = "block2a_expand_bn"  # shallow: a step costs milliseconds at 32×32


def test_deprocess_image_range_dtype_and_classic_scaling():
    x = np.random.default_rng(0).normal(50, 7, (16, 16, 3))
    image = deprocess_image(x)
    assert image.dtype == np.uint8 and image.shape == (16, 16, 3)
    # centred on 127.5 with std 0.1·255 ≈ 25.5 (few values clipped at this spread)
    assert abs(image.mean() - 127.5) < 1.0 and abs(image.std() - 25.5) < 1.0


def test_deprocess_image_constant_is_flat_grey_and_batches_are_per_image():
    assert np.all(deprocess_image(np.full((8, 8, 3), 3.0)) == 127)
    batch = np.stack([np.full((8, 8, 3), 3.0), np.random.default_rng(1).normal(0, 1000, (8, 8, 3))])
    out = deprocess_image(batch)
    assert np.all(out[0] == 127) and out[1].std() > 20


def test_deprocess_image_rejects_nan():
    with pytest.raises(ValueError, match="finite"):
        deprocess_image(np.full((8, 8, 3), np.nan))


def test_filter_grid_shape_margins_and_placement():
    images = np.stack([np.full((4, 6, 3), 10 * (i + 1), np.uint8) for i in range(5)])
    grid = filter_grid(images, margin=2)  # 5 images → 3 columns, 2 rows
    assert grid.shape == (2 * 4 + 2, 3 * 6 + 2 * 2, 3) and grid.dtype == np.uint8
    assert np.all(grid[4:6] == 0) and np.all(grid[:, 6:8] == 0)  # black margins
    assert np.all(grid[6:, 8:14] == 50) and np.all(grid[6:, 16:] == 0)  # 5th image; empty last cell
    assert filter_grid(np.zeros((64, 3, 3, 3)), margin=1).shape == (8 * 3 + 7, 8 * 3 + 7, 3)


def test_activation_rises_for_every_filter(bundle):
    patterns = visualize_filters(bundle, LAYER, [0, 5, 17, 95], size=32, steps=6, progress=False)
    assert patterns.images.shape == (4, 32, 32, 3) and patterns.images.dtype == np.uint8
    assert patterns.history.shape == (6, 4)
    assert np.all(patterns.activation > patterns.history[0] + 0.1)
    assert np.all(np.diff(patterns.history, axis=0) > 0)  # the loss curve climbs at each step


def test_deterministic_for_a_seed(bundle):
    first = visualize_filters(bundle, LAYER, [1, 2], size=32, steps=3, seed=7, progress=False)
    again = visualize_filters(bundle, LAYER, [1, 2], size=32, steps=3, seed=7, progress=False)
    other = visualize_filters(bundle, LAYER, [1, 2], size=32, steps=3, seed=8, progress=False)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)


def test_batched_matches_single_filter_recipe(bundle):
    """Per-image gradient normalisation: each filter in the batch follows its own classic ascent."""
    batched = visualize_filters(bundle, LAYER, [3, 4, 9], size=40, steps=5, progress=False)
    for i, f in enumerate([3, 4, 9]):
        single = visualize_filters(bundle, LAYER, [f], size=40, steps=5, progress=False)
        np.testing.assert_allclose(batched.activation[i], single.activation[0], rtol=1e-3)
        pattern = generate_pattern(bundle, LAYER, f, size=40, steps=5)
        assert pattern.shape == (40, 40, 3) and pattern.dtype == np.uint8
        assert np.mean(np.abs(pattern.astype(int) - batched.images[i])) < 1.0


def test_robust_mode_rises_and_makes_a_coloured_picture(bundle):
    patterns = visualize_filters(bundle, LAYER, range(4), size=(32, 48), steps=24, robust=True, progress=False)
    assert patterns.images.shape == (4, 32, 48, 3) and patterns.images.dtype == np.uint8
    # random transforms make single steps noisy; over 24 steps the activations climb
    assert np.mean(patterns.activation - patterns.history[0]) > 0.25
    assert patterns.images.std() > 5  # not a flat grey start


def test_any_size_whatever_the_declared_input():
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))
    patterns = visualize_filters(model, "conv", size=36, steps=2, progress=False)
    assert patterns.images.shape == (4, 36, 36, 3)  # all 4 filters by default


def test_bad_requests_give_clear_errors(bundle):
    with pytest.raises(ValueError, match=r"filter indices must be in \[0, 96\)"):
        visualize_filters(bundle, LAYER, [96], size=32, steps=1)
    with pytest.raises(ValueError, match="not \\(N, h, w, c\\)"):
        visualize_filters(bundle, "avg_pool", [0], size=32, steps=1)
    with pytest.raises(ValueError, match="at least 32"):
        visualize_filters(bundle, LAYER, [0], size=16, steps=1)
    with pytest.raises(ValueError, match="no layer named"):
        visualize_filters(bundle, "block2a_expand_nb", [0], size=32, steps=1)

"""Receptive-field centres (cnnviz.geometry): hand-computed nets, gradient supports, Lite0, resampling."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cnnviz import geometry
from cnnviz.geometry import CellGrid, cell_grid, grid_for_map, half_pixel_grid, layer_sizes, resample
from cnnviz.layers import _walk, tap_model

L = keras.layers


def net(*layers, name=None):
    """A functional model: an any-size (None, None, 1) input through ``layers`` in a chain."""
    inputs = keras.Input((None, None, 1), name="image")
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def grid_of(layers, size):
    model = net(*layers)
    return cell_grid(model, model.layers[-1].name, size)


# --- hand-computable nets -------------------------------------------------------------------------------

def test_same_stride2_conv_even_input_is_centred_on_2i_plus_1():
    grid = grid_of([L.Conv2D(1, 3, 2, padding="same")], (8, 10))
    assert grid == CellGrid((4, 5), (2, 2), (1, 1), (3, 3), (8, 10))
    np.testing.assert_array_equal(grid.centres()[1], 2 * np.arange(5) + 1)
    assert half_pixel_grid((4, 5), (8, 10)).offset == (0.5, 0.5)  # what half-pixel resizing assumes


def test_same_stride2_conv_odd_input_is_centred_on_2i():
    grid = grid_of([L.Conv2D(1, 3, 2, padding="same")], (9, 9))  # one pixel of padding on each side
    assert grid.cells == (5, 5) and grid.offset == (0, 0) and grid.stride == (2, 2)


def test_valid_conv_is_centred_on_i_plus_1():
    grid = grid_of([L.Conv2D(1, 3, padding="valid")], (8, 8))
    assert grid == CellGrid((6, 6), (1, 1), (1, 1), (3, 3), (8, 8))


def test_5x5_stride2_same_conv():
    # even input: padding 1 before, 2 after → centre 2i − 1 + 2 = 2i + 1; odd input: 2 and 2 → 2i
    assert grid_of([L.Conv2D(1, 5, 2, padding="same")], (8, 8)).offset == (1, 1)
    odd = grid_of([L.Conv2D(1, 5, 2, padding="same")], (9, 9))
    assert odd.cells == (5, 5) and odd.offset == (0, 0) and odd.field == (5, 5)


def test_2x2_max_pool_equals_half_pixel_grid_and_todays_bilinear():
    grid = grid_of([L.MaxPooling2D(2)], (8, 12))
    assert grid == CellGrid((4, 6), (2, 2), (0.5, 0.5), (2, 2), (8, 12)) == half_pixel_grid((4, 6), (8, 12))
    heatmap = np.random.default_rng(1).random((4, 6)).astype("float32")
    pil = np.asarray(Image.fromarray(heatmap).resize((12, 8), Image.BILINEAR))
    np.testing.assert_allclose(resample(heatmap, grid), pil, atol=1e-5)


def test_resnet_stem_zero_padding_and_valid_conv_is_centred_on_2i():
    layers = [L.ZeroPadding2D(3), L.Conv2D(1, 7, 2, padding="valid"), L.ZeroPadding2D(1), L.MaxPooling2D(3, 2)]
    model = net(*layers)
    conv = cell_grid(model, model.layers[2].name, (224, 224))
    assert conv == CellGrid((112, 112), (2, 2), (0, 0), (7, 7), (224, 224))
    assert cell_grid(model, model.layers[1].name, (224, 224)).offset == (-3, -3)  # the padded tensor
    assert cell_grid(model, model.layers[-1].name, (224, 224)) == CellGrid((56, 56), (4, 4), (0, 0), (11, 11),
                                                                           (224, 224))


def test_dilation_widens_the_kernel():
    grid = grid_of([L.Conv2D(1, 3, dilation_rate=2, padding="valid")], (9, 9))  # k_eff = 5
    assert grid == CellGrid((5, 5), (1, 1), (2, 2), (5, 5), (9, 9))
    same = grid_of([L.Conv2D(1, 3, 2, padding="same"), L.Conv2D(1, 3, dilation_rate=2, padding="same")], (8, 8))
    assert same == CellGrid((4, 4), (2, 2), (1, 1), (3 + 4 * 2, 3 + 4 * 2), (8, 8))


def test_upsampling_and_cropping():
    conv = L.Conv2D(1, 3, 2, padding="same")  # 8 → 4 cells at 2i + 1
    nearest = grid_of([conv, L.UpSampling2D(2)], (8, 8))
    # each parent cell (centre 2i + 1, stride 2) splits into two at 2i + 0.5 and 2i + 1.5
    assert nearest == CellGrid((8, 8), (1, 1), (0.5, 0.5), (3, 3), (8, 8))
    bilinear = grid_of([L.Conv2D(1, 3, 2, padding="same"), L.UpSampling2D((2, 4), interpolation="bilinear")], (8, 8))
    assert bilinear.cells == (8, 16) and bilinear.stride == (1, 0.5) and bilinear.offset == (0.5, 0.25)
    assert bilinear.field == (5, 5)  # two neighbouring parents
    cropped = grid_of([L.Conv2D(1, 3, 2, padding="same"), L.Cropping2D(((1, 0), (0, 2)))], (8, 8))
    assert cropped.cells == (3, 2) and cropped.offset == (3, 1)


def test_nested_model_layers_have_the_flat_grid():
    base = net(L.Conv2D(2, 3, 2, padding="same", name="inner_a"), L.Conv2D(2, 5, 2, padding="same", name="inner_b"),
               name="base")
    outer = keras.Sequential([keras.Input((None, None, 1)), base, L.GlobalAveragePooling2D(), L.Dense(3)])
    inputs = keras.Input((None, None, 1))
    functional = keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(base(inputs))))
    flat = cell_grid(base, "inner_b", (64, 48))
    assert flat == CellGrid((16, 12), (4, 4), (3, 3), (3 + 4 * 2, 3 + 4 * 2), (64, 48))
    for model in (outer, functional):
        assert cell_grid(model, "inner_b", (64, 48)) == flat
        assert cell_grid(model, "base", (64, 48)) == flat  # the nested model itself: its output's grid
        assert cell_grid(model, "inner_a", (64, 48)) == cell_grid(base, "inner_a", (64, 48))
        assert cell_grid(model, None, (64, 48)) == CellGrid((64, 48), (1, 1), (0, 0), (1, 1), (64, 48))


def test_add_takes_the_first_grid_and_the_largest_field_and_warns_on_disagreement():
    inputs = keras.Input((None, None, 1))
    shortcut = L.Conv2D(1, 1, name="shortcut")(inputs)
    branch = L.Conv2D(1, 5, padding="same", name="branch")(inputs)
    added = L.Add(name="add")([shortcut, branch])
    shifted = L.Cropping2D(((2, 0), (2, 0)), name="crop")(L.ZeroPadding2D(((0, 2), (0, 2)))(inputs))
    model = keras.Model(inputs, [added, L.Add(name="odd_add")([added, shifted])])
    with pytest.warns(UserWarning, match="odd_add"):
        grid = cell_grid(model, "add", (8, 8))
    assert grid == CellGrid((8, 8), (1, 1), (0, 0), (5, 5), (8, 8))
    assert cell_grid(model, "odd_add", (8, 8)).offset == (0, 0)


# --- an independent check: the support of a cell's gradient -------------------------------------------------

def gradient_support(model, image, layer_name, cells):
    """For each cell (i, j): the (top, bottom, left, right) input rows / columns bounding the nonzero gradient
    of its activation (summed over channels and the batch) with respect to the image."""
    tap = tap_model(model, [layer_name], score=None)
    image = tf.constant(image)
    rows, cols = tf.constant([i for i, _ in cells]), tf.constant([j for _, j in cells])
    with tf.GradientTape() as tape:
        tape.watch(image)
        values = tf.gather_nd(tf.reduce_sum(tap(image)[0], axis=(0, 3)), tf.stack([rows, cols], 1))
    jacobian = tape.jacobian(values, image)  # (cells, N, H, W, C)
    boxes = []
    for support in np.abs(jacobian.numpy()).sum(axis=(1, 4)) > 0:
        rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
        boxes.append((rows.min(), rows.max(), cols.min(), cols.max()))
    return boxes


def positive(seed):
    return keras.initializers.RandomUniform(0.1, 1.0, seed=seed)


@pytest.mark.parametrize("layers", [
    lambda: [L.Conv2D(2, 3, 2, padding="same", kernel_initializer=positive(0)), L.AveragePooling2D(2),
             L.Conv2D(2, 5, padding="valid", kernel_initializer=positive(1)),
             L.Conv2D(2, 3, 2, padding="same", kernel_initializer=positive(2))],
    lambda: [L.ZeroPadding2D(3), L.Conv2D(2, 7, 2, padding="valid", kernel_initializer=positive(3)),
             L.ZeroPadding2D(1), L.AveragePooling2D(3, 2), L.Conv2D(2, 3, 2, padding="same",
                                                                    kernel_initializer=positive(4))],
    lambda: [L.Conv2D(2, 5, 2, padding="same", kernel_initializer=positive(5)),
             L.DepthwiseConv2D(3, 2, padding="same", depthwise_initializer=positive(6)),
             L.Conv2D(2, 3, dilation_rate=2, padding="same", kernel_initializer=positive(7))],
], ids=["mixed", "resnet_stem", "depthwise_dilated"])
@pytest.mark.parametrize("size", [(64, 64), (61, 66)])
def test_gradient_support_matches_the_grid(layers, size):
    """Linear layers with positive weights on a positive image: no gradient cancels, so the support's box is
    the cell's field, centred on its centre. At the borders it lies within the field clipped to the image
    (part of the field is padding of an intermediate tensor, or a dilated kernel's hole)."""
    model = net(*layers())
    name = model.layers[-1].name
    grid = cell_grid(model, name, size)
    image = np.random.default_rng(0).uniform(0.5, 1.0, (1, *size, 1)).astype("float32")
    (ys, xs), (fy, fx) = grid.centres(), grid.field
    cells = [(i, j) for i in range(grid.cells[0]) for j in range(grid.cells[1])]
    interior = 0
    for (i, j), (top, bottom, left, right) in zip(cells, gradient_support(model, image, name, cells)):
        for low, high, centre, field, n in ((top, bottom, ys[i], fy, size[0]), (left, right, xs[j], fx, size[1])):
            first, last = centre - (field - 1) / 2, centre + (field - 1) / 2
            if 0 <= first and last <= n - 1:
                interior += 1
                assert (low, high) == (first, last), (i, j)
            else:
                assert max(first, 0) <= low <= high <= min(last, n - 1), (i, j)
    assert interior >= 4


@pytest.mark.parametrize("layer_name", ["block2a_dwconv", "block2b_add"])
def test_lite0_gradient_support_is_centred_on_the_grid(bundle, layer_name):
    grid = cell_grid(bundle, layer_name, (224, 224))
    assert grid.stride == (4, 4) and grid.offset == (3, 3)  # half-pixel resizing would say 1.5
    image = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")  # preprocessed range
    cells = [(10, 20), (25, 41)]
    (ys, xs) = grid.centres()
    for (i, j), (top, bottom, left, right) in zip(cells, gradient_support(bundle, image, layer_name, cells)):
        assert ((top + bottom) / 2, (left + right) / 2) == (ys[i], xs[j])
        assert (bottom - top + 1, right - left + 1) == grid.field


# --- Lite0 ------------------------------------------------------------------------------------------------

def test_lite0_top_activation_grid(bundle):
    grid = cell_grid(bundle, "top_activation", (224, 224))
    assert grid == CellGrid((7, 7), (32, 32), (31, 31), (851, 851), (224, 224))
    assert cell_grid(bundle, "top_activation") == grid  # the bundle's own input size
    np.testing.assert_array_equal(grid.centres()[0], 32 * np.arange(7) + 31)
    assert half_pixel_grid((7, 7), (224, 224)).offset == (15.5, 15.5)
    wide = cell_grid(bundle.model, "top_activation", (224, 448))
    assert wide.cells == (7, 14) and wide.stride == (32, 32) and wide.offset == (31, 31)
    assert cell_grid(bundle, "stem_conv", (224, 224)) == CellGrid((112, 112), (2, 2), (1, 1), (3, 3), (224, 224))
    assert cell_grid(bundle, "block5c_add", (224, 224)) == CellGrid((14, 14), (16, 16), (15, 15), (339, 339),
                                                                    (224, 224))


def test_lite0_layer_sizes_and_errors(bundle):
    sizes = layer_sizes(bundle, (224, 224))
    assert sizes["input_image"] == (224, 224) and sizes["stem_conv"] == (112, 112)
    assert sizes["top_activation"] == (7, 7) and "avg_pool" not in sizes and "logits" not in sizes
    with pytest.raises(ValueError, match="not spatial"):
        cell_grid(bundle, "logits")
    with pytest.raises(ValueError, match="top_activation"):
        cell_grid(bundle, "top_activaton")


def test_grid_for_map(bundle):
    assert grid_for_map(bundle, (7, 7), (224, 224)) == cell_grid(bundle, "top_activation", (224, 224))
    assert grid_for_map(bundle, np.zeros((3, 7, 7))) == cell_grid(bundle, "top_activation")
    assert grid_for_map(bundle, (224, 224)) == CellGrid((224, 224), (1, 1), (0, 0), (1, 1), (224, 224))
    assert grid_for_map(bundle, (56, 56), layer="block2a_dwconv").field == (11, 11)
    with pytest.raises(ValueError, match="layer="):
        grid_for_map(bundle, (5, 5), (224, 224))
    with pytest.raises(ValueError, match="14×14 cells"):
        grid_for_map(bundle, (7, 7), layer="block5c_add")


def test_grid_for_map_refuses_to_guess_between_differently_placed_layers():
    model = net(L.Conv2D(1, 3, padding="valid", name="valid"), L.ZeroPadding2D(1),
                L.Cropping2D(((2, 0), (2, 0)), name="crop"))
    with pytest.raises(ValueError, match="layer="):
        grid_for_map(model, (6, 6), (8, 8))
    assert grid_for_map(model, (6, 6), (8, 8), layer="crop").offset == (2, 2)


# --- resample --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cells, size", [((7, 7), (224, 224)), ((5, 9), (37, 50)), ((1, 3), (8, 8))])
def test_resample_half_pixel_equals_pil_bilinear(cells, size):
    heatmap = np.random.default_rng(2).random(cells).astype("float32")
    pil = np.asarray(Image.fromarray(heatmap).resize(size[::-1], Image.BILINEAR))
    out = resample(heatmap, half_pixel_grid(cells, size))
    assert out.dtype == np.float32 and out.shape == size
    np.testing.assert_allclose(out, pil, atol=1e-5)


def test_resample_puts_each_lite0_cell_on_its_centre(bundle):
    grid = cell_grid(bundle, "top_activation", (224, 448))
    heatmap = np.random.default_rng(3).random((7, 14)).astype("float32")
    out = resample(heatmap, grid)
    rows, cols = 32 * np.arange(7) + 31, 32 * np.arange(14) + 31
    np.testing.assert_array_equal(out[np.ix_(rows, cols)], heatmap)
    np.testing.assert_array_equal(out[:31, :31], heatmap[0, 0])  # edge value beyond the outermost centres


def test_resample_to_another_display_size(bundle):
    grid = cell_grid(bundle, "top_activation", (224, 224))
    delta = np.zeros((7, 7), "float32")
    delta[2, 3] = 1
    out = resample(delta, grid, size=(448, 448))
    assert out.shape == (448, 448)
    y_profile, x_profile = out.sum(axis=1), out.sum(axis=0)
    pixels = np.arange(448)
    assert np.sum(pixels * x_profile) / x_profile.sum() == pytest.approx(2 * (32 * 3 + 31) + 0.5)
    assert np.sum(pixels * y_profile) / y_profile.sum() == pytest.approx(2 * (32 * 2 + 31) + 0.5)
    assert out[190, 254] == out[190, 255] == out[191, 254] == out[191, 255] == out.max()
    assert out.max() < 1  # the centre 254.5 falls between display pixels


def test_resample_stays_within_the_maps_range_and_takes_batches(bundle):
    grid = cell_grid(bundle, "top_activation", (224, 448))
    maps = np.random.default_rng(4).normal(size=(3, 2, 7, 14)).astype("float32")
    out = resample(maps, grid, size=(111, 333))
    assert out.shape == (3, 2, 111, 333) and out.dtype == np.float32
    for batch, one in zip(out.reshape(-1, 111, 333), maps.reshape(-1, 7, 14)):
        assert one.min() <= batch.min() and batch.max() <= one.max()
        np.testing.assert_array_equal(batch, resample(one, grid, size=(111, 333)))
    with pytest.raises(ValueError, match="7×14 cells"):
        resample(maps[..., :7], grid)


# --- errors and side effects ---------------------------------------------------------------------------------------

def test_too_small_image_gets_a_clear_error():
    model = net(L.Conv2D(1, 3, padding="same"), L.MaxPooling2D(4, padding="valid", name="pool"))
    with pytest.raises(ValueError, match=r"too small.*'pool'.*0×0 at input 2×2.*smallest input that works is 4×4"):
        layer_sizes(model, (2, 2))
    with pytest.raises(ValueError, match=r"0×2 at input 2×9.*smallest input that works is 4×4"):
        cell_grid(model, "pool", (2, 9))
    assert layer_sizes(model, (4, 4))["pool"] == (1, 1)


def test_unsupported_layers_get_a_clear_error():
    model = net(L.Conv2D(1, 3, 2, padding="same", name="down"), L.Conv2DTranspose(1, 3, 2, name="deconv"),
                L.Conv2D(1, 3, name="after"))
    assert cell_grid(model, "down", (16, 16)).offset == (1, 1)  # before it: fine
    with pytest.raises(ValueError, match=r"cannot place the cells of layer 'deconv' \(Conv2DTranspose\).*upsample"):
        cell_grid(model, "deconv", (16, 16))
    with pytest.raises(ValueError, match=r"'after'.*comes after layer 'deconv'.*upsample"):
        cell_grid(model, "after", (16, 16))
    channels_first = keras.Sequential([keras.Input((1, 16, 16)), L.Conv2D(2, 3, data_format="channels_first",
                                                                          name="cf")])
    with pytest.raises(ValueError, match=r"'cf' \(Conv2D\).*channels_first.*upsample"):
        cell_grid(channels_first, "cf", (16, 16))


def test_models_are_not_mutated(bundle):
    base = net(L.Conv2D(2, 3, 2, padding="same", name="inner"), name="inner_base")
    outer = keras.Sequential([keras.Input((None, None, 1)), base, L.GlobalAveragePooling2D(), L.Dense(2)])

    def nodes(model):
        return [(layer.name, len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer, _ in _walk(model)]

    for model, layer_name, size in ((bundle.model, "top_activation", (160, 96)), (outer, "inner", (20, 30))):
        before = nodes(model)
        cell_grid(model, layer_name, size)
        assert nodes(model) == before


def test_grids_are_cached_per_model_and_size(bundle, monkeypatch):
    traces, trace = [], geometry._trace
    monkeypatch.setattr(geometry, "_trace", lambda *args: traces.append(args[1:]) or trace(*args))
    first = cell_grid(bundle, "top_activation", (88, 120))
    assert cell_grid(bundle, "block4a_dwconv", (88, 120)).cells == (6, 8)
    assert cell_grid(bundle.model, "top_activation", (88, 120)) == first
    assert cell_grid(bundle, "top_activation", (89, 120)).cells == (3, 4)
    assert traces == [((88, 120),), ((89, 120),)]  # one walk per input size, every layer at once

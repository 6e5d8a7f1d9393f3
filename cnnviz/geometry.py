"""Where a layer's cells lie on the image: receptive-field centres, and resampling maps onto them.

Resizing an (h, w) map to the image with half-pixel bilinear interpolation puts cell j at pixel
(j + 0.5)·H/h − 0.5, but the cell's receptive field is centred elsewhere: TF "same" padding on a
stride-2 layer with an even input pads only bottom/right, so output i of a 3×3/2 layer is centred on
input 2i + 1, and Lite0's ``top_activation`` cell j on pixel 32j + 31 at 224, not 32j + 15.5.

:func:`cell_grid` walks the model on a symbolic (1, H, W, C) input (the layers are called, never
copied, and the model is left unchanged) and tracks per tensor and axis the cell count n, the
stride s and offset o of the cell centres o + s·i in input pixels, and the receptive field f.
Pixel i's centre is at coordinate i: an image of H pixels spans [-0.5, H - 0.5].
:func:`resample` puts each cell's value at its centre and interpolates bilinearly in between.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import keras
import numpy as np
from scipy import ndimage

from .caching import per_model_cache
from .layers import _input_shape, _walk, as_keras_model, get_layer, leaves_layers_unchanged

__all__ = ["CellGrid", "cell_grid", "grid_for_map", "half_pixel_grid", "layer_sizes", "resample"]


def _number(value):
    """``value`` as an int when it is one (a readable repr: stride=(32, 32)), else a float."""
    return int(value) if float(value).is_integer() else float(value)


class CellGrid(NamedTuple):
    """Where the cells of a spatial layer lie on the input image, per axis (y, x)."""

    cells: tuple[int, int]  # (h, w) number of cells
    stride: tuple[float, float]  # input pixels between the centres of neighbouring cells
    offset: tuple[float, float]  # input-pixel coordinate of cell (0, 0)'s centre
    field: tuple[float, float]  # theoretical receptive-field size in input pixels (851 for Lite0 top_activation)
    input_size: tuple[int, int]  # (H, W) the input image size this grid was computed for

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """The cell centres in input pixels: (h,) y coordinates and (w,) x coordinates, float64."""
        return tuple(o + s * np.arange(n, dtype="float64") for n, s, o in zip(self.cells, self.stride, self.offset))


def half_pixel_grid(cells, input_size) -> CellGrid:
    """The grid half-pixel resizing assumes (PIL, tf.image.resize): stride H/h, offset (H/h − 1)/2, field = stride.

    ``half_pixel_grid(input_size, input_size)`` is the input's own grid: stride 1, offset 0, field 1.
    """
    stride = tuple(_number(n_in / n) for n, n_in in zip(cells, input_size))
    return CellGrid(tuple(cells), stride, tuple(_number((s - 1) / 2) for s in stride), stride, tuple(input_size))


class _Axis(NamedTuple):
    """One axis of one tensor: n cells, centres o + s·i in input pixels, receptive field f pixels."""
    size: int
    stride: float
    offset: float
    field: float


class _Unplaceable(NamedTuple):
    """The state of a tensor whose cells cnnviz cannot place, because of layer ``culprit`` of type ``kind``."""
    culprit: str
    kind: str
    why: str

    def error(self, name) -> ValueError:
        where = (f"layer {name!r} ({self.kind}): {self.why}" if name == self.culprit else
                 f"layer {name!r}: it comes after layer {self.culprit!r} ({self.kind}), where {self.why}")
        return ValueError(f"cnnviz cannot place the cells of {where}; upsample(heatmap, size) without a model "
                          "(half-pixel resizing) still works")


class _TooSmall(Exception):
    """args: (layer name, layer type, (h, w)): the layer's output would have h or w < 1."""


_WINDOWS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
            keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_GLOBAL_POOLS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def _moved(layer, axes):
    """The (y, x) _Axis after ``layer`` from its input's ``axes``, for the layers that change the spatial
    size by a known rule (convolutions, poolings, padding, cropping, upsampling); else None."""
    moved = []
    for i, (n, s, o, f) in enumerate(axes):
        if isinstance(layer, _WINDOWS):  # TF "same" puts the odd padding pixel at the end
            kernel = (getattr(layer, "kernel_size", None) or layer.pool_size)[i]
            k, t = getattr(layer, "dilation_rate", (1, 1))[i] * (kernel - 1) + 1, layer.strides[i]
            n_out = -(-n // t) if layer.padding == "same" else (n - k) // t + 1
            before = max((n_out - 1) * t + k - n, 0) // 2 if layer.padding == "same" else 0
            moved.append(_Axis(n_out, s * t, o + s * (-before + (k - 1) / 2), f + (k - 1) * s))
        elif isinstance(layer, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)):
            sign = 1 if isinstance(layer, keras.layers.ZeroPadding2D) else -1
            before, after = (sign * p for p in (layer.padding if sign == 1 else layer.cropping)[i])
            moved.append(_Axis(n + before + after, s, o - before * s, f))
        elif isinstance(layer, keras.layers.UpSampling2D):  # nearest copies one cell, bilinear mixes two
            u = layer.size[i]
            moved.append(_Axis(n * u, s / u, o - s * (u - 1) / (2 * u), f + s * (layer.interpolation != "nearest")))
        else:
            return None
    return tuple(moved)


class _Tracer:
    """Replays a model symbolically; each 4-D tensor gets a key and a state ((y, x) _Axis, or _Unplaceable)."""

    def __init__(self, image, input_size):
        self.tensors, self.key_of = [image], {id(image): 0}  # tensors are kept alive so that ids stay unique
        self.states = [tuple(_Axis(n, 1, 0, 1) for n in input_size)]
        self.names, self.sizes = {}, {}  # layer name → key of its (first) output, and its (h, w)

    def run(self, model, inputs):
        """Call ``model`` on ``inputs`` layer by layer; nested models are walked recursively."""
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer) and id(inputs) in self.key_of:
                self._name(layer.name, inputs)
        if isinstance(model, keras.Sequential):
            for layer in model.layers:
                inputs = self.call(layer, inputs)
            return inputs
        if not isinstance(model, keras.Function):
            raise ValueError(f"cnnviz walks Functional and Sequential models, not the subclassed {model.name!r}: "
                             "upsample(heatmap, size) without a model (half-pixel resizing) still works")
        clone = keras.models.clone_model(model, input_tensors=[inputs] if isinstance(model.input, (list, tuple))
                                         else inputs, clone_function=lambda layer: layer, call_function=self.call)
        return clone.outputs[0] if len(clone.outputs) == 1 else clone.outputs

    def _name(self, name, tensor):
        self.names[name], self.sizes[name] = self.key_of[id(tensor)], tuple(tensor.shape[1:3])

    def call(self, layer, *args, **kwargs):
        """clone_model's call_function: call ``layer`` and record the state of each 4-D output."""
        inputs = [self.key_of[id(t)] for t in keras.tree.flatten((args, kwargs)) if id(t) in self.key_of]
        if isinstance(layer, (keras.Sequential, keras.Function)):
            output = self.run(layer, args[0])
        else:
            kind = type(layer).__name__
            first = self.states[inputs[0]] if inputs else _Unplaceable(
                layer.name, kind, "a spatial tensor is made from non-spatial ones")
            expected = None if isinstance(first, _Unplaceable) else _moved(layer, first)
            if expected and min(a.size for a in expected) < 1:  # Keras would raise a less helpful error
                raise _TooSmall(layer.name, kind, tuple(max(a.size, 0) for a in expected))
            output = layer(*args, **kwargs)
            for tensor in keras.tree.flatten(output):
                if isinstance(tensor, keras.KerasTensor) and len(tensor.shape) == 4 and \
                        not isinstance(layer, _GLOBAL_POOLS):
                    self.key_of[id(tensor)] = len(self.states)
                    self.tensors.append(tensor)
                    self.states.append(self._state(layer, tuple(tensor.shape[1:3]), inputs, first, expected))
        for tensor in keras.tree.flatten(output)[:1]:
            if id(tensor) in self.key_of:
                self._name(layer.name, tensor)
        return output

    def _state(self, layer, size, inputs, first, expected):
        """The state of an output of spatial size ``size`` made by ``layer`` from the tensors ``inputs`` (keys)."""
        if isinstance(first, _Unplaceable):
            return first
        why = None
        if expected is not None and tuple(a.size for a in expected) != size:
            why = f"Keras gives size {size}, not {tuple(a.size for a in expected)} as the layer type implies"
        elif expected is None and size != tuple(a.size for a in first):
            why = f"the spatial size changes from {first[0].size}×{first[1].size} to {size[0]}×{size[1]}"
        elif isinstance(layer, keras.layers.Permute) and tuple(layer.dims[:2]) != (1, 2):
            why = "the spatial axes are moved"
        if why is not None:
            return _Unplaceable(layer.name, type(layer).__name__, why)
        if expected is not None:
            return expected
        # Same size (BatchNormalization, ReLU, Add, Concatenate…): the first input's grid, with the largest
        # field among the inputs placed like it
        states = [self.states[key] for key in inputs]
        agree = [s for s in states if not isinstance(s, _Unplaceable) and all(a[:3] == b[:3] for a, b in zip(s, first))]
        if len(agree) < len(states):
            warnings.warn(f"layer {layer.name!r} ({type(layer).__name__}) combines inputs whose cells lie at "
                          "different places; cnnviz uses its first input's grid", stacklevel=2)
        return tuple(a._replace(field=max(s[i].field for s in agree)) for i, a in enumerate(first))


@leaves_layers_unchanged
def _trace(keras_model, input_size) -> tuple[dict, dict]:
    """({layer name: (h, w)}, {layer name: CellGrid or _Unplaceable}) on a (1, H, W, C) input; raises _TooSmall."""
    image = keras.Input(batch_shape=(1, *input_size, _input_shape(keras_model)[-1]), name="geometry_input")
    tracer = _Tracer(image, input_size)
    tracer.run(keras_model, image)
    states = {name: tracer.states[key] for name, key in tracer.names.items()}
    return tracer.sizes, {name: state if isinstance(state, _Unplaceable) else CellGrid(  # (y, x) _Axis → CellGrid
        *(tuple(map(_number, values)) for values in zip(*state)), input_size) for name, state in states.items()}


def _works(keras_model, size) -> bool:
    try:
        return bool(_trace(keras_model, size))
    except Exception:  # noqa: BLE001 - too small, or e.g. a Dense head that only takes the declared size
        return False


def _smallest_input(keras_model, input_size):
    """The smallest (H, W) the model takes (the sizes grow with the input): double until it works, then
    bisect each axis. None when nothing up to 2¹⁶ times ``input_size`` works."""
    size = tuple(2 * n for n in input_size)
    while not _works(keras_model, size):
        if max(size) > 2 ** 16 * max(input_size):
            return None
        size = tuple(2 * n for n in size)
    for axis in (0, 1):
        low, high = 1, size[axis]
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if _works(keras_model, (*size[:axis], middle, *size[axis + 1:])) \
                else (middle + 1, high)
        size = (*size[:axis], low, *size[axis + 1:])
    return size


def _input_size(model, input_size) -> tuple[int, int]:
    """``input_size`` checked, or the ModelBundle's, or the model's fixed input size; channels_first refused."""
    for layer, _ in _walk(as_keras_model(model)):
        if getattr(layer, "data_format", None) == "channels_first":
            raise _Unplaceable(layer.name, type(layer).__name__, "it uses data_format='channels_first'"
                               ).error(layer.name)
    declared = _input_shape(as_keras_model(model))[1:3]
    if input_size is None:
        input_size = getattr(model, "input_size", None) or (declared if None not in declared else None)
    if input_size is None:
        raise ValueError("the model takes any image size: pass input_size=(H, W)")
    input_size = tuple(int(n) for n in input_size)
    if len(input_size) != 2 or min(input_size) < 1:
        raise ValueError(f"input_size must be (H, W) with H, W >= 1, got {input_size}")
    if None not in declared and input_size != tuple(declared):
        raise ValueError(f"the model takes {declared[0]}×{declared[1]} images, not {input_size[0]}×{input_size[1]}")
    return input_size


def _survey(model, input_size) -> tuple[dict, dict]:
    """:func:`_trace` at ``input_size``, cached per model (the 32 most recent sizes), with a clear error."""
    keras_model = as_keras_model(model)

    def walk():
        try:
            return _trace(keras_model, input_size)
        except _TooSmall as small:
            (name, kind, (h, w)), smallest = small.args, _smallest_input(keras_model, input_size)
            hint = f"; the smallest input that works is {smallest[0]}×{smallest[1]}" if smallest else ""
            raise ImageTooSmall(f"the image is too small for this model: layer {name!r} ({kind}) would have size {h}×{w} "
                             f"at input {input_size[0]}×{input_size[1]}{hint}") from None

    return per_model_cache(keras_model, "geometry", size=32).lookup((input_size,), walk)


class ImageTooSmall(ValueError):
    """An input so small that a layer of the model would have no cells."""


def check_fits(model, input_size) -> None:
    """An :class:`ImageTooSmall` error when images of ``input_size`` (H, W) are too small for the model (a
    layer would be empty) — before TensorFlow fails on them; nothing when the model cannot be walked."""
    try:
        layer_sizes(model, input_size)
    except ImageTooSmall:
        raise
    except Exception:  # noqa: BLE001 — not this check's business (an unsupported layer, a fixed-size model)
        return


def layer_sizes(model, input_size=None) -> dict[str, tuple[int, int]]:
    """{layer name: (h, w)} of every spatial layer (nested models' too) at ``input_size`` (H, W), in graph order.

    ``input_size`` defaults to a ModelBundle's or the model's fixed one. An image too small for the model
    raises a ValueError naming the first layer that would be empty and the smallest input that works.
    """
    return dict(_survey(model, _input_size(model, input_size))[0])


def cell_grid(model, layer, input_size=None) -> CellGrid:
    """The :class:`CellGrid` of ``layer`` (a name, also inside nested models; None: the input image) at
    ``input_size`` (H, W). ``model``: a keras.Model or a ModelBundle. Unplaceable layers raise a ValueError."""
    input_size = _input_size(model, input_size)
    grids = _survey(model, input_size)[1]
    if layer is None:
        return half_pixel_grid(input_size, input_size)
    name = getattr(layer, "name", layer)
    if name not in grids:
        found = get_layer(model, name)  # a clear error for a wrong name
        raise ValueError(f"layer {name!r} is not spatial (output shape {getattr(found.output, 'shape', '?')}, not "
                         "(N, h, w, c)): pick a convolutional layer (see cnnviz.conv_layers)")
    if isinstance(grids[name], _Unplaceable):
        raise grids[name].error(name)
    return grids[name]


def grid_for_map(model, map_shape, input_size=None, layer=None) -> CellGrid:
    """The grid of a map of shape ``map_shape`` (..., h, w) (or the map itself).

    With ``layer``: that layer's grid, checked against (h, w). Without: the input's own grid if (h, w) is
    the input size, else the one placement shared by every spatial layer of that size (Lite0's 7×7 layers
    all sit at 32j + 31; the field is the deepest one's). No or several placements raise a ValueError.
    """
    cells = tuple(int(n) for n in (np.shape(map_shape) if hasattr(map_shape, "shape") else map_shape)[-2:])
    input_size = _input_size(model, input_size)
    if layer is not None:
        grid = cell_grid(model, layer, input_size)
        if grid.cells != cells:
            raise ValueError(f"layer {getattr(layer, 'name', layer)!r} has {grid.cells[0]}×{grid.cells[1]} cells at "
                             f"input {input_size[0]}×{input_size[1]}, but the map is {cells[0]}×{cells[1]}")
        return grid
    if cells == input_size:
        return half_pixel_grid(input_size, input_size)
    sizes, grids = _survey(model, input_size)
    matches = [(name, grids[name]) for name, size in sizes.items() if size == cells]
    if not matches:
        known = ", ".join(dict.fromkeys(f"{h}×{w}" for h, w in sizes.values()))
        raise ValueError(f"no spatial layer has a {cells[0]}×{cells[1]} output at input {input_size[0]}×"
                         f"{input_size[1]} (sizes: {known}): pass layer=<the layer the map comes from>")
    last = matches[-1][1]
    if all(isinstance(grid, CellGrid) and grid[:3] == last[:3] for _, grid in matches):
        return last
    raise ValueError(f"the {cells[0]}×{cells[1]} layers ({', '.join(repr(name) for name, _ in matches)}) place their "
                     "cells differently, or cnnviz cannot place them: pass layer=<the layer the map comes from>")


def _cell_coordinates(centres, input_n, display_n) -> np.ndarray:
    """(display_n,) each display pixel's position in cell units (centre j ↦ j), clamped to [0, n − 1]."""
    display_centres = (centres + 0.5) * display_n / input_n - 0.5
    if len(centres) == 1:
        return np.zeros(display_n)
    return np.interp(np.arange(display_n, dtype="float64"), display_centres, np.arange(len(centres), dtype="float64"))


def resample(maps, grid: CellGrid, size=None) -> np.ndarray:
    """Maps (..., h, w) → float32 (..., H, W): each cell's value at its centre, bilinear in between.

    (H, W) = ``size`` or ``grid.input_size``; another display size first maps the centres from input to
    display pixels, (p + 0.5)·size/input_size − 0.5. Beyond the outermost centres: the edge value.
    """
    maps = np.asarray(maps, dtype="float64")
    if maps.ndim < 2 or tuple(maps.shape[-2:]) != tuple(grid.cells):
        raise ValueError(f"the grid has {grid.cells[0]}×{grid.cells[1]} cells, the maps have shape {maps.shape}")
    size = tuple(int(n) for n in (size or grid.input_size))
    ys, xs = (_cell_coordinates(c, n_in, n_out) for c, n_in, n_out in zip(grid.centres(), grid.input_size, size))
    coordinates = np.stack(np.meshgrid(ys, xs, indexing="ij"))  # (2, H, W) in cell units
    flat = maps.reshape(-1, *maps.shape[-2:])
    out = np.empty((len(flat), *size), dtype="float32")
    for i, one in enumerate(flat):
        out[i] = ndimage.map_coordinates(one, coordinates, order=1, mode="nearest")
    return out.reshape(*maps.shape[:-2], *size)

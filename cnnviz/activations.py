"""Intermediate activations: what each layer of a CNN computes for one photo (notebook 01).

A layer's activation is a stack of feature maps, shape (N, h, w, c): one h×w map per channel.
:func:`layer_activations` reads many layers in one forward pass (also inside nested models),
:func:`activation_grid` tiles one stack into a single picture with the classic post-processing of
Deep Learning with Python, minus its two defects: a dead (constant) channel gives a flat grey tile
instead of NaN, and a channel count not divisible by ``images_per_row`` keeps every channel.
"""
from __future__ import annotations

import keras
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .geometry import check_fits
from .images import as_batch, tile
from .layers import as_keras_model, check_images, conv_layers, tap_model
from .models import unwrap

__all__ = ["activation_model", "layer_activations", "dead_channels", "activation_grid", "plot_channel",
           "plot_activation_grid", "plot_dead_fraction"]

GAP_COLOUR = (1.0, 1.0, 1.0)  # separators and empty slots in plotted grids
DEAD_COLOUR = (0.82, 0.82, 0.82)  # dead channels in plotted grids


def _layer_names(keras_model, layer_names, depth: int) -> list[str]:
    """The names asked for as a list, or the first ``depth`` spatial layers when ``None``."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth (how many spatial layers to read) must be a positive int, got {depth!r}")
    if layer_names is None:
        return [info.name for info in conv_layers(keras_model)[:depth]]
    layer_names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
    if not layer_names:
        raise ValueError("no layers to read: pass layer_names, e.g. [info.name for info in cnnviz.conv_layers(model)]")
    return layer_names


def activation_model(model, layer_names=None, depth: int = 8) -> keras.Model:
    """A Keras model: model input (N, H, W, 3) → [activation (N, h, w, c) of each named layer].

    ``layer_names=None`` takes the first ``depth`` spatial layers, like the classic
    ``model.layers[:8]``. Layers may sit inside nested models; one forward pass computes them all.
    """
    keras_model = as_keras_model(model)
    return tap_model(keras_model, _layer_names(keras_model, layer_names, depth), score=None)


def layer_activations(model, images, layer_names=None, depth: int = 8) -> dict[str, np.ndarray]:
    """{layer name: activation (N, h, w, c)} for ``images`` — one forward pass for all layers.

    model: a :class:`~cnnviz.ModelBundle` (images are pixels in [0, 255], preprocessed here) or a
    Keras model (images as it expects them). images: (H, W, 3) or (N, H, W, 3).
    ``layer_names=None``: the first ``depth`` spatial layers.
    """
    keras_model, preprocess = unwrap(model)
    names = _layer_names(keras_model, layer_names, depth)
    batch = as_batch(images)[0]
    check_images(keras_model, batch)
    check_fits(keras_model, batch.shape[1:3])
    outputs = activation_model(keras_model, names)(preprocess(batch), training=False)
    return {name: keras.ops.convert_to_numpy(output) for name, output in zip(names, outputs)}


def dead_channels(activation) -> np.ndarray:
    """Which channels are dead: all zero over the whole map. (…, h, w, c) → bool (…, c)."""
    activation = np.asarray(activation)
    if activation.ndim < 3:
        raise ValueError(f"expected an activation (..., h, w, c), got shape {activation.shape}")
    return np.all(activation == 0, axis=(-3, -2))


def _single_image(activation) -> np.ndarray:
    """(1, h, w, c) or (h, w, c) → float (h, w, c); a batch of several images is an error."""
    activation = np.asarray(activation, dtype="float32")
    if activation.ndim == 4 and activation.shape[0] == 1:
        activation = activation[0]
    if activation.ndim != 3:
        raise ValueError(f"expected the activation of one image, (1, h, w, c) or (h, w, c), got shape "
                         f"{activation.shape}; for a batch pick one image: activation[i:i + 1]")
    if activation.shape[-1] == 0:
        raise ValueError("the activation has no channels")
    return activation


def _normalise(maps: np.ndarray) -> np.ndarray:
    """The classic post-processing per channel: (x - mean) / std · 64 + 128, clipped to uint8.

    maps: (h, w, c). A constant channel (std 0, e.g. dead) becomes a flat 128 tile, never NaN.
    """
    centred = maps - maps.mean(axis=(0, 1))
    std = centred.std(axis=(0, 1))
    scaled = centred / np.where(std > 0, std, 1.0) * 64 + 128
    return np.clip(scaled, 0, 255).astype("uint8")


def _tile(maps: np.ndarray, images_per_row: int, separator: int, fill) -> np.ndarray:
    """Lay the channels of (h, w, c) row by row into one 2-D image; gaps and empty slots get ``fill``."""
    return tile(np.moveaxis(maps, -1, 0), min(images_per_row, maps.shape[-1]), separator, fill)


def activation_grid(activation, images_per_row: int = 16, separator: int = 0, fill: int = 255) -> np.ndarray:
    """Tile an activation (1, h, w, c) into one uint8 image: channel k at row k // cols, column k % cols.

    Every channel is kept (the last row may be partly empty, filled with ``fill``); ``separator``
    pixels of ``fill`` go between tiles. Shape: (rows·(h + s) - s, cols·(w + s) - s) with
    cols = min(images_per_row, c), rows = ceil(c / cols).
    """
    if images_per_row < 1 or separator < 0 or not 0 <= fill <= 255:
        raise ValueError(f"need images_per_row >= 1, separator >= 0 and fill in [0, 255], got "
                         f"{images_per_row}, {separator}, {fill}")
    return _tile(_normalise(_single_image(activation)), images_per_row, separator, np.uint8(fill))


def _no_ticks(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def plot_channel(activation, channel: int, name: str | None = None, ax=None):
    """Draw one channel of an activation (1, h, w, c) with ``matshow`` and viridis, with a colorbar."""
    maps = _single_image(activation)
    if not -maps.shape[-1] <= channel < maps.shape[-1]:
        raise ValueError(f"channel {channel} does not exist: the activation has {maps.shape[-1]} channels")
    ax = ax or plt.figure(figsize=(4, 3.6)).gca()
    image = ax.matshow(maps[:, :, channel], cmap="viridis")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(f"{name + ' · ' if name else ''}channel {channel}")
    _no_ticks(ax)
    return ax


def plot_activation_grid(activation, name: str = "", images_per_row: int = 16, max_channels: int | None = None,
                         width: float = 14.0, ax=None):
    """Draw every channel of an activation (1, h, w, c) as a viridis grid; dead channels in light grey.

    The title gives the layer name, the shape and how many channels are dead (of all c, even when
    ``max_channels`` shows only the first ones). Width in inches; the height follows the grid.
    """
    maps = _single_image(activation)
    dead = dead_channels(maps)
    shown = maps[:, :, :max_channels]
    separator = max(1, round(shown.shape[0] / 28))
    grid = activation_grid(shown, images_per_row, separator)
    labels = _tile(np.broadcast_to(np.arange(shown.shape[-1]), shown.shape), images_per_row, separator, -1)
    picture = matplotlib.colormaps["viridis"](grid / 255.0)[..., :3]
    picture[labels < 0] = GAP_COLOUR
    picture[(labels >= 0) & dead[np.maximum(labels, 0)]] = DEAD_COLOUR
    if ax is None:
        ax = plt.figure(figsize=(width, width * grid.shape[0] / grid.shape[1] + 0.5)).gca()
    ax.imshow(picture)
    h, w, c = maps.shape
    part = f" · channels 0–{shown.shape[-1] - 1} shown" if shown.shape[-1] < c else ""
    ax.set_title(f"{name}  {h}×{w}×{c}{part} · {dead.sum()} of {c} channels dead (grey)", loc="left")
    _no_ticks(ax)
    return ax


def plot_dead_fraction(activations: dict, labels=None, ax=None):
    """Bar chart of the fraction of dead channels per layer, one bar per image.

    activations: {layer name: (N, h, w, c)} as returned by :func:`layer_activations`.
    """
    names = list(activations)
    fractions = np.array([dead_channels(activations[name]).mean(axis=-1) for name in names])  # (layers, N)
    labels = labels or [f"image {i}" for i in range(fractions.shape[1])]
    ax = ax or plt.figure(figsize=(12, 4)).gca()
    positions = np.arange(len(names))
    width = 0.8 / fractions.shape[1]
    for i, label in enumerate(labels):
        ax.bar(positions + (i - (fractions.shape[1] - 1) / 2) * width, fractions[:, i], width, label=label)
    ax.set_xticks(positions, names, rotation=90, fontsize=8)
    ax.set_ylabel("fraction of channels all zero")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return ax

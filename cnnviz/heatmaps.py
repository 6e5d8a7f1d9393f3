"""Heatmap pictures — plumbing shared by every method, the explorer, the CLI and the trust checks.

- :func:`normalise`: ReLU, then ÷ max (an all-zero map stays zero, never NaN);
- :func:`upsample`: a layer's (h, w) map to the image's (H, W). Without a model, half-pixel bilinear
  (cell j at the centre of its block, like ``tf.image.resize`` or PIL); with the model, each cell lands
  on the centre of its receptive field, computed from the model's own layers (:mod:`cnnviz.geometry`).
  On Lite0 the two differ by half a cell: top_activation's cell j is centred on pixel 32j + 31, not
  32j + 15.5, because TF's "same" padding on stride 2 pads only the bottom and the right;
- :func:`overlay`, :func:`save_heatmap`, :func:`show_heatmaps`: coloured (a matplotlib colormap) and
  blended onto the photo; :func:`png_bytes` for widgets.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from .checks import check_fraction
from .geometry import grid_for_map, half_pixel_grid, resample
from .images import check_finite, image_size

__all__ = ["normalise", "overlay", "png_bytes", "save_gradcam", "save_heatmap", "show_gradcam", "show_heatmaps",
           "upsample", "upsample_where_known"]


def normalise(heatmaps, axis=(-2, -1)) -> np.ndarray:
    """ReLU, then divide by the maximum over ``axis``; an all-zero map stays zero (never NaN)."""
    heatmaps = np.maximum(np.asarray(heatmaps, dtype="float32"), 0)
    top = heatmaps.max(axis=axis, keepdims=True)
    return np.divide(heatmaps, top, out=np.zeros_like(heatmaps), where=top > 0)


def upsample(maps, size, model=None, layer=None, input_size=None) -> np.ndarray:
    """Maps (h, w) or (..., h, w) resized (bilinear) to ``size`` = (H, W) (an int: a square) → (..., H, W).

    Without ``model``: half-pixel centres, cell j at (j + ½)·H/h − ½. With ``model`` (a bundle or a Keras
    model): each cell on the centre of its receptive field in the image the model saw, of size
    ``input_size`` (default ``size``); ``layer`` is the layer the maps come from (None: found from the
    maps' shape). Outside the outermost centres the edge cells' values are kept.
    """
    size = image_size(size)
    maps = check_finite(np.asarray(maps, dtype="float32"), "the heatmap")
    if maps.ndim < 2 or 0 in maps.shape[-2:]:
        raise ValueError(f"upsample takes maps (h, w) or (..., h, w), got shape {maps.shape}")
    if model is None:
        grid = half_pixel_grid(maps.shape[-2:], size)
    else:
        grid = grid_for_map(model, maps.shape[-2:], size if input_size is None else image_size(input_size), layer)
    return resample(maps, grid, size)


def upsample_where_known(maps, size, model=None, layer=None) -> np.ndarray:
    """:func:`upsample` with each cell on its receptive field's centre when ``model``'s geometry places maps
    of this shape (at ``layer``, or found from the shape), else with half-pixel centres — for maps that
    may come from anywhere (a custom explorer method, a coarse random map in a trust check)."""
    size = image_size(size)
    if model is not None:
        try:
            grid_for_map(model, np.shape(maps)[-2:], size, layer)
        except ValueError:
            model = layer = None
    return upsample(maps, size, model, layer)


def _colours(heatmap: np.ndarray, colormap: str) -> np.ndarray:
    """(H, W) in [0, 1] → (H, W, 3) in [0, 255] by a matplotlib colormap (a clear error for a bad name)."""
    if colormap not in matplotlib.colormaps:
        raise ValueError(f"unknown colormap {colormap!r}: use a matplotlib name such as 'jet', 'turbo', "
                         "'inferno' or 'viridis' (see matplotlib.colormaps)")
    return matplotlib.colormaps[colormap](np.clip(heatmap, 0, 1))[..., :3] * 255


def overlay(image, heatmap, alpha: float = 0.4, colormap: str = "jet", model=None, layer=None,
            input_size=None) -> np.ndarray:
    """The heatmap (h, w) in [0, 1], coloured and blended onto ``image`` (H, W, 3) in [0, 255] → uint8.

    The map is upsampled to the image's resolution (see :func:`upsample`: with ``model``, each cell on
    its receptive field's centre; ``input_size`` is the size the model saw when it differs from the
    image's). alpha: the heatmap's weight in [0, 1]. colormap: a matplotlib colormap name.
    """
    image = check_finite(np.asarray(image, dtype="float32"), "the image")
    heatmap = check_finite(np.asarray(heatmap, dtype="float32"), "the heatmap")
    if image.ndim != 3 or heatmap.ndim != 2:
        raise ValueError(f"overlay takes one image (H, W, 3) and one heatmap (h, w), got {image.shape} and "
                         f"{heatmap.shape}")
    alpha = check_fraction("alpha (0: only the photo, 1: only the heatmap)", alpha)
    colours = _colours(upsample(heatmap, image.shape[:2], model, layer, input_size), colormap)
    return np.clip((1 - alpha) * image + alpha * colours, 0, 255).astype("uint8")


def save_heatmap(image, heatmap, path, alpha: float = 0.4, colormap: str = "jet", model=None, layer=None,
                 input_size=None) -> Path:
    """Save the overlay as an image file (like keras.io's ``save_and_display_gradcam``); returns the path."""
    path = Path(path)
    Image.fromarray(overlay(image, heatmap, alpha, colormap, model, layer, input_size)).save(path)
    return path


def show_heatmaps(image, heatmaps, titles=(), alpha: float = 0.4, colormap: str = "jet", size: float = 3.2,
                  model=None, layer=None):
    """Plot the image, then one overlay per heatmap (h, w) or (k, h, w), in a row; returns the figure."""
    import matplotlib.pyplot as plt

    heatmaps = np.asarray(heatmaps)
    heatmaps = heatmaps[None] if heatmaps.ndim == 2 else heatmaps
    titles = ["image", *titles] if len(titles) == len(heatmaps) else list(titles)
    pictures = [np.clip(image, 0, 255).astype("uint8")] + [overlay(image, h, alpha, colormap, model, layer)
                                                           for h in heatmaps]
    figure, axes = plt.subplots(1, len(pictures), figsize=(size * len(pictures), size), squeeze=False)
    for ax, picture, title in zip(axes[0], pictures, [*titles, *[""] * len(pictures)]):
        ax.imshow(picture)
        ax.set_title(title)
        ax.axis("off")
    figure.tight_layout()
    return figure


save_gradcam, show_gradcam = save_heatmap, show_heatmaps  # the names notebook 03 and keras.io use


def png_bytes(pixels) -> bytes:
    """(H, W, 3) pixels in [0, 255] → the bytes of a PNG file (fast compression: for widgets)."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()

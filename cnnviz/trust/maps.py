"""What the trust checks share — plumbing: the model's probabilities, the classes, maps at image size."""
from __future__ import annotations

import numpy as np

from ..heatmaps import normalise, upsample_where_known
from ..images import check_finite, image_size
from ..models import unwrap
from ..targets import class_matrix
from ..taps import compiled

BATCH_SIZE = 16  # images per forward pass: Lite0 at 224² holds ~20 MB of activations per image


def probabilities(model, images, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """What the model says, (N, classes), for images (N, H, W, C) as given (pixels for a bundle), in chunks.

    The softmax of the logits; a sigmoid head's sigmoid; a model whose softmax cnnviz could not take off
    is read as it is (never a softmax of probabilities). One compiled function per model, shared with
    the methods and the explorer.
    """
    keras_model, preprocess = unwrap(model)
    function = compiled(keras_model, preprocess)
    return np.concatenate([function.probabilities(images[i:i + batch_size]).numpy()
                           for i in range(0, len(images), batch_size)])


def classes_of(class_index, probabilities_: np.ndarray) -> np.ndarray:
    """(N,) class indices: None → the top class of each row of ``probabilities_``; an int or N ints."""
    n, num_classes = probabilities_.shape
    if class_index is None:
        return probabilities_.argmax(axis=1)
    classes = class_matrix(class_index, n, num_classes)
    if classes.shape[1] != 1:
        raise ValueError(f"class_index: give None, an int or {n} ints (one per image), got shape "
                         f"{np.shape(class_index)}")
    return classes[:, 0]


def maps_at(maps, size, n: int, relu: bool = False, model=None, layer=None) -> np.ndarray:
    """Maps (n, h, w) or (h, w) → (n, H, W) in [0, 1]. relu: ReLU then ÷ max (mass); else min-max (a
    ranking: monotone, so any map's order is kept). A constant map becomes all zeros. With ``model``
    each cell lands on its receptive field's centre (``layer`` None: found from the maps' shape; a shape
    no layer has, e.g. a coarse random map, is upsampled with half-pixel centres)."""
    maps = check_finite(np.asarray(maps, dtype="float32"), "the maps")
    maps = maps[None] if maps.ndim == 2 else maps
    if maps.ndim != 3 or len(maps) != n:
        raise ValueError(f"maps must be {n} heatmaps (N, h, w), one per image, got shape {maps.shape}")
    size = image_size(size)
    if not relu:
        maps = maps - maps.min(axis=(1, 2), keepdims=True)
    return upsample_where_known(normalise(maps), size, model, layer)

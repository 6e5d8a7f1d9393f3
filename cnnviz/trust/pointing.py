"""The pointing game on collages: does the map point at the object it names? (notebook 06)

:func:`pointing_game` (Zhang et al. 2018) and :func:`mass_in_box` on :func:`collage` s of two photos,
where the truth is known by construction; :func:`pointing_table` runs them on the bundled photos. An
all-zero map points nowhere: a miss, with mass 0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import check_count
from ..images import fit, image_size, load_image
from ..methods import gradcam
from ..models import ModelBundle, class_names
from .maps import maps_at, probabilities

__all__ = ["PAIRS", "PointingResult", "collage", "mass_in_box", "pointing_game", "pointing_table"]

# Collages of two bundled photos whose top classes Lite0 recognises confidently, each photo once per side
PAIRS = (("cat", "coffee"), ("coffee", "cat"), ("camera", "coffee"), ("coffee", "camera"), ("cat", "camera"))


def _boxes(boxes, n: int, size) -> np.ndarray:
    """Boxes (n, 4) as integer (top, left, bottom, right) pixels, bottom/right exclusive, checked inside ``size``."""
    boxes = np.asarray(boxes)
    boxes = boxes[None] if boxes.ndim == 1 else boxes
    if boxes.shape != (n, 4):
        raise ValueError(f"boxes must be {n} boxes (top, left, bottom, right), one per map; got shape {boxes.shape}")
    height, width = size
    top, left, bottom, right = boxes.T
    if ((top < 0) | (left < 0) | (bottom > height) | (right > width) | (top >= bottom) | (left >= right)).any():
        raise ValueError(f"every box (top, left, bottom, right) must lie inside the {height}×{width} image with "
                         f"top < bottom and left < right; got {boxes.tolist()}")
    return boxes.astype(int)


def pointing_game(maps, boxes, size, tolerance: int = 15, model=None, layer=None) -> np.ndarray:
    """Hit (N,) bool when the maximum of each map (N, h, w), upsampled to ``size`` (H, W), lies in its box
    (top, left, bottom, right) grown by ``tolerance`` pixels on every side (Zhang et al. 2018: 15 px). An
    all-zero map is a miss. With ``model`` (and ``layer``), cells sit on their receptive fields' centres."""
    tolerance = check_count("tolerance (pixels)", tolerance, minimum=0)
    size = image_size(size)
    boxes = _boxes(boxes, len(maps) if np.ndim(maps) == 3 else 1, size)
    resized = maps_at(maps, size, len(boxes), relu=True, model=model, layer=layer)
    flat = resized.reshape(len(boxes), -1)
    rows, columns = np.unravel_index(flat.argmax(axis=1), size)
    top, left, bottom, right = boxes.T
    inside = ((rows >= top - tolerance) & (rows < bottom + tolerance)
              & (columns >= left - tolerance) & (columns < right + tolerance))
    return inside & (flat.max(axis=1) > 0)


def mass_in_box(maps, boxes, size, model=None, layer=None) -> np.ndarray:
    """Share (N,) of each map's positive mass, upsampled to ``size``, inside its box (0 for an empty map)."""
    size = image_size(size)
    boxes = _boxes(boxes, len(maps) if np.ndim(maps) == 3 else 1, size)
    resized = maps_at(maps, size, len(boxes), relu=True, model=model, layer=layer)
    inside = np.array([m[t:b, l:r].sum() for m, (t, l, b, r) in zip(resized, boxes)])
    total = resized.sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def collage(left, right, size=(224, 224)):
    """Two photos side by side: each (a sample's name or an (H, W, 3) array) centre-cropped to half the
    width and resized. Returns the image (H, W, 3) in [0, 255] and boxes (2, 4): left half, right half."""
    height, width = image_size(size)
    half = width // 2
    photos = [load_image(p) if isinstance(p, str) else np.asarray(p, dtype="float32") for p in (left, right)]
    image = np.concatenate([fit(photos[0], (height, half)), fit(photos[1], (height, width - half))], axis=1)
    return image, np.array([[0, 0, height, half], [0, half, height, width]])


class PointingResult(NamedTuple):
    """One row of :func:`pointing_table`: the collage "left|right", the photo explained, its class, the
    pointing game's hit and the map's mass in that photo's half."""

    pair: str
    target: str
    class_name: str
    hit: bool
    mass: float


def pointing_table(model, method=gradcam, pairs=PAIRS, layer=None, tolerance: int = 15) -> list[PointingResult]:
    """Pointing game and mass-in-box of ``method``'s maps on collages of bundled photos.

    model: a ModelBundle (photos are pixels). For each pair, each photo is a target in turn, its class
    being the model's top class for that photo alone (centre crop 87.5%). ``method(model, images,
    class_index=..., layer=...)`` gives the maps (layer passed only when given). One call for all maps.
    Class names are ImageNet's for a 1000-class model, else the index as text; mass rounded to 4 digits.
    """
    if not isinstance(model, ModelBundle):
        raise TypeError("pointing_table needs a cnnviz.ModelBundle (it feeds photos in pixels); "
                        "wrap your model in one, or call pointing_game on your own maps")
    names = sorted({name for pair in pairs for name in pair})
    photos = np.stack([load_image(name, size=model.input_size, crop=0.875) for name in names])
    found = probabilities(model, photos)
    top = dict(zip(names, found.argmax(axis=1)))
    imagenet = found.shape[1] == len(class_names())
    images, boxes, rows = [], [], []
    for left, right in pairs:
        image, halves = collage(left, right, model.input_size)
        for target, box in zip((left, right), halves):
            images.append(image)
            boxes.append(box)
            rows.append((f"{left}|{right}", target, int(top[target])))
    classes = np.array([row[2] for row in rows])
    maps = method(model, np.stack(images), class_index=classes, **({} if layer is None else {"layer": layer}))
    hits = pointing_game(maps, boxes, model.input_size, tolerance, model, layer)
    masses = mass_in_box(maps, boxes, model.input_size, model, layer)
    return [PointingResult(pair, target, class_names()[c] if imagenet else str(c), bool(h), round(float(m), 4))
            for (pair, target, c), h, m in zip(rows, hits, masses)]

"""The class explorer's methods — what its picker offers (notebook 04), without widgets or state.

Every method of the registry (:data:`cnnviz.METHODS`), with its cheaper ``explorer_options``: registering a
method adds it here. :data:`EXPLORER_METHODS` maps each label to an :class:`ExplorerMethod`, which gives the
RAW maps (before any division by their maximum: a normalised map has lost the magnitude the shared scale
compares) of k classes of one photo, and the logits; :func:`explorer_method` makes one from any
``raw_maps(bundle, pixels (H, W, 3), layer=…, classes=(k,)) → (k, h, w) ≥ 0``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from .methods import METHODS, Method
from .models import ModelBundle
from .taps import compiled

__all__ = ["EXPLORER_METHODS", "ExplorerMethod", "RawMaps", "explorer_method", "explorer_methods", "logits_of",
           "maps_at_layer", "top_at_once", "uses_layer"]


class RawMaps(NamedTuple):
    """What one call of an explorer method gives for one photo.

    classes: (k,) the classes explained. maps: (k, h, w) float, ≥ 0, NOT normalised.
    logits: (C,) the model's logits for the photo (to rank classes and show probabilities).
    """

    classes: np.ndarray
    maps: np.ndarray
    logits: np.ndarray


class ExplorerMethod:
    """(bundle, pixels (H, W, 3) in [0, 255], layer name, classes (k,) or None, top) → :class:`RawMaps`;
    classes None → the ``top`` best classes by logit (only the best when not ``top_at_once``).

    uses_layer: takes a layer (else it maps the input pixels, for any layer); at_layer: its maps have the
    layer's resolution (guided Grad-CAM uses a layer but maps the pixels). top_at_once: the top classes
    cost one call together (else each class is a whole run: explained only when shown)."""

    def __init__(self, function: Callable, uses_layer: bool, top_at_once: bool, doc: str = "",
                 at_layer: bool | None = None):
        self.function, self.uses_layer, self.top_at_once = function, uses_layer, top_at_once
        self.at_layer = uses_layer if at_layer is None else at_layer
        self.__doc__ = doc

    def __call__(self, bundle: ModelBundle, pixels, layer: str, classes=None, top: int = 5) -> RawMaps:
        return self.function(bundle, np.asarray(pixels, "float32"), layer, classes,
                             top if self.top_at_once else 1)


def from_registry(method: Method, **options) -> ExplorerMethod:
    """The explorer's entry for a registered method, with its ``explorer_options`` (and ``options``)."""
    settings = {**method.explorer_options, **options}

    def function(bundle, pixels, layer, classes, top):
        wanted = None if classes is None else np.asarray(classes, "int64")[None]
        raw = method.maps(bundle, pixels[None], layer if method.uses_layer else None, wanted, top=top, **settings)
        return RawMaps(raw.classes[0].astype("int64"), np.maximum(raw.maps[0], 0), raw.logits[0])

    return ExplorerMethod(function, method.uses_layer, not method.costly, type(method).__doc__, method.at_layer)


def explorer_method(raw_maps: Callable, uses_layer: bool = True, top_at_once: bool = True) -> ExplorerMethod:
    """An explorer method from ``raw_maps(bundle, pixels, layer=…, classes=…) → (k, h, w) ≥ 0`` (classes
    (k,) ints): one forward pass finds the logits (and the top classes when none are given), then
    ``raw_maps`` runs."""
    def function(bundle, pixels, layer, classes, top):
        logits = logits_of(bundle, pixels)
        classes = np.argsort(-logits, kind="stable")[:top] if classes is None else classes
        classes = np.asarray(classes, dtype="int64")
        return RawMaps(classes, np.asarray(raw_maps(bundle, pixels, layer=layer, classes=classes)), logits)

    return ExplorerMethod(function, uses_layer, top_at_once, raw_maps.__doc__ or "")


def logits_of(bundle: ModelBundle, pixels) -> np.ndarray:
    """The logits (C,) of one photo (H, W, 3): one forward pass of the model's shared compiled function."""
    functions = compiled(bundle.model, bundle.preprocess)
    _, _, logits = functions.scores(np.asarray(pixels, "float32")[None], np.full((1, 1), -1, "int32"))
    return logits.numpy()[0]


def _label(method: Method) -> str:
    return f"{method.label} ({method.explorer_note})" if method.explorer_note else method.label


# label → method, in the registry's order. CAM methods map at the layer; pixel methods ignore it. Cost of a
# photo's first call: the gradient CAMs one forward + backward pass for the top 5 classes together, Score-CAM
# 64 masked forward passes, occlusion and RISE their changed images (all classes from the same passes),
# saliency one pass per class; SmoothGrad (16 noisy copies) and Integrated Gradients (32 steps) are 16–32× a
# pass PER CLASS, so they explain a class only when it is shown (or all top classes when the shared scale
# needs them). Switching back to a class seen before is free.
EXPLORER_METHODS: dict[str, ExplorerMethod] = {_label(method): from_registry(method) for method in METHODS.values()}


def uses_layer(label: str) -> bool:
    """Whether the method ``label`` maps at a layer (CAM methods) or on the input pixels."""
    return getattr(EXPLORER_METHODS[label], "uses_layer", True)


def maps_at_layer(label: str) -> bool:
    """Whether the maps of method ``label`` have the layer's resolution (else the image's)."""
    return getattr(EXPLORER_METHODS[label], "at_layer", uses_layer(label))


def top_at_once(label: str) -> bool:
    """Whether the method ``label`` explains a photo's top classes together (else one class as asked)."""
    return getattr(EXPLORER_METHODS[label], "top_at_once", True)


def explorer_methods() -> dict[str, ExplorerMethod]:
    """The explorer's methods, {label: method}, in the picker's order (a copy: edit
    :data:`EXPLORER_METHODS` to add one)."""
    return dict(EXPLORER_METHODS)

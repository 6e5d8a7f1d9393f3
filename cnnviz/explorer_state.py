"""The class explorer's state, without widgets: photo, class, layer, method, scale and a cache of maps.

:class:`ExplorerState` answers "which heatmap is on display?" (:attr:`~ExplorerState.heatmap`);
:class:`~cnnviz.ClassExplorer` is a thin ipywidgets view over it. Maps are cached RAW (before any
normalisation), keyed (method, layer, class), for the current photo only, in a bounded LRU:

- switching class among those already explained costs no forward pass (a method explains the top
  classes of a photo in one call, :meth:`cnnviz.methods.Method.maps`);
- the displayed map is ``raw / scale``: ``scale`` is the map's own maximum (every class looks as
  strong as the best), or with the *shared scale* the largest raw value over this photo's top
  classes and the current class — so a class that is absent (goldfish on the cat) looks weak.

The methods it offers live in :mod:`cnnviz.explorer_methods` (the registry's, with cheaper settings).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .caching import LRUCache
from .checks import check_fraction
from .explorer_methods import (EXPLORER_METHODS, ExplorerMethod, RawMaps, explorer_method,  # noqa: F401
                               explorer_methods, logits_of, maps_at_layer, top_at_once, uses_layer)
from .images import EVALUATION_CROP, as_batch, fit, load_image, sample_images, sample_photo
from .layers import spatial_layer
from .models import ModelBundle

__all__ = ["EXPLORER_METHODS", "ExplorerMethod", "ExplorerState", "RawMaps", "explorer_method",
           "explorer_methods", "logits_of", "maps_at_layer", "top_at_once", "uses_layer"]

CACHED_MAPS = 64  # raw (method, layer, class) maps kept for the current photo: ≥ 10 layers' top 5, ≤ 3.2 MB


def photo_pixels(image, size, crop: float) -> np.ndarray:
    """A sample's name, a path or pixels (H, W, 3) in [0, 255] → float32 pixels at ``size``, centre
    crop ``crop``. NaN, inf or a wrong shape → ValueError."""
    if isinstance(image, (str, Path)):
        image = load_image(image)
    batch, single = as_batch(image)
    if not single or batch.shape[-1] != 3:
        raise ValueError(f"give one RGB image (H, W, 3) in [0, 255], got shape {np.shape(image)}")
    return fit(batch[0], size, crop)  # as_batch has refused NaN, inf and empty input


class ExplorerState:
    """What the explorer shows, as plain data: no widgets. Setting a field computes what it needs.

    bundle: a :class:`~cnnviz.ModelBundle`. top: how many best classes are explained per photo.
    crop: centre crop of added photos (None: the series' 87.5%); bundled photos are cropped as every
    notebook shows them (:func:`cnnviz.sample_photo`: 87.5%, the collage whole). layer: None → the model's
    last conv layer. No photo is shown
    until :meth:`select_photo` or :meth:`add_photo`. Fields: :attr:`photo_name`, :attr:`pixels` (H, W, 3),
    :attr:`class_index`, :attr:`layer`, :attr:`method`, :attr:`shared_scale`; results:
    :attr:`heatmap` (h, w) in [0, 1], :attr:`probabilities` (C,), :attr:`best` (top,);
    :attr:`forward_passes` counts method calls (a new photo, layer or method: 1; a cached class: 0).
    """

    def __init__(self, bundle: ModelBundle, top: int = 5, crop: float | None = None, layer: str | None = None,
                 method: str = "Grad-CAM", cache_size: int = CACHED_MAPS):
        if not isinstance(bundle, ModelBundle):
            raise TypeError("the explorer needs a cnnviz.ModelBundle (e.g. cnnviz.load_model()), "
                            f"got {type(bundle).__name__}")
        if not isinstance(top, (int, np.integer)) or not 1 <= top <= 1000:
            raise ValueError(f"top must be a whole number in [1, 1000], got {top!r}")
        if cache_size < top + 1:
            raise ValueError(f"cache_size must hold the top {top} maps and one more, got {cache_size}")
        self.bundle, self.top = bundle, int(top)
        self.crop = EVALUATION_CROP if crop is None else check_fraction("crop", crop, zero=False)
        self.photos: dict[str, np.ndarray] = {}  # name → pixels at the model's input size
        self.forward_passes = 0
        self._shared_scale = False
        self._maps = LRUCache(cache_size)  # (method, layer, class) → raw (h, w), for the current photo
        self._layer = spatial_layer(bundle.model, layer).name  # None → the last spatial layer
        self._method = self._checked_method(method)
        self.photo_name = None
        self.class_index = None
        self.probabilities = self.best = None

    # ---- fields -----------------------------------------------------------------------------------
    @property
    def pixels(self) -> np.ndarray:
        """The current photo as the model sees it: float32 (H, W, 3) in [0, 255]."""
        return self.photos[self.photo_name]

    @property
    def layer(self) -> str:
        return self._layer

    @layer.setter
    def layer(self, name: str):
        self._change("_layer", spatial_layer(self.bundle.model, name).name)  # a wrong name: ValueError

    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, label: str):
        self._change("_method", self._checked_method(label))

    @property
    def shared_scale(self) -> bool:
        """False: each map divided by its own maximum; True: by the maximum over the photo's top classes."""
        return self._shared_scale

    @shared_scale.setter
    def shared_scale(self, on: bool):
        self._change("_shared_scale", bool(on))  # the top classes' maps, if a costly method lacks them

    def _change(self, field: str, value) -> None:
        """Set ``field`` and compute what the display needs; on any failure the state is left as it was."""
        previous = getattr(self, field)
        setattr(self, field, value)
        try:
            self._explain_top()
        except Exception:
            setattr(self, field, previous)
            raise

    def _checked_method(self, label: str) -> str:
        if label not in EXPLORER_METHODS:
            raise ValueError(f"unknown method {label!r}; choose one of {', '.join(EXPLORER_METHODS)}")
        return label

    def add_photo(self, name: str, image) -> None:
        """Add a photo (sample name, path or pixels of any size; fitted to the model) and show it."""
        self.photos[name] = photo_pixels(image, self.bundle.input_size, self.crop)
        self.select_photo(name)

    def select_photo(self, name: str) -> None:
        """Show a photo added before, or a bundled sample by name: one pass explains its top classes."""
        if name not in self.photos:
            if name not in sample_images():
                raise ValueError(f"no photo {name!r}; add it first, or pick a sample: {', '.join(sample_images())}")
            self.photos[name] = sample_photo(name, self.bundle.input_size)  # as the notebooks show it
        previous = self.photo_name
        self.photo_name = name
        self._maps.clear()
        try:
            found = self._call(classes=None)
        except Exception:
            self.photo_name = previous  # the old photo's maps are recomputed when needed
            raise
        self.probabilities = _softmax(found.logits)
        self.best = [int(c) for c in np.argsort(-np.asarray(found.logits), kind="stable")[:self.top]]
        self.class_index = self.best[0]

    def select_class(self, class_index) -> None:
        """Show one class (0 … C-1): free when its map is cached, else one pass."""
        self._need_photo()
        if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)):
            raise TypeError(f"class_index must be an int, got {class_index!r}")
        if not 0 <= class_index < len(self.probabilities):
            raise ValueError(f"class index {class_index} is out of range: the model has "
                             f"{len(self.probabilities)} classes (0 … {len(self.probabilities) - 1})")
        self._raw_maps([int(class_index)])  # may fail (a method's error): then nothing changed
        self.class_index = int(class_index)

    def clear_cache(self) -> None:
        """Forget every cached map (the next display recomputes)."""
        self._maps.clear()

    # ---- results ----------------------------------------------------------------------------------
    @property
    def heatmap(self) -> np.ndarray:
        """The map on display, (h, w) float32 in [0, 1]: :attr:`raw_heatmap` / :attr:`scale`; an
        all-zero map stays zero (never NaN)."""
        raw, scale = self._raw_and_scale()
        return (raw / scale).astype("float32") if scale > 0 else np.zeros_like(raw, dtype="float32")

    @property
    def scale(self) -> float:
        """The raw value shown as 1: the current map's own max, or with :attr:`shared_scale` the max over
        this photo's top classes and the current class at this layer and method (0: nothing to show)."""
        return self._raw_and_scale()[1]

    @property
    def raw_heatmap(self) -> np.ndarray:
        """The current class's map before scaling, (h, w) ≥ 0."""
        return self._raw_maps([self.class_index])[0]

    def _raw_and_scale(self) -> tuple[np.ndarray, float]:
        self._need_photo()
        classes = [*self.best, self.class_index] if self.shared_scale else [self.class_index]
        maps = self._raw_maps(classes)
        return maps[-1], max(float(m.max()) for m in maps)

    # ---- computing --------------------------------------------------------------------------------
    def _need_photo(self):
        if self.photo_name is None:
            raise ValueError("no photo yet: call select_photo(name) or add_photo(name, image) first")

    def _explain_top(self):
        """Make sure the current class (and the top ones, or all shown on a shared scale) are cached at the
        current layer and method."""
        if self.photo_name is not None:
            self._raw_maps([*self.best, self.class_index] if top_at_once(self._method) or self.shared_scale
                           else [self.class_index])

    def _raw_maps(self, classes) -> list[np.ndarray]:
        """Raw maps of ``classes`` at the current method and layer; the missing ones in one call (when the
        top classes are all missing, they come along: switching among them later is free)."""
        layer = self._layer if uses_layer(self._method) else None  # pixel maps serve every layer
        keys = [(self._method, layer, int(c)) for c in classes]
        missing = [key[2] for key in keys if key not in self._maps]
        if missing:
            if top_at_once(self._method) and not any((self._method, layer, c) in self._maps for c in self.best):
                missing = [*self.best, *missing]
            self._call(classes=np.array(list(dict.fromkeys(missing))))
        return [self._maps[key] for key in keys]

    def _call(self, classes) -> RawMaps:
        """One call of the current method on the current photo; caches its maps."""
        found = EXPLORER_METHODS[self._method](self.bundle, self.pixels, self._layer, classes, self.top)
        self.forward_passes += 1
        maps = np.asarray(found.maps, dtype="float32")
        given = [int(c) for c in np.atleast_1d(found.classes)]
        if maps.ndim != 3 or len(maps) != len(given) or (maps < 0).any() or not np.isfinite(maps).all() or \
                (classes is not None and set(given) != {int(c) for c in classes}):
            raise ValueError(f"method {self._method!r} must return (k, h, w) finite maps ≥ 0 for the k classes "
                             f"asked; got shape {maps.shape} for classes {given[:10]}")
        layer = self._layer if uses_layer(self._method) else None
        for class_index, raw in zip(given, maps):
            self._maps[(self._method, layer, int(class_index))] = raw
        return found


def _softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, dtype="float64")
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()

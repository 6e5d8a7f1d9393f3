"""One pipeline for every heatmap method (notebook 05), after pytorch-grad-cam's ``base_cam.py``.

Every method runs the same steps, written once here::

    model → (Keras model, preprocessing)     images → a checked batch (N, H, W, C)
    class_index / score → a checked target    layer → a spatial layer (methods that map at a layer)
    ──── the method's own rule: compute(request) → Raw(maps (N, k, h, w), classes, scores, logits) ────
    scores finite? · probabilities instead of logits? · empty maps? → ReLU / ÷ max → one map per image

so a method only writes :meth:`Method.compute` (and declares its options). :class:`LayerMethod` s take
``layer=`` (Grad-CAM and its family, guided Grad-CAM); :class:`InputMethod` s do not (saliency, RISE…).
Calling convention, the same for all: ``method(model, images, [layer,] class_index=None, score=None,
output=None, normalize=True, **options)`` — a :class:`~cnnviz.ModelBundle` (pixels) or a bare Keras
model, one image (H, W, C) → one map, a batch → (N, …); class_index None → each image's top class;
logits are explained. :meth:`Method.maps` gives the raw maps of several classes per image.
"""
from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from ..geometry import check_fits
from ..heatmaps import normalise
from ..checks import caller_stacklevel
from ..images import as_batch
from ..layers import check_images, spatial_layer
from ..models import unwrap
from ..targets import Target, check_scores, class_label, make_target
from ..taps import Compiled, compiled, tap, warn_if_probabilities

__all__ = ["EmptyMapWarning", "InputMethod", "LayerMethod", "Method", "Raw", "Request"]


class EmptyMapWarning(UserWarning):
    """A map is all zero: nothing in the image speaks FOR the class (its ReLU removed everything)."""


class Raw(NamedTuple):
    """A method's result before the shared finish. maps: (N, k, h, w) raw (signed for signed methods);
    classes: (N, k) explained (-1 for a custom score); scores: (N, k) the explained scores on the images;
    logits: (N, C) the model's scores (logits; the model's output for a custom score); extras: what a
    method also returns (Grad-CAM: activations and weights)."""

    maps: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    extras: dict = {}


@dataclasses.dataclass
class Request:
    """Everything checked, for one call: the Keras model and its preprocessing, the images AS GIVEN
    (pixels for a bundle) (N, H, W, C) float32, the layer (or None), the target and the output."""

    model: object  # what the user passed (a bundle or a Keras model)
    keras_model: object
    preprocess: Callable
    images: np.ndarray
    layer: str | None
    target: Target
    output: object
    head: str | None = None  # the final squash taken off the model ("softmax", …), None if none was found

    @property
    def classes(self) -> np.ndarray:
        """(N, k) int32 to feed the compiled functions (-1 placeholders under a custom score)."""
        if self.target.classes is not None:
            return self.target.classes
        return np.full((len(self.images), self.target.k), -1, "int32")

    def compiled(self, layers=(), guided: bool = False, preprocess: Callable | None = None) -> Compiled:
        """The model's compiled functions for this request's score and output (cached per model)."""
        return compiled(self.keras_model, self.preprocess if preprocess is None else preprocess, layers,
                        self.target.score, self.output, guided)


class Method:
    """A heatmap method. Subclasses set ``name``, ``label``, ``paper``, ``options`` and write ``compute``.

    options: {name: (default, check)} where ``check(name, value)`` returns the accepted value or raises
    a ValueError; an unknown option is a TypeError, never ignored. signed: raw maps can be negative
    (the public maps are ReLU'd unless ``normalize=False``). at_layer: maps at the layer's resolution
    (h, w), else at the image's (H, W). costly: each class costs a whole run (its points depend on the
    class), so the explorer explains one class at a time; explorer_options: cheaper settings there,
    said by explorer_note in the picker.
    """

    name = label = paper = ""
    uses_layer = at_layer = signed = costly = False
    normalize_default = True
    options: dict = {}
    explorer_options: dict = {}  # cheaper settings for the interactive explorer
    explorer_note = ""

    def compute(self, request: Request, **options) -> Raw:
        raise NotImplementedError

    def __repr__(self):
        return f"<cnnviz method {self.name}: {self.label}>"

    # ---- the pipeline ------------------------------------------------------------------------------
    def _options(self, options: dict) -> dict:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise TypeError(f"{self.name} takes no option {', '.join(map(repr, unknown))} (its options: {known})")
        return {name: check(name, options.get(name, default)) for name, (default, check) in self.options.items()}

    def request(self, model, images, layer=None, class_index=None, score=None, output=None, top: int = 1,
                several: bool = False) -> Request:
        """Every check a call needs, in one place; the result feeds :meth:`compute`."""
        keras_model, preprocess = unwrap(model)
        batch, _ = as_batch(images)
        check_images(keras_model, batch)
        check_fits(keras_model, batch.shape[1:3])  # too small for a pooling: said before TensorFlow fails
        if self.uses_layer:
            layer = spatial_layer(keras_model, layer).name  # None → the last spatial layer
        elif layer is not None:
            raise TypeError(f"{self.name} maps the input pixels and takes no layer (got layer={layer!r})")
        mode = "logits" if score is None else "output"
        model_tap = tap(keras_model, (), output, mode)  # a wrong output= is reported here
        target = make_target(class_index, score, len(batch), model_tap.num_classes, model_tap.output_shape, top,
                             several)
        return Request(model, keras_model, preprocess, batch, layer, target, output, model_tap.head)

    def maps(self, model, images, layer=None, classes=None, score=None, output=None, top: int = 1,
             **options) -> Raw:
        """The raw maps (N, k, h, w) of k classes per image — ``classes`` (N, k), a list of k classes of
        ONE image, or None for the ``top`` best — or of a custom ``score`` giving (N, k); ReLU'd unless
        the method is signed. One call: the explorer's and :func:`cnnviz.explain_classes`' entry."""
        request = self.request(model, images, layer, classes, score, output, top, several=True)
        raw = self._run(request, options)
        return raw._replace(maps=raw.maps if self.signed else np.maximum(raw.maps, 0))

    def _run(self, request: Request, options: dict) -> Raw:
        options = self._options(options)
        with _plain_errors(request):
            raw = self.compute(request, **options)
        check_scores(raw.scores, "score" if request.target.score else "class score")
        if not np.isfinite(raw.maps).all():
            raise ValueError(f"{self.name} gave a non-finite map (the model's gradients or scores overflow for "
                             "these images): check the model's output on them")
        if request.target.score is None:
            warn_if_probabilities(request.keras_model, request.head, raw.logits)
        return raw

    def explain(self, model, images, layer=None, class_index=None, score=None, output=None, normalize=None,
                **options) -> np.ndarray:
        """One map per image: (N, h, w), or (h, w) for one image; see the module docstring."""
        normalize = self.normalize_default if normalize is None else normalize
        if not isinstance(normalize, (bool, np.bool_)):
            raise ValueError(f"normalize must be True or False, got {normalize!r}")
        request = self.request(model, images, layer, class_index, score, output)
        raw = self._run(request, options)
        maps = raw.maps[:, 0]
        positive = np.maximum(maps, 0)
        if normalize or not self.signed:
            maps = positive
            self._warn_if_empty(request, raw, positive)
        else:  # signed and raw: empty only where every value is exactly zero
            self._warn_if_empty(request, raw, np.abs(maps))
        maps = normalise(maps) if normalize else maps.astype("float32")
        return maps[0] if np.ndim(images) == 3 else maps

    def _warn_if_empty(self, request: Request, raw: Raw, positive: np.ndarray) -> None:
        empty = np.flatnonzero(~positive.reshape(len(positive), -1).any(axis=1))
        if empty.size:
            num_classes = raw.logits.shape[-1]
            which = ", ".join(f"image {i} ({class_label(int(raw.classes[i, 0]), num_classes)})" for i in empty[:5])
            where = f" at layer {request.layer!r}" if request.layer else ""
            warnings.warn(f"{self.label}: the map is all zero for {which}: nothing{where} speaks FOR the target "
                          "(every value was ≤ 0 before the ReLU). The class may be absent; an earlier layer or a "
                          "signed method (Integrated Gradients) shows the evidence against it.",
                          EmptyMapWarning, stacklevel=caller_stacklevel())


class LayerMethod(Method):
    """A method that maps at a spatial layer (``layer=None``: the last one)."""

    uses_layer = at_layer = True

    def __call__(self, model, images, layer=None, class_index=None, score=None, output=None, normalize=None,
                 **options) -> np.ndarray:
        return self.explain(model, images, layer, class_index, score, output, normalize, **options)


class InputMethod(Method):
    """A method that maps the input pixels; it takes no layer."""

    def __call__(self, model, images, class_index=None, score=None, output=None, normalize=None,
                 **options) -> np.ndarray:
        return self.explain(model, images, None, class_index, score, output, normalize, **options)


@contextlib.contextmanager
def _plain_errors(request: Request):
    """TensorFlow's runtime errors (a model failing on these images) as one ValueError line instead of a graph
    trace; the likely causes (images too small, a bad score) are checked before anything runs."""
    try:
        yield
    except tf.errors.OpError as error:
        first = (error.message or type(error).__name__).strip().splitlines()[0][:300]
        raise ValueError(f"the model failed on images of shape {request.images.shape}: {first}") from None

"""Every heatmap method of cnnviz by name (notebook 05; the explorer's method picker).

All run on one pipeline (:mod:`cnnviz.methods.base`) with one calling convention::

    method(model, images, [layer=None,] class_index=None, score=None, output=None, normalize=True, **options)

``layer`` only for methods that map at a layer (the CAM family, guided Grad-CAM). A
:class:`~cnnviz.ModelBundle` (pixels) or a bare Keras model; one image (H, W, C) → one map, a batch →
(N, …); class_index None → each image's top class; logits are explained (Score-CAM and RISE weigh
probabilities, as their papers). CAM methods map at the layer's resolution (h, w), the others at the
image's (H, W). :func:`explain_classes` gives the raw maps of several classes of one photo, for a shared
scale. A new method is a subclass of :class:`~cnnviz.methods.base.LayerMethod` or
:class:`~cnnviz.methods.base.InputMethod` writing ``compute``, and one line below.
"""
from __future__ import annotations

import numpy as np

from .base import EmptyMapWarning, InputMethod, LayerMethod, Method, Raw
from .cams import CAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, SignedActivationWarning
from .perturbation import RISE, Occlusion
from .pixels import GRAD_CAM, GUIDED_BACKPROP, GuidedGradCAM, IntegratedGradients, Saliency, SmoothGrad

# The methods, by the names they are called with (cnnviz.gradcam(...)), and the registry in the order notebook 05
# and the explorer list them: a new method is one class and one entry here.
gradcam, gradcam_plus_plus, layercam, hirescam, cam, scorecam = (
    GRAD_CAM, GradCAMPlusPlus(), LayerCAM(), HiResCAM(), CAM(), ScoreCAM())
saliency, smoothgrad, integrated_gradients, guided_backprop, guided_gradcam = (
    Saliency(), SmoothGrad(), IntegratedGradients(), GUIDED_BACKPROP, GuidedGradCAM())
occlusion, rise = Occlusion(), RISE()
METHODS: dict[str, Method] = {method.name: method for method in (
    gradcam, gradcam_plus_plus, layercam, hirescam, cam, scorecam,
    saliency, smoothgrad, integrated_gradients, guided_backprop, guided_gradcam,
    occlusion, rise,
)}


def method(name: str) -> Method:
    """The method registered as ``name``, or a ValueError listing them."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def explain_classes(name: str, model, image, classes=None, layer=None, score=None, output=None,
                    **options) -> np.ndarray:
    """RAW maps (k, h, w) of k classes of ONE image (H, W, C) by the method ``name``, from one call.

    For a shared scale across classes (an absent class then looks weak): divide all by their common
    maximum. classes: a list of k class indices, or None for the top class; ``score`` instead gives the
    k values of ``score(output)`` (CAM methods). ≥ 0 (signed methods: their raw signed values).
    ``options`` go to the method (Score-CAM's ``channels``, SmoothGrad's ``samples``…). Scales differ
    between methods (CAM's W_kc is h·w × Grad-CAM's weight).
    """
    if np.ndim(image) != 3:
        raise ValueError(f"explain_classes takes one image (H, W, C), got shape {np.shape(image)}")
    found = method(name)
    if classes is not None:
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(classes) == 0:
            raise ValueError(f"classes: a list of class indices, got {classes!r}")
        classes = classes[None]
    return found.maps(model, np.asarray(image)[None], layer, classes, score, output, **options).maps[0]


cam_maps = explain_classes  # the name notebook 04 and the explorer used

__all__ = ["METHODS", "EmptyMapWarning", "InputMethod", "LayerMethod", "Method", "Raw", "SignedActivationWarning",
           "cam", "cam_maps", "explain_classes", "gradcam_plus_plus", "guided_backprop", "guided_gradcam",
           "hirescam", "integrated_gradients", "layercam", "method", "occlusion", "rise", "saliency",
           "scorecam", "smoothgrad"]

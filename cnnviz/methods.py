"""Every heatmap method of cnnviz by name (notebook 05; the explorer's method picker).

All share one calling convention, ``method(model, images, layer=None, class_index=None, score=None)``
(pixel methods other than ``guided_gradcam`` have no ``layer``): a :class:`~cnnviz.ModelBundle` (pixels)
or a bare Keras model, one image → one map, a batch → (N, …); class_index None → each image's top class;
logits are explained. CAM methods (:mod:`cnnviz.cams`) map at the layer's resolution (h, w), pixel
methods (:mod:`cnnviz.pixel_methods`) at the image's (H, W). For the raw maps of several classes of one
photo on a shared scale use :func:`cnnviz.cam_maps`.
"""
from .cams import *  # noqa: F401,F403
from .cams import CAM_METHODS
from .cams import __all__ as _CAMS
from .pixel_methods import *  # noqa: F401,F403
from .pixel_methods import PIXEL_METHODS
from .pixel_methods import __all__ as _PIXELS

METHODS = {**CAM_METHODS, **PIXEL_METHODS}  # name → function

__all__ = ["METHODS", *_CAMS, *_PIXELS]

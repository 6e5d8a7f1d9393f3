"""cnnviz — what a convolutional network sees: activations, filters, Grad-CAM, a class explorer.

Importing cnnviz quietens TensorFlow's C++ logging before TensorFlow loads, so no log line lands in
a notebook (``setdefault``: a value you set yourself wins).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from .images import load_image, sample_images  # noqa: E402
from .layers import conv_layers, get_layer, tap_model  # noqa: E402
from .models import ModelBundle, load_model  # noqa: E402

__all__ = ["ModelBundle", "conv_layers", "get_layer", "load_image", "load_model", "sample_images", "tap_model"]

# One line per chapter module below; each module defines its own __all__.
from .activations import *  # noqa: E402,F401,F403
from .filters import *  # noqa: E402,F401,F403
from .gradcam import *  # noqa: E402,F401,F403
from .explorer import *  # noqa: E402,F401,F403
__version__ = "0.1.0"

"""cnnviz — what a convolutional network sees: activations, filters, Grad-CAM, a class explorer.

Importing cnnviz loads TensorFlow with its C++ start-up notices kept out of the notebook (see
``cnnviz._quiet``); import cnnviz before TensorFlow to get that.
"""
from ._quiet import import_tensorflow_quietly

import_tensorflow_quietly()

from .geometry import cell_grid  # noqa: E402
from .images import load_image, sample_images, sample_photo  # noqa: E402
from .layers import conv_layers, get_layer, tap_model  # noqa: E402
from .models import ModelBundle, load_model  # noqa: E402
from .notebook import compact_figures  # noqa: E402

__all__ = ["ModelBundle", "cell_grid", "compact_figures", "conv_layers", "get_layer", "load_image", "load_model",
           "sample_images", "sample_photo", "tap_model"]

# One line per chapter module below; each module defines its own __all__.
from .heatmaps import *  # noqa: E402,F401,F403
from .activations import *  # noqa: E402,F401,F403
from .filters import *  # noqa: E402,F401,F403
from .gradcam import *  # noqa: E402,F401,F403
from .methods import *  # noqa: E402,F401,F403
from .trust import *  # noqa: E402,F401,F403
from .explorer import *  # noqa: E402,F401,F403
from .dreams import *  # noqa: E402,F401,F403
__version__ = "0.1.0"

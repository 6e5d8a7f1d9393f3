"""Dreams: images made by gradient ascent on a network's inputs (notebook 07)."""
from .class_images import *  # noqa: F401,F403
from .class_images import __all__ as _class_images
from .diversity import *  # noqa: F401,F403
from .diversity import __all__ as _diversity

from .deepdream import *  # noqa: F401,F403
from .deepdream import __all__ as _deepdream

from .inversion import *  # noqa: F401,F403
from .inversion import __all__ as _inversion

from .attacks import *  # noqa: F401,F403
from .attacks import __all__ as _attacks

__all__ = [*_class_images, *_diversity, *_deepdream, *_inversion, *_attacks]

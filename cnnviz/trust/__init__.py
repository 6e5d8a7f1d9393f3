"""Can we trust a heatmap? Sanity checks and faithfulness scores for any map (notebook 06).

- :mod:`~cnnviz.trust.curves`: deletion / insertion curves and their areas, average drop and increase
  in confidence;
- :mod:`~cnnviz.trust.pointing`: the pointing game and mass in a box, on collages of two photos;
- :mod:`~cnnviz.trust.randomization`: cascading model-parameter randomisation;
- :mod:`~cnnviz.trust.shortcut`: a model caught cheating (a watermark shortcut).

Probabilities are what the model says (the softmax of its logits; never a softmax of probabilities).
The user's model is never modified.
"""
from .curves import *  # noqa: F401,F403
from .curves import __all__ as _curves
from .pointing import *  # noqa: F401,F403
from .pointing import __all__ as _pointing
from .randomization import *  # noqa: F401,F403
from .randomization import __all__ as _randomization
from .shortcut import *  # noqa: F401,F403
from .shortcut import __all__ as _shortcut

__all__ = [*_curves, *_pointing, *_randomization, *_shortcut]

"""``python -m cnnviz …``: the same as the ``cnnviz`` command (see cnnviz/cli.py)."""
import sys

from .cli import main

sys.exit(main())

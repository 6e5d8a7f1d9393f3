"""Import TensorFlow without its start-up notices landing in a notebook as stderr.

TensorFlow's C++ log lines are hidden by ``TF_CPP_MIN_LOG_LEVEL=2``, except one: on Linux x86-64 it
announces "oneDNN custom operations are on" while it loads, before its logging is set up, so no
level hides it. Turning oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``) would hide it too, but oneDNN makes
gradient ascent here about 35% faster. So TensorFlow is imported with file descriptor 2 sent to a
temporary file, and every other line written meanwhile is passed on. No library does this: the
notice comes from C++, below Python's ``sys.stderr`` and ``warnings``.
"""
import contextlib
import os
import re
import sys
import tempfile

NOTICES = re.compile(r"oneDNN custom operations are on|All log messages before absl::InitializeLog")


@contextlib.contextmanager
def stderr_without(pattern: re.Pattern):
    """Capture what is written to file descriptor 2 (C code included); on exit write every line that
    does not match ``pattern`` to ``sys.stderr``."""
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not pattern.search(line)))


def import_tensorflow_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # a value you set yourself wins
    if "tensorflow" not in sys.modules:
        with stderr_without(NOTICES):
            import tensorflow  # noqa: F401

"""Skip tests that need PyPI (building in an isolated environment, resolving requirements) when it is offline."""
import functools
import socket

import pytest


@functools.cache
def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def skip_offline():
    if not pypi_reachable():
        pytest.skip("needs pypi.org (build isolation fetches setuptools; pip resolves requirements)")

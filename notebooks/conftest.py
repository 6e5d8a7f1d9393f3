"""For the tests (not for reading): while nbval re-executes each notebook, measure its kernel's peak memory
and run time.

pytest loads this file for the notebooks in this folder; it acts on nbval's cells only. After a notebook's
last cell it reads the kernel process's peak resident memory (VmHWM, Linux) and the time since its first
cell, fails that cell if a generous bound is exceeded, and lists every notebook at the end. The goals
(issue K: ≤ 60 s and ≤ 1.5 GiB on 2 cores, Binder's 2 GB) are measured on an idle machine by
benchmarks/bench_notebooks.py; these bounds catch a regression under a loaded CI machine.
"""
import time
from pathlib import Path

import pytest

PEAK_GIB, SECONDS = 1.75, 150  # generous: the goals are 1.5 GiB and 60 s
_started: dict = {}
_measured: dict = {}


def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"


def _peak_gib(notebook) -> float | None:
    """The notebook kernel's VmHWM in GiB, or None where it cannot be read (not Linux)."""
    try:
        pid = notebook.kernel.km.provisioner.pid
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 2 ** 20
    except (AttributeError, OSError, StopIteration):
        return None


def pytest_runtest_setup(item):
    if _is_cell(item):
        _started.setdefault(item.parent, time.perf_counter())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    if not _is_cell(item):
        return
    cells = [i for i in item.session.items if i.parent is item.parent]
    if item is not cells[-1]:
        return
    seconds, peak = time.perf_counter() - _started[item.parent], _peak_gib(item.parent)
    _measured[Path(str(item.parent.fspath)).name] = (seconds, peak)
    assert peak is None or peak <= PEAK_GIB, f"the notebook's kernel peaked at {peak:.2f} GiB (bound {PEAK_GIB})"
    assert seconds <= SECONDS, f"the notebook took {seconds:.0f} s to run (bound {SECONDS} s)"


def pytest_terminal_summary(terminalreporter):
    if _measured:
        terminalreporter.write_line("notebooks under nbval: seconds, kernel peak memory")
        for name, (seconds, peak) in sorted(_measured.items()):
            terminalreporter.write_line(f"  {name:<40} {seconds:6.1f} s  "
                                        f"{'?' if peak is None else f'{peak:.2f}'} GiB")

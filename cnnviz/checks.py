"""Argument checks every public function shares — plumbing.

Each check returns the value it accepts (converted: an int, a float, a tuple) or raises a ValueError
that names the argument, says what it got and what it takes. Booleans are never numbers here
(``True`` is an ``int`` in Python), and ``None`` is never silently replaced by a default: a default
is the argument's default, written in the signature.
"""
from __future__ import annotations

import math
import numbers
import os
import sys

import numpy as np

__all__ = ["check_choice", "check_count", "check_flag", "check_fraction", "check_number", "check_seed",
           "caller_stacklevel"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def caller_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the first frame outside cnnviz (the user's
    line), however deep inside the package the warning is raised."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum`` (steps, samples, batch sizes, margins)."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_seed(name: str, value) -> int | None:
    """A seed: a whole number ≥ 0, or None for fresh randomness."""
    return None if value is None else check_count(name, value, minimum=0)


def check_number(name: str, value, low: float = -math.inf, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval [low, high] (ends excluded when ``*_open``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def check_fraction(name: str, value, *, zero: bool = True, one: bool = True) -> float:
    """A share in [0, 1] (``zero=False``: 0 excluded; ``one=False``: 1 excluded)."""
    return check_number(name, value, 0.0, 1.0, low_open=not zero, high_open=not one)


def check_flag(name: str, value) -> bool:
    """True or False, nothing else (a string "False" is truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(map(repr, choices))}")
    return value

"""Bounded per-model caches for compiled helpers (Grad-CAM, gradient ascent) — plumbing.

A compiled ``tf.function`` of Lite0 holds ~25 MiB. Kept forever, one per layer visited (the class
explorer) or per ``score`` lambda, they grew RSS by over 1 GiB. :func:`per_model_cache` keeps a few
per model and purpose, least recently used out first, and dies with the model.
"""
from __future__ import annotations

import collections
import gc
import types
import weakref

__all__ = ["CACHE_SIZE", "LRUCache", "function_key", "per_model_cache"]

CACHE_SIZE = 2  # compiled helpers kept per model and purpose: 20–100 MiB each on Lite0


class LRUCache(collections.OrderedDict):
    """A dict of at most ``size`` entries: adding one more drops the least recently used.

    The ``OrderedDict`` recipe of the Python docs: ``functools.lru_cache`` caches a function's
    results forever-per-process, not entries that die with a model. Reads through ``[]`` and
    :meth:`lookup` count as uses; ``get`` and ``in`` do not.
    """

    def __init__(self, size: int, collect: bool = False):
        if size < 1:
            raise ValueError(f"an LRUCache needs size >= 1, got {size}")
        super().__init__()
        self.size, self.collect = size, collect

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.size:
            while len(self) > self.size:
                self.popitem(last=False)
            if self.collect:  # see per_model_cache
                gc.collect()

    def lookup(self, key, create):
        """The entry for ``key``; made by ``create()`` and cached when missing."""
        if key in self:
            return self[key]
        value = self[key] = create()
        return value


_PER_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def per_model_cache(keras_model, purpose: str, size: int = CACHE_SIZE) -> LRUCache:
    """The :class:`LRUCache` of ``keras_model`` for ``purpose`` ("gradcam", "ascent", …).

    It lives as long as the model. A cached value must not refer to ``keras_model`` itself (its
    layers are fine): a value that did would keep the model, and so itself, alive forever.
    An evicted compiled function sits in reference cycles (TF graphs, ``tf.function`` → method →
    instance) that only the cycle collector frees, and with TensorFlow's many long-lived objects
    it runs rarely: each eviction runs it (~0.1 s, next to ~1.7 s to compile the new entry), so a
    sweep over all layers reuses the memory instead of growing by ~34 MiB per layer.
    """
    caches = _PER_MODEL.setdefault(keras_model, {})
    if purpose not in caches:
        caches[purpose] = LRUCache(size, collect=True)
    return caches[purpose]


# Values whose equality means "same behaviour when traced": immutable, compared by value (or a
# module by identity; rebinding a module's attributes between calls is not supported).
_FROZEN = (int, float, complex, str, bytes, bool, type(None), type(Ellipsis), types.ModuleType,
           types.BuiltinFunctionType)


def _frozen(value) -> bool:
    if type(value) is tuple:
        return all(_frozen(item) for item in value)
    return isinstance(value, _FROZEN)


def _names(code) -> set:
    """Global names a code object (and the code nested in it: lambdas, comprehensions) may read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def function_key(function):
    """A cache key for a callable traced into a ``tf.function``.

    A new ``lambda out: out[:, 3]`` per call is a new object, but its trace is the same: plain
    functions whose code is identical and whose every free value (closure cells, defaults, the
    globals they read) is immutable and equal get equal keys, so they share one compiled function.
    Anything else (a closure over a list, a callable object, a bound method…) is keyed by identity.
    """
    if type(function) is not types.FunctionType:
        return function
    try:
        cells = tuple(cell.cell_contents for cell in function.__closure__ or ())
    except ValueError:  # an empty cell: a variable not bound yet
        return function
    read = {name: function.__globals__[name] for name in sorted(_names(function.__code__))
            if name in function.__globals__}
    state = (cells, function.__defaults__, tuple(sorted((function.__kwdefaults__ or {}).items())),
             tuple(read.items()))
    if not _frozen(state):
        return function
    return ("function", function.__code__, _typed(state))


def _typed(value):
    """``value`` with each leaf paired with its type: 1, 1.0 and True compare equal but trace apart."""
    if type(value) is tuple:
        return tuple, tuple(_typed(item) for item in value)
    return type(value), value

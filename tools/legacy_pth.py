"""Read a legacy (pre-zip) PyTorch ``.pth`` state dict with numpy alone — no torch, no arbitrary code.

The legacy ``torch.save`` format is one file holding, in order: a pickled magic number, a pickled
protocol version, pickled sys_info, the pickled state dict (each tensor a call to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose storage is a
persistent id ``('storage', StorageType, key, location, numel, view)``), a pickled list of storage
keys, then each storage's raw little-endian bytes preceded by an 8-byte element count.

``torch.load`` unpickles with ``pickle``, which can run any code a file names. This reader's
``Unpickler.find_class`` allows only the names above, so a hostile file raises instead.
"""
from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "ByteStorage": np.uint8,
    "CharStorage": np.int8,
    "BoolStorage": np.bool_,
}


class _StorageRef:
    """Placeholder for a storage until its bytes, which follow the pickle, have been read."""

    def __init__(self, key: str, dtype, numel: int):
        self.key, self.dtype, self.numel = key, np.dtype(dtype), numel


class _TensorRef:
    """A tensor as the pickle describes it: a strided view into a storage."""

    def __init__(self, storage: _StorageRef, offset: int, size: tuple, stride: tuple, *_ignored):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


class _WhitelistUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _TensorRef
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not a plain tensor state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid[0] == "storage" and len(pid) >= 5):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        return _StorageRef(key, dtype, numel)


def read_legacy_pth(path: str | Path) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` for a legacy-format state dict, arrays shaped as the torch tensors."""
    with open(path, "rb") as f:
        if pickle.load(f) != MAGIC_NUMBER:  # plain ints only: safe with the stock unpickler
            raise ValueError(f"{path} is not a legacy torch file (zip-format files need torch.load)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys_info
        state = _WhitelistUnpickler(f).load()
        keys = _WhitelistUnpickler(f).load()
        storages = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            ref = next(t.storage for t in state.values() if t.storage.key == key)
            storages[key] = np.frombuffer(f.read(numel * ref.dtype.itemsize), dtype=ref.dtype.newbyteorder("<"))
    arrays = {}
    for name, t in state.items():
        flat = storages[t.storage.key]
        item = flat.itemsize
        arrays[name] = np.lib.stride_tricks.as_strided(
            flat[t.offset:], shape=t.size, strides=[s * item for s in t.stride]
        ).astype(flat.dtype.newbyteorder("="), copy=True)
    return arrays

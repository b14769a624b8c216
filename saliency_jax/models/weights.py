"""Reading PyTorch checkpoints with numpy alone, without running their code.

A PyTorch ``state_dict`` file is a pickle. Unpickling it with :mod:`pickle` runs
whatever callables the file names, so a hostile checkpoint can execute code. This
module reads the two formats PyTorch writes through a restricted unpickler that
admits only what a ``state_dict`` of tensors needs (an ``OrderedDict``, the tensor
rebuild functions and the typed storage classes) and raises
:class:`UnsafeCheckpointError` on anything else, before calling it.

* the legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``,
  as shipped with EfficientNet-Lite0): a magic number, a protocol version, system
  information, the pickled object, the list of storage keys, then each storage's
  raw bytes preceded by its element count;
* the zip format (PyTorch >= 1.6): ``<name>/data.pkl`` plus ``<name>/data/<key>``.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, NamedTuple

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# Storage classes a state_dict may name, and the numpy dtype of their elements.
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint names something a plain ``state_dict`` never needs."""


class _StorageType(NamedTuple):
    name: str
    dtype: np.dtype


class _StorageRef(NamedTuple):
    key: str
    dtype: np.dtype
    numel: int


class _TensorRef(NamedTuple):
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, _StorageRef):
        raise UnsafeCheckpointError("tensor rebuilt from something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a tensor ``state_dict`` needs."""

    def __init__(self, file: BinaryIO, storage_numel: dict[str, int] | None = None):
        super().__init__(file)
        self._storage_numel = storage_numel

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise UnsafeCheckpointError(
            f"checkpoint refers to {module}.{name}, which a tensor state_dict never needs; "
            "refusing to load it (it could run code)"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"unexpected storage type {storage_type!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise ValueError("checkpoint uses storage views, which this reader does not support")
        return _StorageRef(key, storage_type.dtype, numel)


def _collect(obj: Any, prefix: str, out: dict[str, _TensorRef]) -> None:
    """Flattens nested dicts of tensors into dotted names."""
    if isinstance(obj, _TensorRef):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _collect(value, f"{prefix}.{key}" if prefix else str(key), out)
    # other plain values (numbers, strings, metadata) carry no weights


def _materialise(ref: _TensorRef, buffer: np.ndarray) -> np.ndarray:
    itemsize = ref.storage.dtype.itemsize
    if ref.shape:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.strides) if n > 0)
    else:
        last = ref.offset
    if ref.offset < 0 or min(ref.shape, default=1) > 0 and last >= buffer.size:
        raise ValueError("checkpoint tensor reaches past the end of its storage (corrupt file)")
    view = np.lib.stride_tricks.as_strided(
        buffer[ref.offset:], shape=ref.shape, strides=tuple(s * itemsize for s in ref.strides)
    )
    return np.array(view, copy=True)


def _read_exact(f: BinaryIO, count: int, what: str) -> bytes:
    data = f.read(count)
    if len(data) != count:
        raise ValueError(f"checkpoint ends early while reading {what} (truncated file)")
    return data


def _load_legacy(f: BinaryIO) -> dict[str, np.ndarray]:
    magic = _RestrictedUnpickler(f).load()
    if magic != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint: wrong magic number")
    _RestrictedUnpickler(f).load()  # protocol version
    _RestrictedUnpickler(f).load()  # system info: endianness and type sizes
    obj = _RestrictedUnpickler(f).load()
    keys = _RestrictedUnpickler(f).load()
    refs: dict[str, _TensorRef] = {}
    _collect(obj, "", refs)
    dtypes = {r.storage.key: r.storage.dtype for r in refs.values()}
    buffers = {}
    for key in keys:
        key = str(key)
        (numel,) = struct.unpack("<q", _read_exact(f, 8, f"storage {key} size"))
        dtype = dtypes.get(key, np.dtype("u1"))
        raw = _read_exact(f, numel * dtype.itemsize, f"storage {key}")
        buffers[key] = np.frombuffer(raw, dtype=dtype)
    return {name: _materialise(ref, buffers[ref.storage.key]) for name, ref in refs.items()}


def _load_zip(f: BinaryIO) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(f) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise ValueError("zip file has no data.pkl: not a PyTorch checkpoint")
        root = pickles[0][: -len("data.pkl")]
        with archive.open(pickles[0]) as pkl:
            obj = _RestrictedUnpickler(io.BytesIO(pkl.read())).load()
        refs: dict[str, _TensorRef] = {}
        _collect(obj, "", refs)
        buffers = {}
        for ref in refs.values():
            key = ref.storage.key
            if key not in buffers:
                try:
                    raw = archive.read(f"{root}data/{key}")
                except KeyError:
                    raise ValueError(f"checkpoint lacks the bytes of storage {key}") from None
                buffers[key] = np.frombuffer(raw, dtype=ref.storage.dtype)
        return {name: _materialise(ref, buffers[ref.storage.key]) for name, ref in refs.items()}


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch ``state_dict`` file into numpy arrays, never running its code.

    Args:
      path: a ``.pth``/``.pt`` file in the legacy or the zip format.

    Returns:
      ``{dotted_name: array}`` with the tensors' shapes and dtypes (PyTorch layout,
      e.g. convolution kernels ``[O, I, kh, kw]``).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      UnsafeCheckpointError: the file names a callable a ``state_dict`` never needs.
      ValueError: the file is not a PyTorch checkpoint, or is truncated.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no checkpoint file at {path!r}")
    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            f.seek(0)
            return _load_zip(f)
        f.seek(0)
        try:
            return _load_legacy(f)
        except UnsafeCheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, struct.error) as e:
            raise ValueError(f"path: {path!r} is not a readable PyTorch checkpoint ({e})") from None

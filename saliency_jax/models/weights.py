"""Reading PyTorch checkpoints with numpy alone, without running their code.

A PyTorch ``state_dict`` file is a pickle. Unpickling it with :mod:`pickle` runs
whatever callables the file names, so a hostile checkpoint can execute code. This
module reads the two formats PyTorch writes:

* the legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``,
  as shipped with EfficientNet-Lite0): a magic number, a protocol version, system
  information, the pickled object, the list of storage keys, then each storage's
  raw bytes preceded by its element count;
* the zip format (PyTorch >= 1.6): ``<name>/data.pkl`` plus ``<name>/data/<key>``.

A checkpoint is input from outside, so the reader trusts nothing in it:

* Its pickles run on a small machine of this module's own (:class:`_Unpickler`),
  not :mod:`pickle`'s. It knows only the opcodes a tensor ``state_dict`` needs,
  builds only dicts, lists, tuples and scalars, and "calls" only
  ``collections.OrderedDict()`` and PyTorch's tensor rebuild functions, which it
  implements itself; anything else raises :class:`UnsafeCheckpointError` before
  it is used. ``BUILD`` applies only to an ``OrderedDict`` the same load made (its
  state, PyTorch's ``_metadata``, is dropped), so nothing a file does outlives the
  load or changes the reader.
* Every tensor view is checked against its storage before a byte is read: offset,
  sizes and strides within int64, no negative stride, the last element inside the
  storage, and no two indices naming one element (stride 0 over more than one
  element, or overlapping strides). Permuted strides (channels-last kernels) are
  normal and load.
* A storage must lie inside its bytes (the file, or its zip member), and only
  storages some tensor uses are read.
* What a load produces (inflated zip members, the returned arrays and their names)
  is bounded by ``max_bytes``, by default 4x the file's size plus 1 MiB, and
  checked before each allocation. The pickle machine builds no more objects than
  the file has opcodes, and nested dicts are walked without recursion, at most
  64 deep.

Every refusal is a :class:`ValueError` whose message names the file and what was
wrong; :class:`UnsafeCheckpointError` (a subclass) when the file asks for
something that could run code.
"""

from __future__ import annotations

import collections
import contextlib
import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from typing import Any, NamedTuple

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_NDIM = 32  # numpy >= 1.26 supports at least this many dimensions
_MAX_NESTING = 64  # dicts inside dicts; a state_dict has one or two levels
_MAX_KEY_CHARS = 4096  # a storage key; PyTorch writes short decimal ids
_SLACK_BYTES = 1 << 20  # added to the default budget, so that tiny files still load
_ARRAY_OVERHEAD = 64  # bytes charged per returned array besides its elements
_CHUNK = 1 << 20  # bytes inflated per read of a zip member

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


class UnsafeCheckpointError(ValueError, pickle.UnpicklingError):
    """A checkpoint names something a plain ``state_dict`` never needs (it could run code)."""


# --- What the pickle machine builds ----------------------------------------------------


class _Function(NamedTuple):
    """A callable a checkpoint may name. The reader implements it; the file only points at it."""

    qualified_name: str


class _StorageType(NamedTuple):
    name: str
    dtype: np.dtype


class _StorageRef(NamedTuple):
    key: str
    dtype: np.dtype
    numel: int


class _TensorRef(NamedTuple):
    """A tensor as a view of a storage, checked to lie inside it."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    may_alias: bool  # the quick test could not rule out two indices sharing an element


_ORDERED_DICT = _Function("collections.OrderedDict")
_REBUILD_TENSOR = _Function("torch._utils._rebuild_tensor_v2")
_REBUILD_PARAMETER = _Function("torch._utils._rebuild_parameter")

_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ORDERED_DICT,
    ("torch._utils", "_rebuild_tensor_v2"): _REBUILD_TENSOR,
    ("torch._utils", "_rebuild_parameter"): _REBUILD_PARAMETER,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}

_STOP = pickle.STOP[0]
_OPCODE_NAMES = {op.code.encode("latin-1")[0]: op.name for op in pickletools.opcodes}


def _describe(obj: Any) -> str:
    """A short, safe description of a value from the file (never a deep or huge repr)."""
    if obj is None or isinstance(obj, (bool, float)):
        return repr(obj)
    if isinstance(obj, int):
        return repr(obj) if obj.bit_length() <= 128 else f"an int of {obj.bit_length()} bits"
    if isinstance(obj, (str, bytes)):
        return repr(obj[:40]) + ("..." if len(obj) > 40 else "")
    if isinstance(obj, (_Function, _StorageType)):
        return getattr(obj, "qualified_name", None) or f"torch.{obj.name}"
    if isinstance(obj, (tuple, list, dict)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__name__}"


class _Budget:
    """Counts the bytes a load allocates on the file's behalf, and refuses past the limit."""

    def __init__(self, limit: int, explicit: bool):
        self.limit = limit
        self.explicit = explicit
        self.used = 0

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.limit - self.used:
            rule = "max_bytes" if self.explicit else "the default max_bytes, 4x the file's size + 1 MiB"
            raise ValueError(
                f"{what} needs {nbytes} bytes, past the {self.limit} bytes this load may use ({rule}); "
                "pass a larger max_bytes if the file is trusted"
            )
        self.used += nbytes


# --- Tensor views ----------------------------------------------------------------------


def _int64(value: Any, what: str) -> int:
    if not isinstance(value, int):
        raise ValueError(f"{what} is {_describe(value)}, not an int")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{what} {_describe(value)} does not fit in int64")
    return int(value)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"tensor {what} is {_describe(value)}, not a tuple")
    if len(value) > _MAX_NDIM:
        raise ValueError(f"tensor {what} has {len(value)} dimensions; at most {_MAX_NDIM} are supported")
    return tuple(_int64(v, f"tensor {what}") for v in value)


def _tensor_view(storage: Any, offset: Any, size: Any, stride: Any) -> _TensorRef:
    """Checks a view of a storage before any element is read (PyTorch's ``_rebuild_tensor_v2``)."""
    if not isinstance(storage, _StorageRef):
        raise ValueError(f"a tensor is rebuilt from {_describe(storage)}, not a storage")
    offset = _int64(offset, "storage offset")
    shape, strides = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    where = f"tensor of shape {shape}, strides {strides} and offset {offset} on storage {storage.key!r}"
    if len(shape) != len(strides):
        raise ValueError(f"{where}: sizes and strides differ in length")
    if offset < 0 or any(n < 0 for n in shape):
        raise ValueError(f"{where}: negative size or offset")
    if any(s < 0 for s in strides):
        raise ValueError(f"{where}: negative stride (it would read before the storage)")
    if 0 in shape:  # no element is read
        if offset > storage.numel:
            raise ValueError(f"{where}: offset past the storage's {storage.numel} elements")
        if math.prod(n for n in shape if n) * storage.dtype.itemsize > _INT64_MAX:
            raise ValueError(f"{where}: shape too large for an array")
        return _TensorRef(storage, offset, shape, strides, False)
    dims = sorted((s, n) for n, s in zip(shape, strides) if n > 1)
    if any(s == 0 for s, _ in dims):
        raise ValueError(f"{where}: stride 0 over more than one element (its elements alias)")
    last = offset + sum((n - 1) * s for s, n in dims)
    if last >= storage.numel:
        raise ValueError(
            f"{where}: its last element {last} lies past the storage's {storage.numel} elements"
        )
    # Sorted by stride, each stride beyond the reach of the smaller ones leaves
    # no two indices on one element (true of every contiguous or permuted layout).
    reach, may_alias = 0, False
    for s, n in dims:
        if s <= reach:
            may_alias = True
            break
        reach += (n - 1) * s
    return _TensorRef(storage, offset, shape, strides, may_alias)


def _elements_alias(ref: _TensorRef, budget: _Budget) -> bool:
    """Whether two indices of the view name one element, counted exactly."""
    numel = math.prod(ref.shape)
    if numel > ref.storage.numel - ref.offset:
        return True  # more indices than elements they can reach
    budget.charge(16 * numel, f"checking that the elements of tensor {ref.shape} do not overlap")
    index = np.zeros(1, np.int64)
    for n, s in zip(ref.shape, ref.strides):
        if n > 1:
            index = (index[:, None] + np.arange(n, dtype=np.int64) * s).ravel()
    index.sort()
    return bool(np.any(index[1:] == index[:-1]))


def _materialise(ref: _TensorRef, buffers: dict[str, np.ndarray], budget: _Budget) -> np.ndarray:
    dtype = ref.storage.dtype
    budget.charge(_ARRAY_OVERHEAD, "an array")
    if 0 in ref.shape:
        return np.zeros(ref.shape, dtype)
    if ref.may_alias and _elements_alias(ref, budget):
        raise ValueError(
            f"tensor of shape {ref.shape} and strides {ref.strides} on storage {ref.storage.key!r}: "
            "two of its indices name the same element"
        )
    budget.charge(math.prod(ref.shape) * dtype.itemsize, f"tensor of shape {ref.shape}")
    buffer = buffers[ref.storage.key]
    view = np.lib.stride_tricks.as_strided(
        buffer[ref.offset:], shape=ref.shape, strides=tuple(s * dtype.itemsize for s in ref.strides)
    )
    out = np.array(view, copy=True)
    if dtype == np.bool_:  # a byte other than 0 or 1 is not a valid numpy bool
        np.not_equal(out.view(np.uint8), 0, out=out)
    return out


# --- The pickle machine ----------------------------------------------------------------


def _check_key(key: Any) -> Any:
    # Scalars hash in bounded time; a nested tuple could recurse in C while hashing.
    if key is None or type(key) in (str, int, float, bool, bytes):
        return key
    raise ValueError(f"a dict key is {_describe(key)}; a state_dict's keys are strings")


class _Unpickler:
    """Runs one pickle, admitting only what a tensor ``state_dict`` needs.

    Follows :mod:`pickle`'s machine (a stack, a stack of marks, a memo), with the
    memo a dict so that an index costs what one entry costs, not the index.
    """

    def __init__(self, data: bytes, pos: int, storages: dict[str, _StorageRef] | None):
        self.data, self.pos, self.start = data, pos, pos
        self.storages = storages  # None: this pickle may not name storages
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.dispatch = {code[0]: handler for code, handler in self._handlers().items()}

    def load(self) -> tuple[Any, int]:
        data, dispatch = self.data, self.dispatch
        while True:
            if self.pos >= len(data):
                raise ValueError(f"pickle at byte {self.start} ends early (truncated file)")
            op = data[self.pos]
            self.pos += 1
            if op == _STOP:
                if not self.stack:
                    raise ValueError("pickle stops with an empty stack: corrupt file")
                return self.stack.pop(), self.pos
            handler = dispatch.get(op)
            if handler is None:
                self._refuse(op)
            handler()

    # reading the file

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise ValueError(f"pickle at byte {self.start} ends early (truncated file)")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def _unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self._take(struct.calcsize(fmt)))
        return value

    def _line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise ValueError(f"pickle at byte {self.start} ends early (truncated file)")
        line = self.data[self.pos:end]
        self.pos = end + 1
        return line

    def _refuse(self, op: int) -> None:
        name = _OPCODE_NAMES.get(op)
        if name is None:
            raise ValueError(f"byte {self.pos - 1} is not a pickle opcode (0x{op:02x}): corrupt file")
        raise UnsafeCheckpointError(
            f"pickle opcode {name} at byte {self.pos - 1}, which a tensor state_dict never uses; "
            "refusing to load it (it could run code)"
        )

    # the stacks

    def _pop(self) -> Any:
        if not self.stack:
            raise ValueError(f"pickle at byte {self.pos - 1} pops an empty stack: corrupt file")
        return self.stack.pop()

    def _top(self) -> Any:
        if not self.stack:
            raise ValueError(f"pickle at byte {self.pos - 1} reads an empty stack: corrupt file")
        return self.stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self.marks:
            raise ValueError(f"pickle at byte {self.pos - 1} closes a MARK never opened: corrupt file")
        items = self.stack
        self.stack = self.marks.pop()
        return items

    def _push(self, value: Any) -> None:
        self.stack.append(value)

    # the objects a state_dict needs

    def _find_class(self, module: Any, name: Any) -> Any:
        if not (isinstance(module, str) and isinstance(name, str)):
            raise ValueError("a pickle global is named by something other than strings")
        target = _GLOBALS.get((module, name))
        if target is None:
            raise UnsafeCheckpointError(
                f"checkpoint refers to {module[:100]}.{name[:100]}, which a tensor state_dict never "
                "needs; refusing to load it (it could run code)"
            )
        return target

    def _call(self, func: Any, args: Any) -> Any:
        if func is _ORDERED_DICT or func is _REBUILD_TENSOR or func is _REBUILD_PARAMETER:
            if not isinstance(args, tuple):
                raise ValueError(f"{func.qualified_name} is called with {_describe(args)}, not a tuple")
        if func is _ORDERED_DICT:
            if args:
                raise ValueError("collections.OrderedDict is called with arguments; a state_dict never does")
            return collections.OrderedDict()
        if func is _REBUILD_TENSOR:
            # (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            if not 4 <= len(args) <= 7:
                raise ValueError(f"_rebuild_tensor_v2 is called with {len(args)} arguments")
            return _tensor_view(*args[:4])
        if func is _REBUILD_PARAMETER:
            # (data, requires_grad, backward_hooks)
            if not 3 <= len(args) <= 4 or not isinstance(args[0], _TensorRef):
                raise ValueError("_rebuild_parameter is called with something other than a tensor")
            return args[0]
        if isinstance(func, _StorageType):
            raise UnsafeCheckpointError(
                f"the pickle calls the storage type torch.{func.name}, which a tensor state_dict never "
                "calls; refusing to load it"
            )
        raise UnsafeCheckpointError(
            f"the pickle calls {_describe(func)}, which is none of the functions a tensor state_dict "
            "calls; refusing to load it"
        )

    def _storage(self, pid: Any) -> _StorageRef:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if self.storages is None:
            raise ValueError(f"pickle at byte {self.start} names a storage where none belongs")
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"):
            raise ValueError(f"unexpected persistent id ({_describe(pid)}); expected a storage")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"a storage's type is {_describe(storage_type)}, not a storage class")
        if not isinstance(key, str) or len(key) > _MAX_KEY_CHARS:
            raise ValueError(f"a storage key is {_describe(key)}, not a short string")
        numel = _int64(pid[4], f"the element count of storage {key!r}")
        if numel < 0:
            raise ValueError(f"storage {key!r} declares {numel} elements")
        if len(pid) == 6 and pid[5] is not None:
            raise ValueError("checkpoint uses storage views, which this reader does not support")
        ref = _StorageRef(key, storage_type.dtype, numel)
        known = self.storages.setdefault(key, ref)
        if known != ref:
            raise ValueError(
                f"storage {key!r} is declared twice, as {known.numel} x {known.dtype} and {numel} x "
                f"{ref.dtype}"
            )
        return known

    def _set_items(self, target: Any, items: list[Any]) -> None:
        if not isinstance(target, dict):
            raise ValueError(f"pickle sets items of {_describe(target)}, not a dict")
        if len(items) % 2:
            raise ValueError("pickle sets a dict item without a value: corrupt file")
        for i in range(0, len(items), 2):
            target[_check_key(items[i])] = items[i + 1]

    def _memo_get(self, index: int) -> None:
        try:
            self._push(self.memo[index])
        except KeyError:
            raise ValueError(f"pickle reads memo entry {index}, never stored: corrupt file") from None

    def _memo_put(self, index: int) -> None:
        if index < 0:
            raise ValueError(f"pickle stores memo entry {index}: corrupt file")
        self.memo[index] = self._top()

    def _decode(self, raw: bytes, encoding: str) -> str:
        try:
            return raw.decode(encoding, "surrogatepass" if encoding == "utf-8" else "strict")
        except UnicodeDecodeError:
            raise ValueError(f"a pickle string before byte {self.pos} is not valid {encoding}") from None

    def _text_number(self) -> bytes:
        line = self._line()
        if len(line) > 64:
            raise ValueError(f"pickle at byte {self.pos} holds a text number of {len(line)} characters")
        return line

    def _text_int(self) -> int:
        return int(self._text_number().rstrip(b"L"))

    def _handlers(self) -> dict[bytes, Any]:
        p, push, take, unpack = pickle, self._push, self._take, self._unpack

        def proto():
            if take(1)[0] > 5:
                raise ValueError("unsupported pickle protocol")

        def frame():
            unpack("<Q")  # framing only groups opcodes; the bytes follow as usual

        def mark():
            self.marks.append(self.stack)
            self.stack = []

        def pop():
            if self.stack:
                self.stack.pop()
            else:
                self._pop_mark()

        def text_int():
            line = self._text_number()
            push(line == b"01" if line in (b"00", b"01") else int(line))

        def long4():
            n = unpack("<i")
            if n < 0:
                raise ValueError("pickle holds a long of negative length: corrupt file")
            push(int.from_bytes(take(n), "little", signed=True))

        def text(n_fmt, encoding):
            def handler():
                push(self._decode(take(unpack(n_fmt)), encoding))
            return handler

        def raw_bytes(n_fmt):
            def handler():
                push(bytes(take(unpack(n_fmt))))
            return handler

        def tuple_of(n):
            def handler():
                if len(self.stack) < n:
                    raise ValueError(f"pickle at byte {self.pos - 1} pops an empty stack: corrupt file")
                items = tuple(self.stack[len(self.stack) - n:])
                del self.stack[len(self.stack) - n:]
                push(items)
            return handler

        def append():
            value = self._pop()
            target = self._top()
            if not isinstance(target, list):
                raise ValueError(f"pickle appends to {_describe(target)}, not a list")
            target.append(value)

        def appends():
            items = self._pop_mark()
            target = self._top()
            if not isinstance(target, list):
                raise ValueError(f"pickle appends to {_describe(target)}, not a list")
            target.extend(items)

        def make_dict():
            items = self._pop_mark()
            target: dict[Any, Any] = {}
            self._set_items(target, items)
            push(target)

        def setitem():
            value = self._pop()
            key = self._pop()
            self._set_items(self._top(), [key, value])

        def setitems():
            items = self._pop_mark()
            self._set_items(self._top(), items)

        def text_global():
            module = self._decode(self._line(), "utf-8")
            name = self._decode(self._line(), "utf-8")
            push(self._find_class(module, name))

        def stack_global():
            name = self._pop()
            module = self._pop()
            push(self._find_class(module, name))

        def reduce():
            args = self._pop()
            func = self._pop()
            push(self._call(func, args))

        def build():
            state = self._pop()
            target = self._top()
            # Only an OrderedDict this load made may be built; its state (PyTorch's
            # _metadata) is dropped, so BUILD changes nothing that outlives the load.
            if type(target) is not collections.OrderedDict:
                raise UnsafeCheckpointError(
                    f"the pickle applies BUILD to {_describe(target)}; a tensor state_dict builds only "
                    "an OrderedDict; refusing to load it"
                )
            if state is not None and not isinstance(state, (dict, tuple)):
                raise ValueError(f"an OrderedDict's state is {_describe(state)}")

        def binpersid():
            push(self._storage(self._pop()))

        return {
            p.PROTO: proto,
            p.FRAME: frame,
            p.MARK: mark,
            p.POP: pop,
            p.POP_MARK: self._pop_mark,
            p.DUP: lambda: push(self._top()),
            p.NONE: lambda: push(None),
            p.NEWTRUE: lambda: push(True),
            p.NEWFALSE: lambda: push(False),
            p.INT: text_int,
            p.LONG: lambda: push(self._text_int()),
            p.BININT: lambda: push(unpack("<i")),
            p.BININT1: lambda: push(take(1)[0]),
            p.BININT2: lambda: push(unpack("<H")),
            p.LONG1: lambda: push(int.from_bytes(take(take(1)[0]), "little", signed=True)),
            p.LONG4: long4,
            p.FLOAT: lambda: push(float(self._text_number())),
            p.BINFLOAT: lambda: push(struct.unpack(">d", take(8))[0]),
            p.BINUNICODE: text("<I", "utf-8"),
            p.SHORT_BINUNICODE: text("<B", "utf-8"),
            p.BINUNICODE8: text("<Q", "utf-8"),
            p.UNICODE: lambda: push(self._decode(self._line(), "raw-unicode-escape")),
            p.BINSTRING: text("<i", "latin-1"),
            p.SHORT_BINSTRING: text("<B", "latin-1"),
            p.BINBYTES: raw_bytes("<I"),
            p.SHORT_BINBYTES: raw_bytes("<B"),
            p.BINBYTES8: raw_bytes("<Q"),
            p.BYTEARRAY8: raw_bytes("<Q"),
            p.EMPTY_TUPLE: lambda: push(()),
            p.TUPLE: lambda: push(tuple(self._pop_mark())),
            p.TUPLE1: tuple_of(1),
            p.TUPLE2: tuple_of(2),
            p.TUPLE3: tuple_of(3),
            p.EMPTY_LIST: lambda: push([]),
            p.LIST: lambda: push(self._pop_mark()),
            p.APPEND: append,
            p.APPENDS: appends,
            p.EMPTY_DICT: lambda: push({}),
            p.DICT: make_dict,
            p.SETITEM: setitem,
            p.SETITEMS: setitems,
            p.GET: lambda: self._memo_get(self._text_int()),
            p.BINGET: lambda: self._memo_get(take(1)[0]),
            p.LONG_BINGET: lambda: self._memo_get(unpack("<I")),
            p.PUT: lambda: self._memo_put(self._text_int()),
            p.BINPUT: lambda: self._memo_put(take(1)[0]),
            p.LONG_BINPUT: lambda: self._memo_put(unpack("<I")),
            p.MEMOIZE: lambda: self._memo_put(len(self.memo)),
            p.GLOBAL: text_global,
            p.STACK_GLOBAL: stack_global,
            p.REDUCE: reduce,
            p.BUILD: build,
            p.BINPERSID: binpersid,
        }


def _unpickle(data: bytes, pos: int, storages: dict[str, _StorageRef] | None) -> tuple[Any, int]:
    """The object pickled at ``data[pos:]``, and the position after its STOP."""
    return _Unpickler(data, pos, storages).load()


# --- The two file formats --------------------------------------------------------------


def _collect(obj: Any, budget: _Budget) -> list[tuple[str, _TensorRef]]:
    """Flattens nested dicts of tensors into dotted names, without recursion.

    Tensors this cannot name (a list of them, at the top or inside) and two
    tensors under one dotted name are refused: returning fewer tensors than the
    checkpoint holds would lose weights silently. A dict without tensors gives none.
    """
    if isinstance(obj, _TensorRef):
        return [("", obj)]
    if not isinstance(obj, dict):
        raise ValueError(f"holds a {type(obj).__name__} at its top, not a state_dict (a dict of tensors)")
    out: list[tuple[str, _TensorRef]] = []
    names: set[str] = set()
    seen = {id(obj)}
    stack = [("", iter(obj.items()))]
    while stack:
        prefix, items = stack[-1]
        entry = next(items, None)
        if entry is None:
            stack.pop()
            continue
        key, value = entry
        if isinstance(value, (list, tuple)) and any(isinstance(v, _TensorRef) for v in value):
            raise ValueError(f"holds tensors in a {type(value).__name__} at {str(key)[:80]!r}; a state_dict "
                             "names each tensor")
        if not isinstance(value, (dict, _TensorRef)):
            continue  # other plain values (numbers, strings, metadata) carry no weights
        key = str(key)
        budget.charge(len(prefix) + 1 + len(key), "a tensor's name")
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, _TensorRef):
            if name in names:
                raise ValueError(f"names two tensors {name[:80]!r} (keys such as 1 and '1', or 'a.b' and a nested "
                                 "'a' / 'b')")
            names.add(name)
            out.append((name, value))
            continue
        if id(value) in seen:
            raise ValueError(f"the dict at {name[:80]!r} appears twice in the checkpoint (a cycle)")
        if len(stack) >= _MAX_NESTING:
            raise ValueError(f"dicts nested more than {_MAX_NESTING} deep")
        seen.add(id(value))
        stack.append((name, iter(value.items())))
    return out


def _needed(named: list[tuple[str, _TensorRef]]) -> dict[str, _StorageRef]:
    """The storages whose bytes some tensor reads, in first-use order."""
    return {ref.storage.key: ref.storage for _, ref in named if 0 not in ref.shape}


def _load_legacy(data: bytes, budget: _Budget):
    try:
        magic, pos = _unpickle(data, 0, None)
    except UnsafeCheckpointError:
        raise
    except ValueError as e:
        raise ValueError(f"not a readable PyTorch checkpoint (neither a zip archive nor a legacy file: {e})")
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise ValueError("not a readable PyTorch checkpoint: no zip header and no PyTorch magic number")
    version, pos = _unpickle(data, pos, None)
    if type(version) is not int or version != _LEGACY_PROTOCOL:
        raise ValueError(f"legacy format version {_describe(version)}; this reader knows {_LEGACY_PROTOCOL}")
    system, pos = _unpickle(data, pos, None)
    if isinstance(system, dict) and system.get("little_endian") is False:
        raise ValueError("the checkpoint was written big-endian, which this reader does not support")
    storages: dict[str, _StorageRef] = {}
    obj, pos = _unpickle(data, pos, storages)
    keys, pos = _unpickle(data, pos, None)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"the storage key list is {_describe(keys)}, not a list of strings")
    named = _collect(obj, budget)
    needed = _needed(named)
    buffers: dict[str, np.ndarray] = {}
    listed: set[str] = set()
    for key in keys:  # each storage: its element count (int64), then its bytes
        if len(buffers) == len(needed):
            break  # the rest is never read
        if key in listed:
            raise ValueError(f"storage {key[:40]!r} is listed twice")
        listed.add(key)
        storage = storages.get(key)
        if storage is None:
            raise ValueError(f"the storage list names {key[:40]!r}, which the pickle never declares")
        if pos + 8 > len(data):
            raise ValueError(f"the file ends before storage {key!r} (truncated file)")
        (numel,) = struct.unpack_from("<q", data, pos)
        pos += 8
        if numel != storage.numel:
            raise ValueError(
                f"storage {key!r} holds {numel} elements but the pickle declares {storage.numel}"
            )
        nbytes = numel * storage.dtype.itemsize
        if nbytes > len(data) - pos:
            raise ValueError(f"storage {key!r} runs past the end of the file (truncated file)")
        if key in needed:
            buffers[key] = np.frombuffer(data, storage.dtype, count=numel, offset=pos)
        pos += nbytes
    for key in needed:
        if key not in buffers:
            raise ValueError(f"checkpoint lacks the bytes of storage {key!r}")
    return named, buffers


# What zipfile raises on a malformed archive (besides ValueError and its subclasses).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, LookupError, struct.error)


@contextlib.contextmanager
def _zip_errors(what: str):
    try:
        yield
    except (ValueError, *_ZIP_ERRORS) as e:
        raise ValueError(f"{what} is corrupt ({type(e).__name__}: {e})") from e


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytearray:
    """A member's bytes, refused before inflating if they would pass the budget."""
    name = info.filename[:200]
    if info.flag_bits & 0x1:
        raise ValueError(f"zip member {name!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(
            f"zip member {name!r} uses compression method {info.compress_type}; PyTorch stores members "
            "uncompressed"
        )
    budget.charge(info.file_size, f"zip member {name!r}")
    out = bytearray(info.file_size)
    filled = 0
    with _zip_errors(f"zip member {name!r}"), archive.open(info) as member:
        while filled < len(out):  # inflates at most what the directory declares
            chunk = member.read(min(_CHUNK, len(out) - filled))
            if not chunk:
                raise EOFError("it ends early (truncated file)")
            out[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
    return out


def _load_zip(data: bytes, budget: _Budget):
    with _zip_errors("the zip archive"):  # its directory is read from memory, never past the file
        archive = zipfile.ZipFile(io.BytesIO(data))
    pickles = {
        info.filename: info
        for info in archive.infolist()
        if info.filename == "data.pkl" or (info.filename.endswith("/data.pkl") and info.filename.count("/") == 1)
    }
    if not pickles:
        raise ValueError("zip file has no data.pkl: not a PyTorch checkpoint")
    if len(pickles) > 1:
        raise ValueError(f"zip file has {len(pickles)} data.pkl members; a checkpoint has one")
    ((pkl_name, pkl_info),) = pickles.items()
    root = pkl_name[: -len("data.pkl")]
    order = archive.NameToInfo.get(root + "byteorder")
    if order is not None and (order.file_size > 16 or bytes(_read_member(archive, order, budget)) != b"little"):
        raise ValueError("the checkpoint was written big-endian, which this reader does not support")
    storages: dict[str, _StorageRef] = {}
    obj, _ = _unpickle(bytes(_read_member(archive, pkl_info, budget)), 0, storages)
    named = _collect(obj, budget)
    buffers: dict[str, np.ndarray] = {}
    for key, storage in _needed(named).items():
        info = archive.NameToInfo.get(f"{root}data/{key}")
        if info is None:
            raise ValueError(f"checkpoint lacks the bytes of storage {key!r} (no member {root}data/{key})")
        raw = _read_member(archive, info, budget)
        nbytes = storage.numel * storage.dtype.itemsize
        if len(raw) < nbytes:
            raise ValueError(
                f"storage {key!r} declares {storage.numel} elements ({nbytes} bytes) but its member "
                f"holds {len(raw)} bytes"
            )
        buffers[key] = np.frombuffer(raw, storage.dtype, count=storage.numel)
    return named, buffers


# Errors the standard library raises on malformed input; each becomes a ValueError.
_MALFORMED = (
    ArithmeticError, LookupError, TypeError, AttributeError, RuntimeError, EOFError, OSError,
    struct.error, zipfile.BadZipFile, zlib.error,
)


def load_torch_state_dict(path: str | os.PathLike, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Reads a PyTorch ``state_dict`` file into numpy arrays, never running its code.

    The work is bounded by the file: see the module docstring for what is checked.

    Args:
      path: a ``.pth``/``.pt`` file in the legacy or the zip format.
      max_bytes: the most bytes the load may allocate for inflated zip members and
        the returned arrays (with their names). Default: 4x the file's size plus
        1 MiB, enough for any file PyTorch writes (it never compresses); raise it
        for a trusted checkpoint whose zip members were compressed.

    Returns:
      ``{dotted_name: array}`` with the tensors' shapes and dtypes (PyTorch layout,
      e.g. convolution kernels ``[O, I, kh, kw]``).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      UnsafeCheckpointError: the file names a callable, an opcode or an object a
        ``state_dict`` never needs (a subclass of ``ValueError``).
      ValueError: ``max_bytes`` is not a positive int; or the file is not a PyTorch
        checkpoint, is truncated or corrupt, has a tensor that reaches outside its
        storage or whose elements alias, or needs more than ``max_bytes``. The
        message names the file and what was wrong.
    """
    path = os.fspath(path)
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0):
        raise ValueError(f"max_bytes: expected a positive int or None, got {max_bytes!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no checkpoint file at {path!r}")
    with open(path, "rb") as f:
        data = f.read()
    limit = 4 * len(data) + _SLACK_BYTES if max_bytes is None else max_bytes
    budget = _Budget(limit, explicit=max_bytes is not None)
    try:
        if data[:4] == b"PK\x03\x04":
            named, buffers = _load_zip(data, budget)
        else:
            named, buffers = _load_legacy(data, budget)
        return {name: _materialise(ref, buffers, budget) for name, ref in named}
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"checkpoint {path!r}: {e}") from None
    except ValueError as e:
        raise ValueError(f"checkpoint {path!r}: {e}") from None
    except _MALFORMED as e:
        raise ValueError(f"checkpoint {path!r} is corrupt ({type(e).__name__}: {e})") from e

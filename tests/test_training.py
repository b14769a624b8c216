"""Training: input pipeline, sharded step, checkpoints and exact resume, end to end on TFDS mock data."""

import functools
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from saliency_jax import parallel
from saliency_jax.training import (
    ArraySource,
    MetricsLog,
    TrainConfig,
    build_model,
    create_train_state,
    eval_step,
    fit_image,
    make_optimizer,
    parse_override,
    read_metrics,
    train_and_evaluate,
    train_batches,
    train_indices,
    train_step,
)
from saliency_jax.training import input_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = dict(
    model="scaled",
    width=0.0625,
    mid_convs=1,
    dense_features=16,
    image_size=32,
    resize_size=None,
    optimizer="sgd",
    learning_rate=0.05,
    momentum=0.9,
    global_batch_size=8,
    eval_batch_size=8,
    log_every=2,
    checkpoint_every=2,
    eval_every=0,
    num_workers=2,
)


def _toy_sources(n_train=40, n_eval=12, size=32, k=3, seed=0):
    rng = np.random.default_rng(seed)

    def split(n):
        return ArraySource(
            {"image": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), "label": rng.integers(0, k, n)},
            num_classes=k,
        )

    return {"train": split(n_train), "eval": split(n_eval)}


# ---------------------------------------------------------------------------- input pipeline


def test_train_indices_visit_every_example_once_per_epoch():
    n, b = 10, 4
    order = np.concatenate([train_indices(n, b, s, seed=3) for s in range(5)])  # 20 = two epochs
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:]) == list(range(10))
    assert not np.array_equal(order[:10], order[10:])  # reshuffled each epoch
    np.testing.assert_array_equal(train_indices(n, b, 3, seed=3), order[12:16])  # pure in the step
    assert not np.array_equal(train_indices(n, b, 0, seed=4), order[:4])


def test_train_batches_resume_mid_stream():
    source = _toy_sources()["train"]
    kwargs = dict(global_batch_size=8, seed=1, image_size=32, random_flip=True, num_workers=1)
    full = train_batches(source, start_step=0, num_steps=5, **kwargs)
    late = train_batches(source, start_step=3, num_steps=2, **kwargs)
    full_batches, late_batches = list(full), list(late)
    for a, b in zip(full_batches[3:], late_batches):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
    # Two hosts each read half of every global batch.
    halves = [list(train_batches(source, start_step=0, num_steps=2, process_index=i, process_count=2, **kwargs))
              for i in range(2)]
    for step in range(2):
        joined = np.concatenate([halves[0][step].images, halves[1][step].images])
        np.testing.assert_array_equal(joined, full_batches[step].images)


def test_eval_batches_pad_and_mask():
    source = _toy_sources(n_eval=11)["eval"]
    batches = list(input_pipeline.eval_batches(source, global_batch_size=4, image_size=32, num_workers=1))
    assert len(batches) == 3
    assert [int(b.mask.sum()) for b in batches] == [4, 4, 3]
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches])[:11], source.features["label"])


def test_fit_image_resizes_crops_and_flips():
    image = np.zeros((30, 40, 3), np.uint8)
    image[:, :20] = 255  # left half white
    out = fit_image(image, 16, 20)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert out[:, 0].mean() > 200 and out[:, -1].mean() < 50
    flipped = fit_image(image, 16, 20, flip=True)
    np.testing.assert_array_equal(flipped, out[:, ::-1])
    grey = fit_image(np.full((8, 12), 7, np.uint8), 6)
    assert grey.shape == (6, 6, 3) and (grey == 7).all()
    with pytest.raises(ValueError, match="image"):
        fit_image(np.zeros((4, 4, 2), np.uint8), 4)


# ---------------------------------------------------------------------------- steps


def _tiny_state_and_batch(config, key, num_classes=3):
    model = build_model(config, num_classes)
    tx = make_optimizer(config)
    state = jax.jit(functools.partial(create_train_state, model, tx, image_shape=(32, 32, 3)))(key)
    images = np.asarray(jax.random.randint(jax.random.key(5), (8, 32, 32, 3), 0, 256), np.uint8)
    labels = np.arange(8, dtype=np.int32) % num_classes
    return model, tx, state, images, labels


def test_one_sharded_step_equals_one_single_device_step():
    config = TrainConfig(**TINY)
    model, tx, state, images, labels = _tiny_state_and_batch(config, jax.random.key(0))
    step = functools.partial(train_step, model=model, tx=tx)
    dropout_key = jax.random.key(9)

    single_device = jax.devices()[0]
    single_state, single_metrics = jax.jit(step)(
        jax.device_put(state, single_device), jax.device_put(images, single_device),
        jax.device_put(labels, single_device), dropout_key,
    )

    mesh = parallel.data_mesh()
    assert mesh.size == 4
    rep, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    sharded_step = jax.jit(step, in_shardings=(rep, data, data, rep), out_shardings=(rep, rep))
    sharded_images, sharded_labels = parallel.shard_batch((images, labels), mesh)
    assert len(sharded_images.addressable_shards) == 4
    sharded_state, sharded_metrics = sharded_step(parallel.replicate(state, mesh), sharded_images, sharded_labels,
                                                  dropout_key)

    assert int(sharded_state.step) == int(single_state.step) == 1
    for a, b in zip(jax.tree.leaves(sharded_metrics), jax.tree.leaves(single_metrics)):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), single_state.params, state.params)
    assert max(jax.tree.leaves(moved)) > 0  # the step did change the weights
    for a, b in zip(jax.tree.leaves(sharded_state.params), jax.tree.leaves(single_state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_loop_compiles_its_steps_with_xla_convolutions_on_cpu():
    """The training loop jits with ``cpu_convolution_options``: no convolution is left to YNNPACK."""
    from saliency_jax.training import loop

    mesh = parallel.data_mesh()
    _, _, init, step_fn, eval_fn = loop._compiled(TrainConfig(**TINY), 3, mesh)
    state = init(jax.random.key(0))
    images, labels, mask = parallel.shard_batch(
        (np.zeros((8, 32, 32, 3), np.uint8), np.zeros(8, np.int32), np.ones(8, bool)), mesh
    )
    for compiled in (step_fn.lower(state, images, labels, jax.random.key(1)).compile(),
                     eval_fn.lower(state.params, images, labels, mask).compile()):
        lines = compiled.as_text().split("\nENTRY")[1].splitlines()
        assert any(" convolution(" in line for line in lines)
        assert not any("kind=kCustom" in line and "conv_general_dilated" in line for line in lines)


def test_eval_step_ignores_padding_rows():
    config = TrainConfig(**TINY)
    model, _, state, images, labels = _tiny_state_and_batch(config, jax.random.key(1))
    evaluate = jax.jit(functools.partial(eval_step, model=model))
    full = evaluate(state.params, images[:5], labels[:5], np.ones(5, bool))
    padded = evaluate(state.params, images, labels, np.arange(8) < 5)
    for a, b in zip(full, padded):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert float(padded.count) == 5
    logits = jax.jit(model.apply)(state.params, images[:5].astype(np.float32))
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels[:5]).sum()
    np.testing.assert_allclose(full.loss, expected, rtol=1e-5)


# ---------------------------------------------------------------------------- the loop


class _Interrupt(Exception):
    pass


def _stop_at(step):
    def callback(done):
        if done == step:
            raise _Interrupt

    return callback


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    config = TrainConfig(dataset="toy", num_train_steps=6, dropout_rate=0.5, **TINY)
    sources = _toy_sources()

    straight = train_and_evaluate(config, tmp_path / "straight", sources=sources, progress=False)
    assert straight.resumed_from is None and int(straight.state.step) == 6

    workdir = tmp_path / "resumed"
    with pytest.raises(_Interrupt):  # dies after step 5; the last checkpoint is step 4
        train_and_evaluate(config, workdir, sources=sources, progress=False, step_callback=_stop_at(5))
    resumed = train_and_evaluate(config, workdir, sources=sources, progress=False)
    assert resumed.resumed_from == 4

    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert straight.eval == resumed.eval

    # The log of the resumed run reads like the uninterrupted one.
    def training_lines(path):
        return [(r["step"], r["train_loss"]) for r in read_metrics(path) if "train_loss" in r]

    assert training_lines(workdir / "metrics.jsonl") == training_lines(tmp_path / "straight" / "metrics.jsonl")
    assert [r["step"] for r in read_metrics(workdir / "metrics.jsonl") if "train_loss" in r] == [2, 4, 6]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6"]
    assert json.load(open(workdir / "config.json"))["num_train_steps"] == 6

    # Running a finished run again restores it and adds no duplicate lines.
    again = train_and_evaluate(config, workdir, sources=sources, progress=False)
    assert again.resumed_from == 6
    assert sum(1 for r in read_metrics(workdir / "metrics.jsonl") if r.get("final")) == 1


def test_end_to_end_on_tfds_mock_data(tmp_path, capsys):
    """imagenet2012 through tfds.data_source (no TensorFlow), images of random sizes; then the CLI."""
    overrides = dict(TINY, resize_size=36, global_batch_size=4, eval_batch_size=4)
    config = TrainConfig(dataset="imagenet2012", num_train_steps=3, **overrides)
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        result = train_and_evaluate(config, tmp_path / "work", progress=False)
    assert result.num_classes == 1000
    assert int(result.state.step) == 3
    assert result.eval.num_examples == 6 and np.isfinite(result.eval.loss)
    assert result.state.params["params"]["full6"]["kernel"].shape == (16, 1000)
    records = read_metrics(tmp_path / "work" / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 3, 3]
    assert records[-1]["final"] and records[-1]["eval_examples"] == 6
    logits_fn = functools.partial(result.model.apply, train=False)
    assert logits_fn(result.state.params, jnp.zeros((2, 32, 32, 3))).shape == (2, 1000)

    # The same run from a config file through experiments/train.py, with an override.
    config_file = tmp_path / "tiny.py"
    config_file.write_text(
        "from saliency_jax.training import TrainConfig\n"
        f"def get_config():\n    return TrainConfig(dataset='imagenet2012', num_train_steps=3, **{overrides!r})\n"
    )
    spec = importlib.util.spec_from_file_location("train_cli", os.path.join(ROOT, "experiments", "train.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        code = cli.main(["--config", str(config_file), "--workdir", str(tmp_path / "cli"), "--no-progress",
                         "--set", "seed=0"])
    assert code == 0
    assert "eval accuracy" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "cli" / "checkpoints")) == ["2", "3"]
    with pytest.raises(ValueError, match="unknown"):
        cli.main(["--config", str(config_file), "--workdir", str(tmp_path / "x"), "--set", "nope=1"])


def test_metrics_log_truncates_on_resume(tmp_path):
    path = tmp_path / "m.jsonl"
    log = MetricsLog(path)
    for step in (1, 2, 3):
        log.write(step, {"loss": np.float32(step), "bad": float("nan")})
    MetricsLog(path, resume_step=2).write(3, {"loss": 30.0})
    records = read_metrics(path)
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert records[0]["bad"] == "nan"


def test_config_validation_and_overrides():
    config = TrainConfig()
    assert parse_override(config, "learning_rate=0.1").learning_rate == 0.1
    assert parse_override(config, "random_flip=false").random_flip is False
    assert parse_override(config, "resize_size=none").resize_size is None
    assert parse_override(config, "num_train_steps=7").num_train_steps == 7
    assert parse_override(config, "dataset=cifar10").dataset == "cifar10"
    with pytest.raises(ValueError, match="unknown"):
        parse_override(config, "nope=1")
    with pytest.raises(ValueError, match="model"):
        TrainConfig(model="resnet")
    with pytest.raises(ValueError, match="resize_size"):
        TrainConfig(image_size=224, resize_size=200)
    with pytest.raises(ValueError, match="multiples"):
        train_and_evaluate(TrainConfig(dataset="toy", global_batch_size=6, **{k: v for k, v in TINY.items()
                                                                                if k != "global_batch_size"}),
                           "/nonexistent-unused", sources=_toy_sources(), progress=False)


def test_missing_dataset_raises_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot open TFDS dataset 'mnist'"):
        input_pipeline.load_source("mnist", "train", str(tmp_path))

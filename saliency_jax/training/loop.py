"""The training loop: data-parallel steps, checkpoints, resume, metrics log, evaluation.

``workdir`` holds ``checkpoints/<step>/`` (orbax), ``metrics.jsonl`` and
``config.json``. Running again with the same ``workdir`` resumes from the
latest checkpoint and continues exactly as an uninterrupted run would: the
batches and dropout masks of a step depend only on the seed and the step, and
the metrics log is cut back to the checkpoint. A config that would train other
weights than the run being resumed is refused (:func:`check_resumable`), and
``config.json`` is written only once the resume is accepted. While a run goes on,
it holds an operating-system lock on ``workdir/.lock``: a second run into the same
``workdir`` is refused (the lock ends with its process, so a killed run leaves
none behind).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
import tqdm
from jax.sharding import Mesh

from saliency_jax import parallel
from saliency_jax._checks import check_int
from saliency_jax.models import cpu_convolution_options
from saliency_jax.training import checkpoints, input_pipeline
from saliency_jax.training._paths import check_file, check_folder
from saliency_jax.training.config import TrainConfig
from saliency_jax.training.metrics_log import MetricsLog
from saliency_jax.training.steps import (
    StepMetrics,
    TrainState,
    build_model,
    create_train_state,
    eval_step,
    learning_rate_schedule,
    make_optimizer,
    train_step,
)


class EvalResult(NamedTuple):
    """Metrics of an evaluation pass.

    Attributes:
      loss: mean cross-entropy.
      accuracy: top-1 accuracy.
      num_examples: examples evaluated.
    """

    loss: float
    accuracy: float
    num_examples: int


class TrainResult(NamedTuple):
    """What a run leaves: ``functools.partial(model.apply, train=False)`` with
    ``state.params`` is the trained ``logits_fn``.

    Attributes:
      model: the Flax module.
      state: the final :class:`~saliency_jax.training.steps.TrainState`.
      eval: the final :class:`EvalResult`.
      num_classes: ``K``.
      resumed_from: the checkpoint step the run started from (``None``: fresh).
    """

    model: nn.Module
    state: TrainState
    eval: EvalResult
    num_classes: int
    resumed_from: int | None


def _check_source(source, what: str, config: TrainConfig) -> None:
    """Raises ``ValueError`` unless ``source`` is a non-empty random-access source with the config's keys."""
    try:
        size = len(source)
        example = source[0] if size else None
    except (TypeError, AttributeError, KeyError) as error:
        raise ValueError(f"{what} must be a random-access data source (len and [i]), got {type(source).__name__}: "
                         f"{error}") from error
    if not size:
        raise ValueError(f"{what} must hold at least one example, got an empty source")
    if not isinstance(example, Mapping):
        raise ValueError(f"{what} must give dicts of features, got {type(example).__name__} for example 0")
    for name in ("image_key", "label_key"):
        key = getattr(config, name)
        if key not in example:
            raise ValueError(f"{name} must name a feature of {what}, got {key!r}; its features are {sorted(example)}")


def _open_sources(config: TrainConfig, sources: Mapping[str, Any] | None):
    if sources is not None:
        if not isinstance(sources, Mapping):
            raise ValueError(f"sources must be a mapping with keys 'train' and 'eval', got {type(sources).__name__}")
        missing = {"train", "eval"} - set(sources)
        if missing:
            raise ValueError(f"sources must have keys 'train' and 'eval', missing {sorted(missing)}")
        _check_source(sources["train"], "sources['train']", config)
        _check_source(sources["eval"], "sources['eval']", config)
        return sources["train"], sources["eval"]
    train = input_pipeline.load_source(config.dataset, config.train_split, config.data_dir)
    evaluation = input_pipeline.load_source(config.dataset, config.eval_split, config.data_dir)
    _check_source(train, f"the {config.train_split!r} split of {config.dataset!r} (train_split)", config)
    _check_source(evaluation, f"the {config.eval_split!r} split of {config.dataset!r} (eval_split)", config)
    if config.cache_in_memory:
        keys = [config.image_key, config.label_key]
        train = input_pipeline.cache_in_memory(train, keys, label_key=config.label_key, num_workers=config.num_workers)
        evaluation = input_pipeline.cache_in_memory(
            evaluation, keys, label_key=config.label_key, num_workers=config.num_workers
        )
    return train, evaluation


def _pipeline_kwargs(config: TrainConfig) -> dict:
    """The input pipeline settings shared by training and evaluation batches, for this process."""
    return dict(
        image_size=config.image_size,
        resize_size=config.resize_size,
        image_key=config.image_key,
        label_key=config.label_key,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_workers=config.num_workers,
    )


def evaluate(
    eval_fn: Callable[..., StepMetrics],
    params: Any,
    source,
    config: TrainConfig,
    mesh: Mesh,
) -> EvalResult:
    """One pass over ``source`` (capped at ``config.eval_examples``) with a jitted :func:`eval_step`."""
    batches = input_pipeline.eval_batches(
        source, global_batch_size=config.eval_batch_size, num_examples=config.eval_examples, **_pipeline_kwargs(config)
    )
    total = None
    try:
        for batch in batches:
            images, labels, mask = parallel.shard_batch((batch.images, batch.labels, batch.mask), mesh)
            metrics = eval_fn(params, images, labels, mask)
            total = metrics if total is None else jax.tree.map(lambda a, b: a + b, total, metrics)
    finally:
        batches.close()
    if total is None:
        raise ValueError("source must hold at least one example to evaluate, got an empty source")
    loss, correct, count, bad = (float(x) for x in jax.device_get(total))
    if bad:
        raise ValueError(
            f"{config.label_key} values must be class ids in [0, K), K the model's number of classes, but "
            f"{int(bad)} of the {int(count)} evaluated examples are not"
        )
    return EvalResult(loss / max(count, 1.0), correct / max(count, 1.0), int(count))


def _compiled(config: TrainConfig, num_classes: int, mesh: Mesh):
    """The model and its jitted init, train and eval functions for a config (reused across runs).

    Runs whose configs differ only in what the jitted functions do not see (the
    data, batch sizes, seed, how often to log) share one compilation.
    """
    return _compiled_for(_compile_key(config), num_classes, mesh)


def _compile_key(config: TrainConfig) -> TrainConfig:
    """``config`` with every field the model, optimiser and schedule do not read set to a fixed value."""
    return dataclasses.replace(
        config, dataset="-", data_dir=None, train_split="-", eval_split="-", image_key="-", label_key="-",
        resize_size=None, random_flip=False, cache_in_memory=False, num_workers=1, global_batch_size=1,
        eval_batch_size=1, log_every=1, checkpoint_every=1, keep_checkpoints=1, eval_every=0, eval_examples=None,
        seed=0,
    )


@functools.lru_cache(maxsize=4)
def _compiled_for(config: TrainConfig, num_classes: int, mesh: Mesh):
    model = build_model(config, num_classes)
    tx = make_optimizer(config)
    replicated, batch = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    options = cpu_convolution_options()  # XLA's own convolutions on CPU: much faster kernel gradients
    init = jax.jit(
        functools.partial(create_train_state, model, tx, image_shape=(config.image_size, config.image_size, 3)),
        out_shardings=replicated,
        compiler_options=options,
    )
    step_fn = jax.jit(
        functools.partial(train_step, model=model, tx=tx),
        in_shardings=(replicated, batch, batch, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
        compiler_options=options,
    )
    eval_fn = jax.jit(
        functools.partial(eval_step, model=model),
        in_shardings=(replicated, batch, batch, batch),
        out_shardings=replicated,
        compiler_options=options,
    )
    return model, learning_rate_schedule(config), init, step_fn, eval_fn


MAX_BATCH_BYTES = 2**35  # of one process's share of a batch of float32 images: 32 GiB


@contextlib.contextmanager
def _workdir_lock(workdir: str, *, enabled: bool):
    """Holds an exclusive lock on ``workdir/.lock`` for the run, so a second run into it is refused.

    The lock is the operating system's (``fcntl.flock``): it ends with the process, so a run that
    was killed leaves nothing stale behind.
    """
    if not enabled:
        yield
        return
    import fcntl

    path = os.path.join(workdir, ".lock")
    try:
        handle = open(path, "a")
    except OSError as e:
        raise ValueError(f"workdir {workdir!r} cannot be written: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"workdir {workdir!r} is in use by another run (it holds {path}); wait for that "
                             "run to end or choose another workdir") from None
        except OSError:  # a file system without locks (some network mounts): run unguarded, as before
            pass
        yield
    finally:
        handle.close()


def _write_json_atomic(path: str, payload: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def train_and_evaluate(
    config: TrainConfig,
    workdir: str | os.PathLike,
    *,
    mesh: Mesh | None = None,
    sources: Mapping[str, Any] | None = None,
    progress: bool = True,
    step_callback: Callable[[int], None] | None = None,
) -> TrainResult:
    """Trains (or resumes training) a ConvNet, then evaluates it.

    Args:
      config: the run's settings.
      workdir: checkpoints, ``metrics.jsonl`` and ``config.json`` go here.
      mesh: devices to train on (default: :func:`~saliency_jax.parallel.data_mesh`,
        all devices of all hosts).
      sources: optional ``{"train": ..., "eval": ...}`` random-access sources
        used instead of opening ``config.dataset`` with TFDS.
      progress: show a progress bar (process 0 only).
      step_callback: called with the number of steps done after each step.

    Returns:
      :class:`TrainResult`.

    Raises:
      ValueError: a bad argument; a ``workdir`` that is a file; a checkpoint in
        ``workdir`` that is damaged or that ``config`` cannot resume
        (:func:`check_resumable`); a source without examples or
        without the config's keys; labels outside ``[0, K)``.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    # Checked before anything is written: orbax would take a file for its folder and fail at the first save.
    workdir = check_folder(workdir, "workdir")
    check_folder(os.path.join(workdir, "checkpoints"), "workdir's checkpoints folder")
    for name in ("config.json", "metrics.jsonl"):
        check_file(os.path.join(workdir, name), f"workdir's {name}")
    mesh = parallel.data_mesh() if mesh is None else mesh
    if config.global_batch_size % mesh.size or config.eval_batch_size % mesh.size:
        raise ValueError(
            f"global_batch_size ({config.global_batch_size}) and eval_batch_size ({config.eval_batch_size}) "
            f"must be multiples of the {mesh.size} devices"
        )
    # Each process holds its share of a batch as float32 images; past MAX_BATCH_BYTES a run would read for
    # hours and then fail with a bare MemoryError (10**8 images of 64 x 64 waited on the prefetch thread).
    for name in ("global_batch_size", "eval_batch_size"):
        share = -(-getattr(config, name) // jax.process_count()) * config.image_size**2 * 3 * 4
        if share > MAX_BATCH_BYTES:
            raise ValueError(
                f"{name} must keep each process's share of a batch of {config.image_size} x {config.image_size} "
                f"float32 images within {MAX_BATCH_BYTES // 2**30} GiB, got {getattr(config, name):,} images "
                f"over {jax.process_count()} process(es) ({share / 2**30:,.0f} GiB each)"
            )
    is_main = jax.process_index() == 0
    if is_main:
        try:
            os.makedirs(workdir, exist_ok=True)
        except OSError as e:
            raise ValueError(f"workdir {workdir!r} cannot be created: {e.strerror or e}") from None
    with _workdir_lock(workdir, enabled=is_main):
        return _train(config, workdir, mesh, sources, progress, step_callback, is_main)


def _train(config, workdir, mesh, sources, progress, step_callback, is_main) -> TrainResult:
    """:func:`train_and_evaluate` once the workdir is checked, created and locked."""
    manager = checkpoints.checkpoint_manager(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    try:
        resumed_from = checkpoints.latest_step(manager)
        if resumed_from is not None:
            # an empty or damaged checkpoint is reported as such, not as the step the run is at
            checkpoints.check_readable(manager, resumed_from)
            check_resumable(config, workdir, resumed_from)

        train_source, eval_source = _open_sources(config, sources)
        num_classes = input_pipeline.num_classes_of(train_source, config.label_key)
        model, schedule, init, step_fn, eval_fn = _compiled(config, num_classes, mesh)
        root_key = jax.random.key(config.seed)
        state = init(jax.random.fold_in(root_key, 0))
        dropout_key = jax.random.fold_in(root_key, 1)
        if resumed_from is not None:
            state = checkpoints.restore(manager, state, resumed_from)
        if is_main:  # after the checks and the restore: a refused resume leaves the run's record as it was
            _write_json_atomic(os.path.join(workdir, "config.json"), dataclasses.asdict(config))
        log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), resume_step=resumed_from, enabled=is_main,
                         continuing=resumed_from is not None and resumed_from < config.num_train_steps)
    except BaseException:
        manager.close()
        raise

    start = int(jax.device_get(state.step))
    batches = None
    bar = tqdm.tqdm(
        total=config.num_train_steps, initial=start, disable=not (progress and is_main), desc="train", unit="step"
    )
    try:
        if start < config.num_train_steps:
            batches = input_pipeline.train_batches(
                train_source,
                global_batch_size=config.global_batch_size,
                seed=config.seed,
                start_step=start,
                num_steps=config.num_train_steps - start,
                random_flip=config.random_flip,
                **_pipeline_kwargs(config),
            )
        window, window_start, window_time = None, start, time.perf_counter()
        for step in range(start, config.num_train_steps):
            local = next(batches)
            images, labels = parallel.shard_batch((local.images, local.labels), mesh)
            state, metrics = step_fn(state, images, labels, dropout_key)
            window = metrics if window is None else jax.tree.map(lambda a, b: a + b, window, metrics)
            done = step + 1
            bar.update(1)
            save_now = done % config.checkpoint_every == 0 or done == config.num_train_steps
            # A window of training metrics also closes at every checkpoint, so a run
            # resumed from one logs the same windows as a run that never stopped.
            if done % config.log_every == 0 or save_now:
                loss, correct, count, bad = (float(x) for x in jax.device_get(window))
                if bad:  # before anything is saved: the weights of this window are garbage
                    raise ValueError(
                        f"{config.label_key} values must be class ids in [0, {num_classes}), but {int(bad)} of the "
                        f"training examples of steps {window_start + 1} to {done} are not"
                    )
                elapsed = time.perf_counter() - window_time
                log.write(done, {
                    "train_loss": loss / count,
                    "train_accuracy": correct / count,
                    "learning_rate": float(schedule(step)),
                    "examples_per_second": (done - window_start) * config.global_batch_size / max(elapsed, 1e-9),
                })
                bar.set_postfix(loss=f"{loss / count:.3f}", acc=f"{correct / count:.3f}")
                window, window_start, window_time = None, done, time.perf_counter()
            # Evaluate before saving: a run that dies during the evaluation resumes
            # from the previous checkpoint and evaluates again, instead of from this
            # step's checkpoint with the evaluation line missing.
            if config.eval_every and done % config.eval_every == 0 and done != config.num_train_steps:
                result = evaluate(eval_fn, state.params, eval_source, config, mesh)
                log.write(done, {"eval_loss": result.loss, "eval_accuracy": result.accuracy})
            if save_now:
                checkpoints.save(manager, state)
            if step_callback is not None:
                step_callback(done)
    finally:
        bar.close()
        if batches is not None:
            batches.close()
        manager.wait_until_finished()
        manager.close()

    result = evaluate(eval_fn, state.params, eval_source, config, mesh)
    final_step = int(jax.device_get(state.step))
    if start < final_step or not log.has_record(final_step, "final"):
        log.write(final_step, {
            "eval_loss": result.loss,
            "eval_accuracy": result.accuracy,
            "eval_examples": result.num_examples,
            "final": True,
        })
    return TrainResult(model, state, result, num_classes, resumed_from)


# Settings a run may change when it resumes: where data is read from and how often
# the run logs, saves and evaluates, none of which changes the trained weights.
# ``num_train_steps`` may change too when the schedule is constant (a cosine
# schedule's shape depends on it).
RESUMABLE_CHANGES = frozenset({
    "data_dir", "eval_split", "cache_in_memory", "num_workers", "eval_batch_size", "log_every",
    "checkpoint_every", "keep_checkpoints", "eval_every", "eval_examples",
})


def check_resumable(config: TrainConfig, workdir: str | os.PathLike, step: int) -> None:
    """Raises ``ValueError`` unless ``config`` may continue the run in ``workdir`` from checkpoint ``step``.

    The run's ``config.json`` (if there is one) must agree with ``config`` in
    every field but :data:`RESUMABLE_CHANGES`, and ``num_train_steps`` must not
    be below ``step``.
    """
    workdir = os.fspath(workdir)
    if step > config.num_train_steps:
        raise ValueError(
            f"num_train_steps must be >= {step}, the step of the latest checkpoint in {workdir}, to resume "
            f"that run, got {config.num_train_steps} (use a new workdir to train a shorter run)"
        )
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            stored = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}, the config of the run to resume: {error}") from error
    if not isinstance(stored, dict):
        raise ValueError(f"{path}, the config of the run to resume, must hold a JSON object, got {stored!r:.80}")
    free = RESUMABLE_CHANGES | ({"num_train_steps"} if config.schedule == "constant" else set())
    changed = [
        f"{field.name}: {stored[field.name]!r} -> {getattr(config, field.name)!r}"
        for field in dataclasses.fields(TrainConfig)
        if field.name not in free and field.name in stored and stored[field.name] != getattr(config, field.name)
    ]
    if changed:
        raise ValueError(
            f"config must match the run in {workdir} to resume it from its checkpoint at step {step}, but it "
            f"changes {'; '.join(changed)}. Restore those values or use a new workdir (a resumed run may change "
            f"only {', '.join(sorted(RESUMABLE_CHANGES))}, and num_train_steps with a constant schedule)"
        )


def chance_accuracy(labels: np.ndarray, num_classes: int) -> float:
    """Accuracy of always answering the most frequent class of ``labels`` (at least ``1/K``)."""
    num_classes = check_int(num_classes, "num_classes", 1)
    labels = np.asarray(labels)
    if labels.size and not (np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0
                            and labels.max() < num_classes):
        raise ValueError(f"labels must be class ids in [0, {num_classes}), got {labels.dtype} values "
                         f"from {labels.min()} to {labels.max()}")
    if labels.size == 0:
        return 1.0 / num_classes
    return max(float(np.bincount(labels, minlength=num_classes).max() / labels.size), 1.0 / num_classes)


__all__ = [
    "RESUMABLE_CHANGES",
    "EvalResult",
    "TrainResult",
    "chance_accuracy",
    "check_resumable",
    "evaluate",
    "train_and_evaluate",
]

"""The training loop: data-parallel steps, checkpoints, resume, metrics log, evaluation.

``workdir`` holds ``checkpoints/<step>/`` (orbax), ``metrics.jsonl`` and
``config.json``. Running again with the same ``workdir`` resumes from the
latest checkpoint and continues exactly as an uninterrupted run would: the
batches and dropout masks of a step depend only on the seed and the step.
"""

from __future__ import annotations

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
from saliency_jax.training import checkpoints, input_pipeline
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


def _open_sources(config: TrainConfig, sources: Mapping[str, Any] | None):
    if sources is not None:
        missing = {"train", "eval"} - set(sources)
        if missing:
            raise ValueError(f"sources must have keys 'train' and 'eval', missing {sorted(missing)}")
        return sources["train"], sources["eval"]
    train = input_pipeline.load_source(config.dataset, config.train_split, config.data_dir)
    evaluation = input_pipeline.load_source(config.dataset, config.eval_split, config.data_dir)
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
    loss, correct, count = (float(x) for x in jax.device_get(total))
    return EvalResult(loss / max(count, 1.0), correct / max(count, 1.0), int(count))


@functools.lru_cache(maxsize=4)
def _compiled(config: TrainConfig, num_classes: int, mesh: Mesh):
    """The model and its jitted init, train and eval functions for a config (reused across runs)."""
    model = build_model(config, num_classes)
    tx = make_optimizer(config)
    replicated, batch = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    init = jax.jit(
        functools.partial(create_train_state, model, tx, image_shape=(config.image_size, config.image_size, 3)),
        out_shardings=replicated,
    )
    step_fn = jax.jit(
        functools.partial(train_step, model=model, tx=tx),
        in_shardings=(replicated, batch, batch, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    eval_fn = jax.jit(
        functools.partial(eval_step, model=model),
        in_shardings=(replicated, batch, batch, batch),
        out_shardings=replicated,
    )
    return model, learning_rate_schedule(config), init, step_fn, eval_fn


def _write_json_atomic(path: str, payload: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
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
    """
    workdir = os.path.abspath(os.fspath(workdir))
    mesh = parallel.data_mesh() if mesh is None else mesh
    if config.global_batch_size % mesh.size or config.eval_batch_size % mesh.size:
        raise ValueError(
            f"global_batch_size ({config.global_batch_size}) and eval_batch_size ({config.eval_batch_size}) "
            f"must be multiples of the {mesh.size} devices"
        )
    is_main = jax.process_index() == 0
    if is_main:
        os.makedirs(workdir, exist_ok=True)
        _write_json_atomic(os.path.join(workdir, "config.json"), dataclasses.asdict(config))

    train_source, eval_source = _open_sources(config, sources)
    num_classes = input_pipeline.num_classes_of(train_source, config.label_key)
    model, schedule, init, step_fn, eval_fn = _compiled(config, num_classes, mesh)
    root_key = jax.random.key(config.seed)
    state = init(jax.random.fold_in(root_key, 0))
    dropout_key = jax.random.fold_in(root_key, 1)

    manager = checkpoints.checkpoint_manager(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    resumed_from = checkpoints.latest_step(manager)
    if resumed_from is not None:
        state = checkpoints.restore(manager, state, resumed_from)
    log = MetricsLog(os.path.join(workdir, "metrics.jsonl"), resume_step=resumed_from, enabled=is_main)

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
            if done % config.log_every == 0 or done == config.num_train_steps:
                loss, correct, count = (float(x) for x in jax.device_get(window))
                elapsed = time.perf_counter() - window_time
                log.write(done, {
                    "train_loss": loss / count,
                    "train_accuracy": correct / count,
                    "learning_rate": float(schedule(step)),
                    "examples_per_second": (done - window_start) * config.global_batch_size / max(elapsed, 1e-9),
                })
                bar.set_postfix(loss=f"{loss / count:.3f}", acc=f"{correct / count:.3f}")
                window, window_start, window_time = None, done, time.perf_counter()
            if done % config.checkpoint_every == 0 or done == config.num_train_steps:
                checkpoints.save(manager, state)
            if config.eval_every and done % config.eval_every == 0 and done != config.num_train_steps:
                result = evaluate(eval_fn, state.params, eval_source, config, mesh)
                log.write(done, {"eval_loss": result.loss, "eval_accuracy": result.accuracy})
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


def chance_accuracy(labels: np.ndarray, num_classes: int) -> float:
    """Accuracy of always answering the most frequent class of ``labels`` (at least ``1/K``)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return 1.0 / num_classes
    return max(float(np.bincount(labels, minlength=num_classes).max() / labels.size), 1.0 / num_classes)


__all__ = ["EvalResult", "TrainResult", "chance_accuracy", "evaluate", "train_and_evaluate"]

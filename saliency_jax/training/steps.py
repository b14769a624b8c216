"""Pure pieces of training: the state, the optimiser, one train step, one eval step.

Nothing here reads files or knows about devices: :mod:`.loop` jits these with
shardings. ``params`` is always the model's whole variables dict
(``{"params": ...}``), so ``functools.partial(model.apply, train=False)`` with
``state.params`` is the trained model's ``logits_fn``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from saliency_jax.models import convnet
from saliency_jax.training.config import TrainConfig


class TrainState(NamedTuple):
    """Everything that changes during training (and is checkpointed).

    Attributes:
      step: int32 scalar, optimiser steps taken.
      params: the model's variables dict.
      opt_state: the optax state.
    """

    step: jax.Array
    params: Any
    opt_state: optax.OptState


class StepMetrics(NamedTuple):
    """Sums over the (unmasked) examples of a batch; divide by ``count``.

    Attributes:
      loss: float32 scalar, summed cross-entropy.
      correct: float32 scalar, number of top-1 hits.
      count: float32 scalar, number of examples.
      bad_labels: float32 scalar, number of examples whose label is not a class
        id in ``[0, K)``. Their loss is meaningless (the cross-entropy of a
        missing class): the loop refuses a batch with any. Counted inside the
        jitted step, so every process of a multi-host run sees the same total.
    """

    loss: jax.Array
    correct: jax.Array
    count: jax.Array
    bad_labels: jax.Array


def build_model(config: TrainConfig, num_classes: int) -> convnet.ConvNet:
    """The ConvNet a config asks for, with ``num_classes`` outputs."""
    if config.model == "paper":
        model = convnet.paper_convnet(num_classes, dropout_rate=config.dropout_rate)
    else:
        model = convnet.scaled_convnet(
            num_classes,
            width=config.width,
            mid_convs=config.mid_convs,
            dense_features=config.dense_features,
            dropout_rate=config.dropout_rate,
        )
    overrides = {
        name: getattr(config, name) for name in ("pixel_mean", "pixel_scale") if getattr(config, name) is not None
    }
    return model.clone(**overrides) if overrides else model


def learning_rate_schedule(config: TrainConfig) -> optax.Schedule:
    """Linear warm-up, then cosine decay to zero or a constant rate."""
    if config.schedule == "cosine":
        decay_steps = max(config.num_train_steps, config.warmup_steps + 1)
        return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, config.warmup_steps, decay_steps)
    if config.warmup_steps:
        return optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
    return optax.constant_schedule(config.learning_rate)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """SGD with momentum and L2 weight decay (Krizhevsky et al.'s recipe) or AdamW."""
    schedule = learning_rate_schedule(config)
    if config.optimizer == "sgd":
        return optax.chain(
            optax.add_decayed_weights(config.weight_decay),
            optax.sgd(schedule, momentum=config.momentum),
        )
    return optax.adamw(schedule, weight_decay=config.weight_decay)


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, key: jax.Array, image_shape: tuple[int, int, int]
) -> TrainState:
    """Initialises the weights and the optimiser state.

    Args:
      model: the Flax module.
      tx: the optimiser.
      key: initialisation key.
      image_shape: ``(H, W, C)`` of one input.

    Returns:
      :class:`TrainState` at step 0.
    """
    params = model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = {"params": params["params"]}  # drop sown intermediates
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))


def _metrics(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> StepMetrics:
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    hits = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    bad = ((labels < 0) | (labels >= logits.shape[-1])).astype(jnp.float32)
    return StepMetrics(jnp.sum(losses * weights), jnp.sum(hits * weights), jnp.sum(weights), jnp.sum(bad * weights))


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
) -> tuple[TrainState, StepMetrics]:
    """One optimiser step on the mean cross-entropy of a batch.

    The dropout key is ``fold_in(key, state.step)``: a run's randomness depends
    only on ``key`` and the step, so resuming from a checkpoint is exact.

    Args:
      state: the current state.
      images: uint8 or float32 ``[B, H, W, 3]`` raw pixels.
      labels: int32 ``[B]``.
      key: the run's dropout key (the same every step).
      model: the Flax module (static).
      tx: the optimiser (static).

    Returns:
      The new state and the batch's :class:`StepMetrics` (before the update).
    """
    images = images.astype(jnp.float32)
    dropout_key = jax.random.fold_in(key, state.step)

    def loss_fn(params):
        logits = model.apply(params, images, train=True, rngs={"dropout": dropout_key})
        metrics = _metrics(logits, labels, jnp.ones(labels.shape, jnp.float32))
        return metrics.loss / labels.shape[0], metrics

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, opt_state), metrics


def eval_step(params: Any, images: jax.Array, labels: jax.Array, mask: jax.Array, *, model: nn.Module) -> StepMetrics:
    """Loss and top-1 hits of a batch in inference mode, padding rows (``mask=False``) left out.

    Args:
      params: the variables dict.
      images: uint8 or float32 ``[B, H, W, 3]``.
      labels: int32 ``[B]``.
      mask: bool ``[B]``.
      model: the Flax module (static).

    Returns:
      :class:`StepMetrics` summed over the unmasked rows.
    """
    logits = model.apply(params, images.astype(jnp.float32), train=False)
    return _metrics(logits, labels, mask.astype(jnp.float32))

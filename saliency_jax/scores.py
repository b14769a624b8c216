"""Class scores S_c(I): the unnormalised outputs the paper differentiates (§2, §3)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from saliency_jax import _checks
from saliency_jax.types import LogitsFn, TopK


def select_scores(logits: jax.Array, classes: jax.Array) -> jax.Array:
    """Picks ``logits[b, classes[b]]``.

    Args:
      logits: ``[B, K]``.
      classes: int ``[B]`` or a scalar (the same class for every image), in
        ``[0, K)``. Outside ``jit`` another id raises ``ValueError``; under ``jit``
        its score is NaN (never another class's score).

    Returns:
      ``[B]``.
    """
    if getattr(logits, "ndim", None) != 2:
        raise ValueError(f"logits must have shape [B, K], got {getattr(logits, 'shape', type(logits).__name__)}")
    batch, num_classes = logits.shape
    _checks.check_classes(classes, num_classes, batch)
    classes = jnp.broadcast_to(_checks.class_ids(classes), (batch,))
    valid = (classes >= 0) & (classes < num_classes)
    scores = jnp.take_along_axis(logits, jnp.where(valid, classes, 0)[:, None], axis=1)[:, 0]
    return jnp.where(valid, scores, jnp.nan)


def class_scores(logits_fn: LogitsFn, params: Any, images: jax.Array, classes) -> jax.Array:
    """Unnormalised class scores ``S_c(I)`` of each image for its class.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]`` or a scalar.

    Returns:
      float32 ``[B]``.
    """
    _checks.check_images(images)
    logits = _checks.model_logits(logits_fn, params, images)
    _checks.check_classes(classes, logits.shape[-1], images.shape[0])
    return select_scores(logits, classes)


def top_k(logits_fn: LogitsFn, params: Any, images: jax.Array, *, k: int = 5) -> TopK:
    """The ``k`` highest-scoring classes of each image.

    Args:
      logits_fn: the model.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      k: how many classes, ``1 <= k <= K``.

    Returns:
      :class:`TopK` with ``[B, k]`` arrays, best first.
    """
    _checks.check_images(images)
    return top_k_of_logits(_checks.model_logits(logits_fn, params, images), k=k)


def top_k_of_logits(logits: jax.Array, *, k: int = 5) -> TopK:
    """The ``k`` highest of each row of ``[B, K]`` logits, with their softmax posteriors.

    Ties go to the lower class id.
    """
    if getattr(logits, "ndim", None) != 2:
        raise ValueError(f"logits must have shape [B, K], got {getattr(logits, 'shape', type(logits).__name__)}")
    try:
        k = _checks.check_int(k, "k", 1, logits.shape[-1])
    except ValueError:
        raise ValueError(f"k must be an integer in [1, {logits.shape[-1]}], got {k!r}") from None
    scores, classes = jax.lax.top_k(logits, k)
    probabilities = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), classes, axis=1)
    return TopK(classes, probabilities, scores)

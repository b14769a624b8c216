"""The gradient (paper §3) and gradient x input, in the attribution interface.

``gradient`` is ``w = dS_c/dI`` of :func:`saliency_jax.input_gradients`, computed
``batch_size`` images at a time; ``gradient_x_input`` multiplies it by the image
(Shrikumar et al., 2016), i.e. IG with one step from a zero baseline for a model
that is linear along the path.

Against Captum: ``gradient`` is ``Saliency(model).attribute(x, target, abs=False)``,
signed; Captum's ``Saliency`` returns ``|dS_c/dI|`` by default (``abs=True``), which
is ``jnp.abs`` of this (the paper's map :func:`~saliency_jax.attribution.attribution_map`
takes ``max_c |.|`` either way). ``gradient_x_input`` is ``InputXGradient``.
``rule="guided"`` is ``GuidedBackprop`` and ``rule="deconvnet"`` is ``Deconvolution``
(both keep max-pooling's switches), for a model whose rectifiers are
:func:`saliency_jax.backprop_rules.relu`, as Captum's need ``nn.ReLU`` modules.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from saliency_jax.attribution import _common
from saliency_jax.backprop_rules import check_rule
from saliency_jax.saliency import input_gradients
from saliency_jax.types import LogitsFn


def row_gradients(logits_fn: LogitsFn, params: Any, images: jax.Array, classes: jax.Array, rule: str) -> jax.Array:
    """``dS_{classes[r]}/dI`` of each row ``[R, H, W, C]``: one forward and one backward pass."""
    return input_gradients(logits_fn, params, images, classes, rule=rule).gradients


@_common.nan_for_invalid_requests
def gradient(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    rule: str = "gradient",
) -> jax.Array:
    """The input gradient ``dS_c/dI`` of each image for its class (paper §3).

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]`` on the model's input scale.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      key: unused (the method is deterministic); accepted for the common interface.
      batch_size: images per model call (``None``: all at once).
      rule: the ReLU backward rule, ``"gradient"``, ``"deconvnet"`` or ``"guided"`` (§4).

    Returns:
      float32 ``[B, H, W, C]``, in score units per input unit.
    """
    del key
    images = _common.as_images(images)
    check_rule(rule)
    batch_size = _common.check_batch_size(batch_size)
    if batch_size is None or images.shape[0] <= batch_size:
        return input_gradients(logits_fn, params, images, classes, rule=rule).gradients
    classes = _common.resolve_classes(logits_fn, params, images, classes)
    return _common.sum_over_expansions(
        lambda b, n: row_gradients(logits_fn, params, images[b], classes[b], rule),
        images.shape[0], 1, batch_size,
    )


@_common.nan_for_invalid_requests
def gradient_x_input(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    rule: str = "gradient",
) -> jax.Array:
    """Gradient x input: ``I * dS_c/dI`` (Shrikumar et al., 2016).

    Args:
      logits_fn: the model.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for the top-1 class.
      key: unused; accepted for the common interface.
      batch_size: images per model call.
      rule: the ReLU backward rule.

    Returns:
      float32 ``[B, H, W, C]``, in score units.
    """
    images = _common.as_images(images)
    grads = gradient(logits_fn, params, images, classes, key=key, batch_size=batch_size, rule=rule)
    return jnp.asarray(images * grads, jnp.float32)

"""Integrated Gradients (Sundararajan et al., 2017).

``IG_c(x) = (x - x') * integral_0^1 dS_c/dI (x' + a (x - x')) da`` from a baseline
``x'`` (the black image by default). The integral is the trapezoid rule on
``steps`` equally spaced points of ``a`` in ``[0, 1]`` (weights ``1 / (steps - 1)``,
halved at both ends, summing to 1), so the attributions' sum tends to
``S_c(x) - S_c(x')`` (completeness) as ``steps`` grows, and is exact for any
``steps`` on a model linear along the path.

Against Captum's ``IntegratedGradients``: the same attributions (multiplied by
``x - x'``, one per input element) as its ``method="riemann_trapezoid"`` with
``n_steps=steps`` times ``steps / (steps - 1)``. Captum's trapezoid puts its points
at the same ``a`` but weighs them ``1 / steps`` (halved at both ends), weights that
sum to ``(steps - 1) / steps``, so its sums fall short of completeness by that
factor even on a linear model; the weights here are the trapezoid rule's. Captum's
default rule is Gauss-Legendre with 50 points; PAIR saliency's IG averages the
gradients at ``linspace(0, 1, steps)`` with equal weights ``1 / steps``.

The ``B * steps`` interpolants run ``batch_size`` at a time (see
:mod:`saliency_jax.attribution._common`): memory is bounded by ``batch_size``,
not by ``steps``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.attribution import _common
from saliency_jax.attribution.gradients import row_gradients
from saliency_jax.backprop_rules import check_rule
from saliency_jax.types import LogitsFn


def trapezoid_weights(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)``, each ``[steps]``: the trapezoid rule on ``[0, 1]``; weights sum to 1."""
    steps = _checks.check_int(steps, "steps", 2, _checks.MAX_INTEGRATION_STEPS)
    alphas = np.linspace(0.0, 1.0, steps)
    weights = np.full(steps, 1.0 / (steps - 1))
    weights[[0, -1]] /= 2
    return alphas.astype(np.float32), weights.astype(np.float32)


@_common.nan_for_invalid_requests
def integrated_gradients(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    baseline: jax.Array | float | None = None,
    steps: int = 32,
    rule: str = "gradient",
) -> jax.Array:
    """Integrated Gradients from a baseline, by the trapezoid rule.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]`` on the model's input scale.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      key: unused; accepted for the common interface.
      batch_size: interpolants per model call, bounding peak memory (``None``: all
        ``B * steps`` at once).
      baseline: ``x'``: a number, ``[H, W, C]`` or ``[B, H, W, C]``; ``None`` is the
        black image (zeros; 0 is black on the embedded models' 0-255 scale).
      steps: points of the path, ``>= 2``, ends included.
      rule: the ReLU backward rule (§4); ``"gradient"`` for IG proper (``"guided"``
        integrates guided back-propagation along the straight path: not PAIR's
        Guided IG, whose path adapts to the gradient).

    Returns:
      float32 ``[B, H, W, C]``, in score units; summed, about ``S_c(x) - S_c(x')``.
    """
    del key
    images = _common.as_images(images)
    check_rule(rule)
    alphas, weights = trapezoid_weights(steps)
    batch_size = _common.check_batch_size(batch_size)
    baseline = _common.broadcast_baseline(baseline, images)
    classes = _common.resolve_classes(logits_fn, params, images, classes)
    alphas, weights = jnp.asarray(alphas), jnp.asarray(weights)
    delta = images - baseline

    def row(b, n):
        path_point = baseline[b] + alphas[n][:, None, None, None] * delta[b]
        grads = row_gradients(logits_fn, params, path_point, classes[b], rule)
        return weights[n][:, None, None, None] * grads

    mean_gradients = _common.sum_over_expansions(row, images.shape[0], alphas.shape[0], batch_size)
    return delta * mean_gradients

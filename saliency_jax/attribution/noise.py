"""SmoothGrad, SquareGrad and VarGrad: any method averaged over noisy copies of the image.

SmoothGrad (Smilkov et al., 2017) averages a method's attributions over copies
``x + e`` with Gaussian noise ``e`` of standard deviation ``noise_scale * (max(x) -
min(x))`` (each image's value range); SquareGrad averages their squares and
VarGrad (Adebayo et al., 2018) takes their variance (``E[a^2] - E[a]^2``), as
Captum's ``NoiseTunnel`` with ``nt_type`` ``"smoothgrad"``, ``"smoothgrad_sq"`` and
``"vargrad"``, and PAIR saliency's ``SmoothGrad`` (``magnitude=True`` squares).
The noise is relative, as in Smilkov et al. and PAIR (``stdev_spread``, default
0.15): Captum's ``stdevs`` is an absolute standard deviation (default 1.0), so
Captum's equivalent of ``noise_scale`` is ``stdevs = noise_scale * (x.max() -
x.min())`` for each image. Captum's gradient (``Saliency``) is ``abs=True`` by
default: pass ``method=`` a function returning ``jnp.abs`` of the gradient to
match that. The wrapped method keeps its own settings (IG's ``baseline`` is not
noised, as in Captum).

Written once for every method of the package: ``method`` (default: the gradient)
is called on chunks of ``batch_size`` noisy copies, with its own settings passed
through, and the moments are summed in a ``lax.scan``, so memory does not grow
with ``num_samples``.

The noise of sample ``n`` is ``normal(fold_in(split(key)[0], n), [H, W, C])`` scaled by
each image's range: the same draw for every image of a batch and every class,
so an image's result does not depend on the batch it is in. The class explained
is fixed from the clean image (``classes=None``: its top-1). A random ``method``
(RISE, or a noise wrapper inside this one) gets one key per call, that is per
chunk of ``batch_size`` copies, so the copies of a chunk share its randomness
(RISE's masks) and the result depends on ``batch_size``; ``batch_size=1`` gives
every copy a key of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from saliency_jax import _checks
from saliency_jax.attribution import _common
from saliency_jax.attribution.gradients import gradient
from saliency_jax.types import LogitsFn


def noise_std(images: jax.Array, noise_scale: float) -> jax.Array:
    """``[B, 1, 1, 1]``: ``noise_scale`` times each image's value range ``max - min``."""
    span = jnp.max(images, axis=(1, 2, 3), keepdims=True) - jnp.min(images, axis=(1, 2, 3), keepdims=True)
    return noise_scale * span


def _noise_moments(
    logits_fn, params, images, classes, key, batch_size, method, num_samples, noise_scale, reduction, settings, name
):
    """``(mean, mean of squares)`` of ``method``'s output over noisy copies, ``[B, ...]`` each."""
    if not callable(method):
        raise ValueError(f"method must be an attribution method (a function), got {method!r}")
    key = _common.check_key(key, name)
    images = _common.as_images(images)
    # One sample has no variance: VarGrad would be a zero map whatever the model.
    num_samples = _checks.check_int(num_samples, "num_samples", 2 if name == "vargrad" else 1, _checks.MAX_COUNT)
    noise_scale = _common.check_float32(noise_scale, "noise_scale", low=0.0)
    batch_size = _common.check_batch_size(batch_size)
    classes = _common.resolve_classes(logits_fn, params, images, classes)
    sigma = noise_std(images, noise_scale)
    noise_key, method_key = jax.random.split(key)

    def row(b, n):
        noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(noise_key, i), images.shape[1:]))(n)
        noisy = images[b] + sigma[b] * noise
        out = method(
            logits_fn, params, noisy, classes[b],
            key=jax.random.fold_in(method_key, b[0] * num_samples + n[0]), batch_size=batch_size, **settings,
        )
        out = out if reduction is None else _common.attribution_map(out, reduction=reduction)
        return out, jnp.square(out)

    total, total_sq = _common.sum_over_expansions(row, images.shape[0], num_samples, batch_size)
    return total / num_samples, total_sq / num_samples


@_common.nan_for_invalid_requests
def smoothgrad(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    method: Callable = gradient,
    num_samples: int = 16,
    noise_scale: float = 0.15,
    reduction: str | None = None,
    **settings,
) -> jax.Array:
    """SmoothGrad: ``method`` averaged over ``num_samples`` noisy copies of each image.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for the top-1 class of the clean image.
      key: PRNG key for the noise (required).
      batch_size: noisy copies per call of ``method`` (and ``method``'s own batch size).
      method: any attribution method, e.g. :func:`integrated_gradients`.
      num_samples: noisy copies per image, ``>= 1``.
      noise_scale: the noise's standard deviation as a fraction of each image's
        value range, ``>= 0`` (Smilkov et al.: 10-20%).
      reduction: ``None`` to average the attributions themselves (Smilkov et al.);
        or a reduction of :func:`attribution_map` (e.g. ``"max_abs"``) applied to each
        copy's attributions first, averaging ``[B, H, W]`` maps (the paper's map of
        each noisy copy, averaged).
      **settings: passed to ``method`` (e.g. ``rule=``, ``steps=``, ``layer=``).

    Returns:
      ``method``'s output shape: ``[B, H, W, C]``, or ``[B, h, w]`` for a layer method
      or with a ``reduction``.
    """
    mean, _ = _noise_moments(
        logits_fn, params, images, classes, key, batch_size, method, num_samples, noise_scale, reduction, settings,
        "smoothgrad",
    )
    return mean


@_common.nan_for_invalid_requests
def squaregrad(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    method: Callable = gradient,
    num_samples: int = 16,
    noise_scale: float = 0.15,
    **settings,
) -> jax.Array:
    """SquareGrad: the mean of ``method``'s squared output over noisy copies.

    Arguments as :func:`smoothgrad`. Returns ``method``'s output shape, non-negative.
    """
    _, mean_sq = _noise_moments(
        logits_fn, params, images, classes, key, batch_size, method, num_samples, noise_scale, None, settings,
        "squaregrad",
    )
    return mean_sq


@_common.nan_for_invalid_requests
def vargrad(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    method: Callable = gradient,
    num_samples: int = 16,
    noise_scale: float = 0.15,
    **settings,
) -> jax.Array:
    """VarGrad: the variance of ``method``'s output over noisy copies (``E[a^2] - E[a]^2``).

    Arguments as :func:`smoothgrad`, but ``num_samples >= 2``. Returns ``method``'s
    output shape, non-negative.
    """
    mean, mean_sq = _noise_moments(
        logits_fn, params, images, classes, key, batch_size, method, num_samples, noise_scale, None, settings,
        "vargrad",
    )
    return jnp.maximum(mean_sq - jnp.square(mean), 0.0)

"""GradientSHAP (expected gradients): Integrated Gradients in expectation over baselines.

Lundberg & Lee (2017) and Erion et al. (2021, "expected gradients"); Captum's
``GradientShap``. Sample ``n`` of an image ``x`` draws a baseline ``x'_n`` uniformly
from a set ``baselines`` (``[M, H, W, C]``), a point ``a_n`` uniformly in ``[0, 1)``
on the straight path, and, with ``noise_scale > 0``, Gaussian noise ``e_n``
(SmoothGrad's: standard deviation ``noise_scale`` times the image's value range)::

    x_n = x + e_n
    GS_c(x) = 1/N sum_n  dS_c/dI (x'_n + a_n (x_n - x'_n)) * (x_n - x'_n)

Without noise its expectation is Integrated Gradients averaged over the
baselines, so the attributions sum, as ``num_samples`` grows, to
``S_c(x) - mean_m S_c(x'_m)``; with one baseline it is IG with the path's points
drawn at random instead of on a grid.

Against Captum: ``GradientShap(model).attribute(x, baselines, n_samples=N,
stdevs=s, target=c)`` computes the same estimator (its noise added to the input
before the path is drawn, as here) with ``stdevs`` an absolute standard deviation:
``noise_scale = s / (x.max() - x.min())`` for each image. Its random numbers are
torch's, so the two agree in distribution, not draw for draw.

The draws of sample ``n`` come from ``fold_in(key, n)`` alone (split into the
baseline's index, the point on the path and the noise): the same for every image
of a batch and every class, so an image's result does not depend on the batch it
is in. The ``B * num_samples`` path points run ``batch_size`` at a time (see
:mod:`saliency_jax.attribution._common`): memory does not grow with the samples.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.attribution import _common
from saliency_jax.attribution.gradients import row_gradients
from saliency_jax.attribution.noise import noise_std
from saliency_jax.backprop_rules import check_rule
from saliency_jax.types import LogitsFn


def baseline_set(baselines, images: jax.Array) -> jax.Array:
    """``baselines`` as float32 ``[M, H, W, C]``: a number, ``[H, W, C]`` or ``[M, H, W, C]`` (``None``: black)."""
    if baselines is None:
        return jnp.zeros((1,) + images.shape[1:], jnp.float32)
    shape = tuple(np.shape(baselines))
    if len(shape) == 3:
        shape = (1,) + shape
    if shape != () and (len(shape) != 4 or shape[1:] != images.shape[1:] or shape[0] < 1):
        raise ValueError(
            f"baselines must be a number, [H, W, C] = {list(images.shape[1:])} or a set [M, H, W, C] with "
            f"M >= 1, got shape {tuple(np.shape(baselines))}"
        )
    # The shared checks of a baseline (real numbers, finite in float32), on the set's own shape.
    like = jax.ShapeDtypeStruct(shape if shape else (1,) + images.shape[1:], jnp.float32)
    return _common.broadcast_baseline(baselines, like, "baselines")


def sample_draws(key: jax.Array, samples: jax.Array, num_baselines: int, image_shape: tuple[int, ...],
                 noise: bool) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """The draws of samples ``samples`` (int ``[R]``): baseline indices ``[R]``, path points ``[R]``, noise.

    The noise is standard normal ``[R, H, W, C]`` (``None`` when ``noise`` is false),
    to be scaled by each image's standard deviation.
    """

    def one(n):
        index_key, point_key, noise_key = jax.random.split(jax.random.fold_in(key, n), 3)
        index = jax.random.randint(index_key, (), 0, num_baselines)
        point = jax.random.uniform(point_key, ())
        eps = jax.random.normal(noise_key, image_shape) if noise else None
        return index, point, eps

    return jax.vmap(one)(samples)


@_common.nan_for_invalid_requests
def gradient_shap(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    baselines: jax.Array | float | None = None,
    num_samples: int = 16,
    noise_scale: float = 0.0,
    rule: str = "gradient",
) -> jax.Array:
    """GradientSHAP: gradients at random points between random baselines and the image, times the difference.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]`` on the model's input scale.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class (of the clean image).
      key: PRNG key for the draws (required).
      batch_size: path points per model call, bounding peak memory (``None``: all
        ``B * num_samples`` at once).
      baselines: the set the baselines are drawn from, shared by every image: a
        number, ``[H, W, C]`` (one baseline) or ``[M, H, W, C]`` (``M`` of them, drawn
        uniformly; not one per image, as Captum's ``baselines``). ``None`` is the black
        image (zeros; 0 is black on the embedded models' 0-255 scale).
      num_samples: draws per image, ``>= 1`` (Captum's ``n_samples``, default 5 there).
      noise_scale: the noise's standard deviation as a fraction of each image's value
        range, ``>= 0``; 0 (the default, as Captum's ``stdevs=0``) adds none.
      rule: the ReLU backward rule (§4); ``"gradient"`` for GradientSHAP proper.

    Returns:
      float32 ``[B, H, W, C]``, in score units; summed, about ``S_c(x) - mean_m S_c(x'_m)``
      (without noise, as ``num_samples`` grows).
    """
    key = _common.check_key(key, "gradient_shap")
    images = _common.as_images(images)
    check_rule(rule)
    num_samples = _checks.check_int(num_samples, "num_samples", 1, _checks.MAX_COUNT)
    noise_scale = _common.check_float32(noise_scale, "noise_scale", low=0.0)
    batch_size = _common.check_batch_size(batch_size)
    baselines = baseline_set(baselines, images)
    classes = _common.resolve_classes(logits_fn, params, images, classes)
    sigma = noise_std(images, noise_scale)
    noisy = noise_scale > 0

    def row(b, n):
        index, point, eps = sample_draws(key, n, baselines.shape[0], images.shape[1:], noisy)
        start = baselines[index]
        end = images[b] + sigma[b] * eps if noisy else images[b]
        delta = end - start
        grads = row_gradients(logits_fn, params, start + point[:, None, None, None] * delta, classes[b], rule)
        return grads * delta

    total = _common.sum_over_expansions(row, images.shape[0], num_samples, batch_size)
    return total / num_samples

"""XRAI (Kapishnikov et al., 2019): attributions summed over image regions, PAIR saliency's flagship method.

:func:`xrai` computes Integrated Gradients from two baselines, each image's darkest
and brightest value as flat images (PAIR's defaults), averages them, keeps each
pixel's largest channel, and ranks Felzenszwalb regions by the attribution they
add (:func:`saliency_jax.localisation.regions.rank_regions`). Any other
attribution can be given instead (``attributions=``, PAIR's ``base_attribution``):
GradientSHAP's, SmoothGrad's, a Grad-CAM map resized to the image.

Not a jit-able method: the segmentation and the greedy ranking run in numpy on the
CPU, after the attributions (which are jitted). Against PAIR's ``XRAI.GetMask`` with
its defaults (``algorithm="full"``): the same regions and ranking, but IG's 32
trapezoid steps here (PAIR: 100 points of ``linspace(0, 1, 100)`` with equal
weights); pass ``steps=100`` to come closer.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.attribution import integrated_gradients
from saliency_jax.backprop_rules import check_rule
from saliency_jax.localisation.regions import felzenszwalb_regions, rank_regions
from saliency_jax.types import LogitsFn


_STATIC = ("steps", "batch_size", "rule")


def _ig_body(logits_fn, params, images, classes, baseline, *, steps, batch_size, rule):
    return integrated_gradients(logits_fn, params, images, classes, baseline=baseline, steps=steps,
                                batch_size=batch_size, rule=rule)


_ig_shared = jax.jit(_ig_body, static_argnums=(0,), static_argnames=_STATIC)


def _ig_program(logits_fn):
    """IG jitted for ``logits_fn``: compiled once per model, or per call for a model that cannot be hashed."""
    try:
        hash(logits_fn)
    except TypeError:
        return jax.jit(functools.partial(_ig_body, logits_fn), static_argnames=_STATIC)
    return functools.partial(_ig_shared, logits_fn)


def _ig_from_extremes(logits_fn, params, images, classes, *, steps, batch_size, rule):
    """IG from each image's darkest and from its brightest value (flat images), averaged, ``[B, H, W, C]``.

    One compiled program serves both baselines (they are arguments, not constants).
    """
    ig = _ig_program(logits_fn)
    total = 0.0
    for extreme in (jnp.min, jnp.max):
        baseline = jnp.broadcast_to(extreme(images, axis=(1, 2, 3), keepdims=True), images.shape)
        total = total + ig(params, images, classes, baseline, steps=steps, batch_size=batch_size, rule=rule)
    return total / 2


def xrai(
    logits_fn: LogitsFn,
    params: Any,
    images,
    classes=None,
    *,
    attributions=None,
    steps: int = 32,
    batch_size: int | None = 64,
    rule: str = "gradient",
    regions=None,
    min_new_pixels: int = 50,
    area_fraction: float = 1.0,
) -> np.ndarray:
    """XRAI maps of a batch: each pixel the attribution density of the region that covered it.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: ``[B, H, W, C]`` on the model's input scale.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class (unused when
        ``attributions`` are given).
      attributions: the attributions to rank regions by, ``[B, H, W, C]`` (reduced to each
        pixel's largest channel, as PAIR) or ``[B, H, W]``; ``None`` computes PAIR's
        Integrated Gradients from each image's darkest and brightest value.
      steps: IG's steps (when ``attributions`` is ``None``), ``>= 2``.
      batch_size: IG's path points per model call.
      rule: IG's ReLU backward rule (§4).
      regions: bool ``[M, H, W]`` candidate regions for every image, or a sequence of ``B``
        of them (one per image); ``None`` segments each image with
        :func:`~saliency_jax.localisation.regions.felzenszwalb_regions`.
      min_new_pixels: regions adding fewer pixels are dropped (PAIR: 50).
      area_fraction: the fraction of the image to rank before the rest is pooled, in ``(0, 1]``.

    Returns:
      float32 numpy ``[B, H, W]``. Each map sums to its attribution map's sum.
    """
    _checks.check_images(images)
    images = jnp.asarray(images, jnp.float32)
    if attributions is None:
        steps = _checks.check_int(steps, "steps", 2, _checks.MAX_INTEGRATION_STEPS)
        batch_size = None if batch_size is None else _checks.check_int(batch_size, "batch_size", 1)
        if classes is None:
            classes = jnp.argmax(_checks.model_logits(logits_fn, params, images), axis=-1)
        else:
            logits = jax.eval_shape(logits_fn, params, images[:1])
            _checks.check_logits(logits, 1)
            _checks.check_classes(classes, logits.shape[1], images.shape[0])
            classes = jnp.broadcast_to(_checks.class_ids(classes), images.shape[:1])
        check_rule(rule)
        attributions = _ig_from_extremes(logits_fn, params, images, classes, steps=steps, batch_size=batch_size,
                                         rule=rule)
    maps = _attribution_maps(attributions, images.shape)
    if not np.isfinite(maps).all():
        raise ValueError("attributions contain NaN or infinite values (an invalid class, or a non-finite image?)")
    per_image = _regions_per_image(regions, images.shape[0])
    pictures = np.asarray(images)
    out = []
    for b, attribution in enumerate(maps):
        found = felzenszwalb_regions(pictures[b]) if per_image[b] is None else per_image[b]
        out.append(rank_regions(attribution, found, min_new_pixels=min_new_pixels,
                                area_fraction=area_fraction).saliency)
    return np.stack(out).astype(np.float32)


def _attribution_maps(attributions, image_shape) -> np.ndarray:
    """``[B, H, W]`` float64: a pixel's largest channel of ``[B, H, W, C]``, or ``[B, H, W]`` as given.

    Refuses what is not real numbers (a complex part would be dropped) and values past float32's
    range, which the float32 map would turn into infinities.
    """
    try:
        array = np.asarray(attributions)
    except (ValueError, TypeError):
        raise ValueError("attributions must be an array of real numbers, got a ragged sequence") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"attributions must be real numbers (integers or floats), got dtype {array.dtype}")
    finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    if finite.size and np.abs(finite.astype(np.float64)).max() > np.finfo(np.float32).max:
        raise ValueError(f"attributions must lie within float32's range (the map is float32), got values up to "
                         f"{np.abs(finite.astype(np.float64)).max():g} in magnitude")
    if array.ndim == 4 and array.shape == tuple(image_shape):
        return np.asarray(array, np.float64).max(axis=-1)
    if array.ndim == 3 and array.shape == tuple(image_shape[:3]):
        return np.asarray(array, np.float64)
    raise ValueError(f"attributions must have shape {list(image_shape)} or {list(image_shape[:3])} (the images'), "
                     f"got shape {array.shape}")


def _regions_per_image(regions, batch: int) -> list:
    if regions is None:
        return [None] * batch
    if isinstance(regions, (list, tuple)):
        if len(regions) != batch:
            raise ValueError(f"regions must be one [M, H, W] array for all images or a sequence of {batch} "
                             f"(one per image), got {len(regions)}")
        return list(regions)
    return [regions] * batch


__all__ = ["xrai"]

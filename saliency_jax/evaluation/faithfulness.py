"""Faithfulness of attribution maps: the deletion and insertion curves (Petsiuk et al., 2018).

A map is faithful if the pixels it ranks first are the ones the model needs.
Deletion replaces the image's pixels by a baseline in the map's order, most
salient first, and records the class's softmax probability after each of
``steps`` equal shares of the pixels; a faithful map makes it fall fast (low area
under the curve). Insertion starts from the baseline and puts the image's pixels
back in the same order; a faithful map makes it rise fast (high area). The
baseline is the image blurred (Petsiuk et al.'s insertion canvas), its mean colour,
or any image.

The ``B * (steps + 1)`` perturbed images run ``batch_size`` at a time, as the
attribution methods' expansions do, and everything is jit-friendly with
``logits_fn`` and the settings bound by ``functools.partial``. For the pointing
game and IoU see :mod:`saliency_jax.evaluation.metrics`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.attribution import _common
from saliency_jax.attribution.blur_ig import gaussian_blur
from saliency_jax.types import LogitsFn

BASELINES = ("blur", "mean")


class Curve(NamedTuple):
    """A deletion or insertion curve per image.

    Attributes:
      fractions: float32 ``[steps + 1]``, the share of pixels removed (deletion) or
        inserted (insertion) at each point, from 0 to 1.
      probabilities: float32 ``[B, steps + 1]``, the class's softmax probability there.
      auc: float32 ``[B]``, the area under the curve over ``fractions`` (trapezoid rule).
    """

    fractions: jax.Array
    probabilities: jax.Array
    auc: jax.Array


def curve_baseline(images: jax.Array, baseline: Any = "blur", *, blur_sigma: float = 5.0) -> jax.Array:
    """The image the pixels are replaced by, ``[B, H, W, C]``.

    Args:
      images: float32 ``[B, H, W, C]``.
      baseline: ``"blur"`` (a Gaussian blur of ``blur_sigma`` pixels, zero-padded as
        Petsiuk et al.'s), ``"mean"`` (each image's mean colour), a number, or an
        array ``[H, W, C]`` / ``[B, H, W, C]``.
      blur_sigma: the blur's standard deviation in pixels, ``> 0``.
    """
    if isinstance(baseline, str):
        if baseline == "blur":
            sigma = _checks.check_number(blur_sigma, "blur_sigma", low=0.0, open_low=True)
            return gaussian_blur(images, sigma, mode="constant")
        if baseline == "mean":
            return jnp.broadcast_to(jnp.mean(images, axis=(1, 2), keepdims=True), images.shape)
        raise ValueError(f"baseline must be one of {BASELINES}, a number or an image, got {baseline!r}")
    return _common.broadcast_baseline(baseline, images)


def pixel_ranks(saliency: jax.Array) -> jax.Array:
    """int32 ``[B, H * W]``: each pixel's rank in its map, 0 for the most salient (ties: row-major order).

    A numpy map is ranked on the host in its own precision, so a float64 map keeps
    orders that float32 cannot resolve (values closer than its precision, or beyond
    its range); a JAX array, traced or not, is ranked on the device.
    """
    if _checks.is_concrete(saliency) and not isinstance(saliency, jax.Array):
        flat = np.asarray(saliency).reshape(np.shape(saliency)[0], -1)
        if not np.issubdtype(flat.dtype, np.floating):
            flat = flat.astype(np.float64)  # negating unsigned integers or booleans would not reverse them
        order = np.argsort(-flat, axis=1, kind="stable")
        ranks = np.empty(flat.shape, np.int32)
        np.put_along_axis(ranks, order, np.arange(flat.shape[1], dtype=np.int32)[None, :], axis=1)
        return jnp.asarray(ranks)
    flat = saliency.reshape(saliency.shape[0], -1)
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        flat = flat.astype(jnp.float32)  # negating unsigned integers or booleans would not reverse them
    order = jnp.argsort(-flat, axis=1, stable=True)
    rows = jnp.arange(flat.shape[0])[:, None]
    positions = jnp.broadcast_to(jnp.arange(flat.shape[1], dtype=jnp.int32)[None, :], flat.shape)
    return jnp.zeros(flat.shape, jnp.int32).at[rows, order].set(positions)


def _curves(logits_fn, params, images, saliency, classes, steps, baseline, blur_sigma, batch_size,
            modes: tuple[bool, ...]) -> tuple[Curve, ...]:
    """One curve per mode (``False``: deletion, ``True``: insertion), all from one loop over the rows."""
    images = _common.as_images(images)
    batch, height, width, _ = images.shape
    if not hasattr(saliency, "dtype"):
        try:
            saliency = np.asarray(saliency)
        except (TypeError, ValueError):
            raise ValueError(
                f"saliency must be an array of real numbers [B, H, W], got {type(saliency).__name__}"
            ) from None
    dtype = np.dtype(saliency.dtype)
    if not (dtype == bool or jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise ValueError(f"saliency must hold real numbers, got dtype {dtype}")
    if tuple(saliency.shape) != (batch, height, width):
        raise ValueError(
            f"saliency must be maps of shape [B, H, W] = {(batch, height, width)} (reduce attributions with "
            f"attribution_map, resizing layer maps with size=), got shape {tuple(saliency.shape)}"
        )
    concrete = _checks.is_concrete(saliency)
    if concrete and not bool(np.isfinite(np.asarray(saliency, np.float64)).all()):
        raise ValueError("saliency contains NaN or infinite values, which have no rank")
    # At most one step per pixel: more would repeat points (and a huge count would never end).
    steps = _checks.check_int(steps, "steps", 1, height * width)
    batch_size = _common.check_batch_size(batch_size)
    canvas = curve_baseline(images, baseline, blur_sigma=blur_sigma)
    classes = _common.resolve_classes(logits_fn, params, images, classes)
    # A numpy map is ranked in its own precision; a JAX array (traced or not) in float32.
    ranks = pixel_ranks(saliency if isinstance(saliency, np.ndarray) else jnp.asarray(saliency, jnp.float32))
    # Under jit the map's values are unknown while tracing: a map with NaN or
    # infinite values gets a NaN curve, never a plausible one.
    finite = None if concrete else jnp.all(jnp.isfinite(saliency.reshape(batch, -1)), axis=1)
    # Pixels changed after step k: the first round(k * H * W / steps) of the ranking.
    counts = jnp.asarray(np.round(np.arange(steps + 1) * (height * width) / steps).astype(np.int32))

    points = steps + 1
    inserting = jnp.asarray(np.array(modes))

    def row(b, n):
        # Expansion n is point n % points of mode n // points: each image's curves one after another.
        k = n % points
        changed = (ranks[b] < counts[k][:, None]).reshape(-1, height, width, 1)
        if len(modes) == 1:
            replaced = ~changed if modes[0] else changed
        else:
            replaced = changed ^ inserting[n // points].reshape(-1, 1, 1, 1)
        # Deletion shows the baseline where the pixels were changed, insertion where they were not.
        perturbed = jnp.where(replaced, canvas[b], images[b])
        probabilities = jax.nn.softmax(_checks.model_logits(logits_fn, params, perturbed), axis=-1)
        chosen = jnp.take_along_axis(probabilities, classes[b][:, None], axis=1)
        return chosen * jax.nn.one_hot(n, points * len(modes), dtype=chosen.dtype)

    every = _common.sum_over_expansions(row, batch, points * len(modes), batch_size)
    fractions = jnp.asarray(np.linspace(0.0, 1.0, points), jnp.float32)
    curves = []
    for m in range(len(modes)):
        curve = every[:, m * points : (m + 1) * points]
        if finite is not None:
            curve = jnp.where(finite[:, None], curve, jnp.nan)
        auc = (jnp.sum(curve, axis=1) - 0.5 * (curve[:, 0] + curve[:, -1])) / steps
        curves.append(Curve(fractions, curve, auc))
    return tuple(curves)


def deletion_curve(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    saliency: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    steps: int = 20,
    baseline: Any = "blur",
    blur_sigma: float = 5.0,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
) -> Curve:
    """The class probability as the most salient pixels are removed first (lower AUC: more faithful).

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      saliency: ``[B, H, W]``, the maps to check (any scale; only their order matters).
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      steps: equal shares of the pixels, ``>= 1`` and at most ``H * W``; the curve
        has ``steps + 1`` points.
      baseline: what removed pixels become, see :func:`curve_baseline`.
      blur_sigma: the blur of ``baseline="blur"``, in pixels.
      batch_size: perturbed images per model call.

    Returns:
      :class:`Curve`; ``probabilities[:, 0]`` is the clean image's, ``[:, -1]`` the baseline's.
    """
    return _curves(logits_fn, params, images, saliency, classes, steps, baseline, blur_sigma, batch_size, (False,))[0]


def insertion_curve(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    saliency: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    steps: int = 20,
    baseline: Any = "blur",
    blur_sigma: float = 5.0,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
) -> Curve:
    """The class probability as the most salient pixels are put back first (higher AUC: more faithful).

    Arguments as :func:`deletion_curve`.

    Returns:
      :class:`Curve`; ``probabilities[:, 0]`` is the baseline's, ``[:, -1]`` the clean image's.
    """
    return _curves(logits_fn, params, images, saliency, classes, steps, baseline, blur_sigma, batch_size, (True,))[0]


def deletion_and_insertion_curves(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    saliency: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    steps: int = 20,
    baseline: Any = "blur",
    blur_sigma: float = 5.0,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
) -> tuple[Curve, Curve]:
    """:func:`deletion_curve` and :func:`insertion_curve` together, in one loop over the perturbed images.

    Arguments as :func:`deletion_curve`. The ``2 * B * (steps + 1)`` perturbed images
    run ``batch_size`` at a time, each image's deletion points then its insertion
    points, so one model call serves both curves: under ``jit`` the model is traced
    and compiled once, not once per curve. With ``batch_size = steps + 1`` every call
    holds one curve of one image, as the separate functions' calls do.

    Returns:
      ``(deletion, insertion)``, equal to the two functions' results.
    """
    return _curves(logits_fn, params, images, saliency, classes, steps, baseline, blur_sigma, batch_size,
                   (False, True))

"""Occlusion (Zeiler & Fergus, 2014): the score lost when a patch is covered.

A ``patch`` square (or ``(ph, pw)`` rectangle) slides over the image with
``stride``, from the top-left corner, until it has reached the bottom and right
edges: Captum's ``Occlusion`` placements, ``ceil((H - ph) / sh) + 1`` rows of
them (and as many columns), the last one cut at the edge where the stride does
not tile the image, so every pixel is covered. Each placement replaces the
patch's pixels, in every channel, by ``baseline``. A pixel's attribution is the
mean, over the placements covering it, of the class score's drop
``S_c(x) - S_c(x with the patch covered)`` (Captum's sign and averaging). The
attribution is the same in every channel (Captum's ``sliding_window_shapes=(C,
ph, pw)``). A stride wider than the patch, which Captum refuses, is allowed:
the pixels between placements are covered by none and get 0.

The ``B * placements`` occluded copies run ``batch_size`` at a time.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.attribution import _common
from saliency_jax.scores import select_scores
from saliency_jax.types import LogitsFn


def occlusion_positions(image_shape: tuple[int, int], patch, stride) -> np.ndarray:
    """int32 ``[P, 2]``: the top-left ``(y, x)`` of every placement of the patch.

    The starts along an axis of ``n`` pixels are ``0, s, 2 s, ...`` below ``n - p + s``
    (and below ``n``): Captum's ``ceil((n - p) / s) + 1`` of them, the last
    placement cut at the edge when ``s`` does not divide ``n - p``.

    Raises:
      ValueError: if the patch is larger than the image or a size is not a positive integer.
    """
    (ph, pw), (sh, sw) = _common.check_pair(patch, "patch"), _common.check_pair(stride, "stride")
    height, width = image_shape
    if ph > height or pw > width:
        raise ValueError(f"patch must fit in the image ({height}x{width}), got {ph}x{pw}")
    ys = np.arange(0, height - ph + sh, sh)
    xs = np.arange(0, width - pw + sw, sw)
    ys, xs = ys[ys < height], xs[xs < width]  # a stride wider than the patch: no empty placement
    return np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2).astype(np.int32)


@_common.nan_for_invalid_requests
def occlusion(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    patch: int | tuple[int, int] = 16,
    stride: int | tuple[int, int] = 8,
    baseline: float = 0.0,
) -> jax.Array:
    """The mean class-score drop of the occluding patches that cover each pixel.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      key: unused; accepted for the common interface.
      batch_size: occluded copies per model call (``None``: all at once).
      patch: the patch's side, or ``(height, width)``, no larger than the image.
      stride: the step between placements, or ``(y, x)`` (the last placement is cut at
        the edge when it does not tile the image, as in Captum).
      baseline: the value the covered pixels take (0: black on a 0-255 scale), a number
        that float32 holds.

    Returns:
      float32 ``[B, H, W, C]``, in score units (equal over channels).
    """
    del key
    images = _common.as_images(images)
    batch, height, width, channels = images.shape
    positions = occlusion_positions((height, width), patch, stride)
    (ph, pw) = _common.check_pair(patch, "patch")
    baseline = _common.check_float32(baseline, "baseline")
    batch_size = _common.check_batch_size(batch_size)
    classes = _common.resolve_classes(logits_fn, params, images, classes)

    # How many placements cover each pixel: a constant of the geometry.
    coverage = np.zeros((height, width), np.float32)
    for y, x in positions:
        coverage[y : y + ph, x : x + pw] += 1
    reference = select_scores(_checks.model_logits(logits_fn, params, images), classes)  # [B]
    corners = jnp.asarray(positions)
    iy = jnp.arange(height)[None, :, None]
    ix = jnp.arange(width)[None, None, :]

    def row(b, n):
        y0, x0 = corners[n, 0][:, None, None], corners[n, 1][:, None, None]
        covered = (iy >= y0) & (iy < y0 + ph) & (ix >= x0) & (ix < x0 + pw)  # [R, H, W]
        occluded = jnp.where(covered[..., None], jnp.float32(baseline), images[b])
        drop = reference[b] - select_scores(_checks.model_logits(logits_fn, params, occluded), classes[b])
        return drop[:, None, None] * covered.astype(jnp.float32)

    total = _common.sum_over_expansions(row, batch, positions.shape[0], batch_size)
    mean = total / jnp.asarray(np.maximum(coverage, 1.0))[None]
    return jnp.broadcast_to(mean[..., None], images.shape)

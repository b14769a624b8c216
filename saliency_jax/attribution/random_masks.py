"""RISE (Petsiuk et al., 2018): randomised input sampling for explanation.

Each of ``num_masks`` random masks ``M`` is a ``grid x grid`` binary grid whose
cells are 1 with probability ``p``, upsampled bilinearly to ``(grid + 1)`` cells of
``ceil(H / grid) x ceil(W / grid)`` pixels and cropped at a random shift of up to
one cell, so its edges are soft and fall anywhere. The image is shown through the
mask, ``x * M + baseline * (1 - M)``, and the saliency of a pixel is the
class probability weighted by the mask there, normalised by the mask's
expectation ``p``:

    RISE_c(x) = 1 / (N p) * sum_n P_c(x * M_n) M_n

The upsampling holds the edge cells (half-pixel centres, as ``tf.image.resize``
in Xplique's ``Rise``); the authors' code (skimage ``resize``, ``mode="reflect"``)
mirrors the grid instead, which changes a mask only within half an upsampled
cell of the upsampled grid's border, and not its expectation ``p``. The
normalisation is the paper's ``1 / (N p)``; Xplique's ``Rise`` divides by
``sum_n M_n`` instead (a ratio estimator of the same ``E[P_c(x * M) | M = 1]``)
and weighs the model's output for the class as it comes (probabilities only if
the model outputs them), where this uses the softmax of the logits, as the paper.

Mask ``n`` is drawn from ``fold_in(key, n)``: the same masks for every image of a
batch (so an image's map does not depend on the batch it is in) and for every
class. The ``B * num_masks`` masked copies run ``batch_size`` at a time.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from saliency_jax import _checks
from saliency_jax.attribution import _common
from saliency_jax.types import LogitsFn


def rise_mask(key: jax.Array, image_shape: tuple[int, int], *, grid: int = 7, p: float = 0.5) -> jax.Array:
    """One RISE mask, float32 ``[H, W]`` in ``[0, 1]``, from ``key``.

    The cells are drawn from the first key of ``jax.random.split(key)``, the shift
    (``[0, cell)`` on each axis) from the second.

    Args:
      key: a PRNG key.
      image_shape: ``(H, W)``.
      grid: cells per side of the binary grid.
      p: the probability that a cell is 1.
    """
    height, width = image_shape
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    cells_key, shift_key = jax.random.split(key)
    cells = jax.random.bernoulli(cells_key, p, (grid, grid)).astype(jnp.float32)
    upsampled = jax.image.resize(cells, ((grid + 1) * cell_h, (grid + 1) * cell_w), method="bilinear")
    shift = jax.random.randint(shift_key, (2,), 0, jnp.asarray([cell_h, cell_w]))
    return jax.lax.dynamic_slice(upsampled, (shift[0], shift[1]), (height, width))


def check_mask_settings(image_shape, grid, p) -> tuple[tuple[int, int], int, float]:
    """``((H, W), grid, p)`` checked as :func:`rise` documents them, or ``ValueError`` naming the argument."""
    height, width = _common.check_pair(image_shape, "image_shape")
    grid = _checks.check_int(grid, "grid", 1)
    if grid > min(height, width):
        raise ValueError(f"grid must be at most the image's smaller side {min(height, width)}, got {grid}")
    p = _common.check_float32(p, "p", low=0.0, high=1.0, open_low=True)
    return (height, width), grid, p


def rise_masks(key: jax.Array, num_masks: int, image_shape: tuple[int, int], *, grid: int = 7, p: float = 0.5):
    """The masks :func:`rise` uses with this ``key``: float32 ``[N, H, W]``, mask ``n`` from ``fold_in(key, n)``.

    Arguments as :func:`rise`'s: ``num_masks >= 1``, ``image_shape`` ``(H, W)``,
    ``1 <= grid <= min(H, W)``, ``p`` in ``(0, 1]``.
    """
    key = _common.check_key(key, "rise_masks")
    num_masks = _checks.check_int(num_masks, "num_masks", 1, _checks.MAX_COUNT)
    image_shape, grid, p = check_mask_settings(image_shape, grid, p)
    return jax.vmap(lambda n: rise_mask(jax.random.fold_in(key, n), image_shape, grid=grid, p=p))(
        jnp.arange(num_masks)
    )


@_common.nan_for_invalid_requests
def rise(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    num_masks: int = 2000,
    grid: int = 7,
    p: float = 0.5,
    baseline: float = 0.0,
) -> jax.Array:
    """RISE saliency: the class probability averaged over random masks, weighted by each mask.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      key: PRNG key for the masks (required).
      batch_size: masked copies per model call (``None``: all at once).
      num_masks: ``N``, ``>= 1`` (Petsiuk et al. use 4000-8000).
      grid: cells per side of the low-resolution grid, ``1 <= grid <= min(H, W)``.
      p: probability that a cell is kept, in ``(0, 1]``.
      baseline: the value masked-out pixels tend to (0: black on a 0-255 scale), a
        number that float32 holds.

    Returns:
      float32 ``[B, H, W, C]`` (equal over channels), in probability units; its
      expectation at a pixel is ``E[P_c(x * M) | M = 1 there]`` for a binary mask.
    """
    key = _common.check_key(key, "rise")
    images = _common.as_images(images)
    batch, height, width, _ = images.shape
    num_masks = _checks.check_int(num_masks, "num_masks", 1, _checks.MAX_COUNT)
    _, grid, p = check_mask_settings((height, width), grid, p)
    baseline = _common.check_float32(baseline, "baseline")
    batch_size = _common.check_batch_size(batch_size)
    classes = _common.resolve_classes(logits_fn, params, images, classes)

    def row(b, n):
        masks = jax.vmap(lambda i: rise_mask(jax.random.fold_in(key, i), (height, width), grid=grid, p=p))(n)
        masked = images[b] * masks[..., None] + baseline * (1.0 - masks[..., None])
        probabilities = jax.nn.softmax(_checks.model_logits(logits_fn, params, masked), axis=-1)
        chosen = jnp.take_along_axis(probabilities, classes[b][:, None], axis=1)[:, 0]
        return chosen[:, None, None] * masks

    total = _common.sum_over_expansions(row, batch, num_masks, batch_size)
    saliency = total / (num_masks * p)
    return jnp.broadcast_to(saliency[..., None], images.shape)

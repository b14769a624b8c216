"""The largest connected foreground component and its bounding box (paper §3.2)."""

from __future__ import annotations

import numpy as np
from skimage.measure import label

from saliency_jax.localisation._inputs import as_choice, as_map, as_mask, unit_range


def largest_component(mask: np.ndarray, connectivity: int = 2) -> np.ndarray:
    """Keeps the largest connected component of a mask.

    Ties between equally large components go to the one whose first pixel comes
    first in row-major order, so the result is deterministic.

    Args:
      mask: bool (or 0/1) ``[H, W]``, at least one pixel.
      connectivity: 1 (4-neighbours) or 2 (8-neighbours).

    Returns:
      bool ``[H, W]``; all False when ``mask`` has no foreground pixel.

    Raises:
      ValueError: naming the argument, for a mask that is not a non-empty
        ``[H, W]`` array or a ``connectivity`` other than 1 or 2.
    """
    mask = as_mask(mask)
    connectivity = as_choice(connectivity, "connectivity", (1, 2))
    labels = label(mask, connectivity=connectivity)
    if labels.max() == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def most_salient_component(mask: np.ndarray, saliency: np.ndarray, connectivity: int = 2) -> np.ndarray:
    """Keeps the connected component of a mask with the largest total saliency.

    The saliency is shifted so its minimum is 0. Ties go to the component whose
    first pixel comes first in row-major order.

    Args:
      mask: bool (or 0/1) ``[H, W]``, at least one pixel.
      saliency: ``[H, W]`` finite map (a NaN would make every total NaN, and the
        choice arbitrary).
      connectivity: 1 (4-neighbours) or 2 (8-neighbours).

    Returns:
      bool ``[H, W]``; all False when ``mask`` has no foreground pixel.

    Raises:
      ValueError: naming the argument, for a mask that is not a non-empty
        ``[H, W]`` array, a map of another shape, of non-numbers or with NaN or
        infinite values, or a ``connectivity`` other than 1 or 2.
    """
    mask = as_mask(mask)
    saliency = as_map(saliency, mask.shape)
    connectivity = as_choice(connectivity, "connectivity", (1, 2))
    labels = label(mask, connectivity=connectivity)
    if labels.max() == 0:
        return np.zeros_like(mask)
    with np.errstate(over="ignore"):
        shifted = saliency - saliency.min()
        overflows = not np.isfinite(shifted.max() * shifted.size)
    if overflows:  # a map whose range or sums exceed float64's: compare its values scaled to [0, 1]
        shifted = unit_range(saliency)
    totals = np.bincount(labels.ravel(), weights=shifted.ravel())
    totals[0] = -1.0
    return labels == int(np.argmax(totals))


def bounding_box(mask: np.ndarray) -> np.ndarray:
    """The tightest box around a mask's pixels.

    Args:
      mask: bool (or 0/1) ``[H, W]`` with at least one foreground pixel.

    Returns:
      int64 ``[4]``: ``x0, y0, x1, y1`` in pixels, ``x1``/``y1`` exclusive, so the
      box covers columns ``x0 .. x1 - 1`` and its width is ``x1 - x0``.
    """
    mask = as_mask(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask is empty: a box needs at least one foreground pixel")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.int64)

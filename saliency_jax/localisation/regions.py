"""XRAI's regions (Kapishnikov et al., 2019): an attribution map summed over image segments.

XRAI over-segments the image (Felzenszwalb's graph segmentation at six scales,
each segment dilated by a few pixels so that regions overlap and cover edges),
then ranks the regions greedily: at each step it adds the region whose pixels not
yet covered have the highest mean attribution ("gain density"), skipping regions
that add fewer than ``min_new_pixels`` pixels, until the image is covered (or
``area_fraction`` of it). Each pixel's value is the gain density of the step that
covered it, and what no region covered gets the mean attribution of the rest, so
the map sums to the attribution's sum. The settings are PAIR saliency's
(``saliency.core.XRAI``, algorithm ``"full"``): scales 50, 100, 150, 250, 500 and
1200, sigma 0.8, segments of at least 150 pixels on the image resized to 224 x 224
with its values scaled to ``[-1, 1]``, a dilation by a disk of radius 5, and 50
new pixels.

Numpy and scikit-image on the CPU; :func:`saliency_jax.evaluation.region_maps.xrai` computes
the attributions (Integrated Gradients by default) and calls these.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from saliency_jax.localisation import _inputs

FELZENSZWALB_SCALES = (50, 100, 150, 250, 500, 1200)


class RankedRegions(NamedTuple):
    """What :func:`rank_regions` returns.

    Attributes:
      saliency: float64 ``[H, W]``, each pixel the gain density of the region that covered it.
      ranks: int ``[H, W]``: 1 for the pixels of the most important region, 2 for the next, ...;
        the pixels no region covered come last.
    """

    saliency: np.ndarray
    ranks: np.ndarray


def _power_of_two_scale(largest: float) -> float:
    """``2**k`` with ``largest / 2**k`` in ``[1, 2)`` (1 for 0): dividing by it is exact and cannot overflow."""
    if not largest > 0:
        return 1.0
    return float(np.ldexp(1.0, np.frexp(largest)[1] - 1))


def felzenszwalb_regions(
    image,
    *,
    scales: tuple[float, ...] = FELZENSZWALB_SCALES,
    sigma: float = 0.8,
    min_size: int = 150,
    work_size: int | None = 224,
    dilation_radius: int = 5,
) -> np.ndarray:
    """XRAI's candidate regions: the segments of Felzenszwalb's algorithm at several scales.

    Args:
      image: ``[H, W, 3]`` or ``[H, W]`` numbers at any scale (only their range is used:
        the image is scaled to ``[-1, 1]``).
      scales: Felzenszwalb's ``scale`` values, one segmentation each (larger: bigger segments).
      sigma: its Gaussian pre-smoothing, in pixels of the working image.
      min_size: its smallest segment, in pixels of the working image.
      work_size: the side of the square the image is resized to (bicubic, anti-aliased)
        before segmenting, the segments resized back by nearest neighbour; ``None``
        segments at the image's own size.
      dilation_radius: each segment grown by a disk of this radius (0: not grown).

    Returns:
      bool ``[M, H, W]``: every segment of every scale, in order of scale then label.
    """
    from skimage import segmentation, transform
    from skimage.morphology import dilation, disk

    array = _inputs.as_colours(image, "image")
    scales = tuple(_inputs.as_number(s, "scales", low=0.0, open_low=True) for s in np.atleast_1d(scales))
    if not scales:
        raise ValueError("scales must name at least one scale")
    sigma = _inputs.as_number(sigma, "sigma", low=0.0)
    min_size = _inputs.as_int(min_size, "min_size", 1)
    dilation_radius = _inputs.as_int(dilation_radius, "dilation_radius", 0)
    shape = array.shape[:2]
    # Onto [-1, 1]; first by a power of two into (-2, 2), so that high - low cannot overflow (+-1.7e308).
    array = array / _power_of_two_scale(np.abs(array).max())
    low, high = array.min(), array.max()
    work = 2.0 * (array - low) / (high - low) - 1.0 if high > low else np.zeros_like(array)
    if work_size is not None:
        work_size = _inputs.as_int(work_size, "work_size", 1)
        work = transform.resize(work, (work_size, work_size), order=3, mode="constant", preserve_range=True,
                                anti_aliasing=True)
    masks = []
    footprint = disk(dilation_radius) if dilation_radius else None
    for scale in scales:
        labels = segmentation.felzenszwalb(work, scale=scale, sigma=sigma, min_size=min_size)
        if work_size is not None:
            labels = transform.resize(labels, shape, order=0, preserve_range=True, mode="constant",
                                      anti_aliasing=False).astype(np.int64)
        for label in np.unique(labels):
            mask = labels == label
            if footprint is not None:  # grown within its bounding box widened by the radius
                rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
                top, left = max(rows[0] - dilation_radius, 0), max(cols[0] - dilation_radius, 0)
                bottom, right = rows[-1] + dilation_radius + 1, cols[-1] + dilation_radius + 1
                mask[top:bottom, left:right] = dilation(mask[top:bottom, left:right], footprint)
            masks.append(mask)
    return np.stack(masks)


def _as_regions(regions, shape: tuple[int, int]) -> np.ndarray:
    try:
        array = np.asarray(regions)
    except (ValueError, TypeError):
        raise ValueError("regions must be a boolean [M, H, W] array, got a ragged sequence") from None
    if array.dtype != bool:
        raise ValueError(f"regions must be a boolean [M, H, W] array, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[1:] != tuple(shape) or array.shape[0] < 1:
        raise ValueError(f"regions must have shape [M, H, W] = [M >= 1, {shape[0]}, {shape[1]}] (the map's), "
                         f"got shape {array.shape}")
    return array


def rank_regions(attribution, regions, *, min_new_pixels: int = 50, area_fraction: float = 1.0) -> RankedRegions:
    """XRAI's greedy ranking of ``regions`` by the attribution they add.

    Args:
      attribution: a finite ``[H, W]`` map (XRAI: the largest channel of the attributions).
      regions: bool ``[M, H, W]`` candidate regions (:func:`felzenszwalb_regions`).
      min_new_pixels: a region that would add fewer pixels than this is dropped, ``>= 1``.
      area_fraction: stop once more than this fraction of the image is covered, in ``(0, 1]``
        (1: rank until no region adds enough pixels).

    Returns:
      :class:`RankedRegions`; its ``saliency`` sums to ``attribution``'s sum.
    """
    attribution = _inputs.as_saliency(attribution, name="attribution")
    shape = attribution.shape
    masks = _as_regions(regions, shape).reshape(-1, attribution.size)
    min_new_pixels = _inputs.as_int(min_new_pixels, "min_new_pixels", 1)
    area_fraction = _inputs.as_number(area_fraction, "area_fraction", low=0.0, high=1.0, open_low=True)
    # Summed as values / 2**k within (-2, 2), exactly the same sums scaled, so a region's sum cannot
    # overflow where the values are near float64's limit; the gains are scaled back.
    scale = _power_of_two_scale(np.abs(attribution).max())
    values = attribution.ravel() / scale
    # What each region would add: its uncovered pixels' count and attribution, updated as pixels are covered.
    new_count = masks.sum(axis=1).astype(np.int64)
    new_sum = masks.astype(np.float64) @ values
    alive = np.ones(len(masks), bool)
    covered = np.zeros(values.size, bool)
    out = np.zeros(values.size)
    steps: list[tuple[float, np.ndarray]] = []
    while covered.mean() <= area_fraction:
        alive &= new_count >= min_new_pixels
        if not alive.any():
            break
        gains = np.where(alive, new_sum / np.maximum(new_count, 1), -np.inf)
        best = int(np.argmax(gains))  # the first of equal gains, as a scan in order keeps it
        added = np.flatnonzero(masks[best] & ~covered)
        out[added] = gains[best] * scale
        covered[added] = True
        steps.append((float(gains[best]), added))
        new_count -= masks[:, added].sum(axis=1)
        new_sum -= masks[:, added].astype(np.float64) @ values[added]
        alive[best] = False
    rest = np.flatnonzero(~covered)
    if rest.size:
        out[rest] = values[rest].mean() * scale
    ranks = np.zeros(values.size, np.int64)
    # Most important first (a stable sort keeps the order of equal gains), the uncovered pixels last.
    order = sorted(range(len(steps)), key=lambda i: -steps[i][0])
    for rank, i in enumerate(order, start=1):
        ranks[steps[i][1]] = rank
    if rest.size:
        ranks[rest] = len(steps) + 1
    return RankedRegions(out.reshape(shape), ranks.reshape(shape))

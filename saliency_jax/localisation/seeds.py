"""Foreground and background seeds from the quantiles of a saliency map (paper §3.2)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from saliency_jax.localisation._inputs import as_mask, as_number, as_saliency


class Seeds(NamedTuple):
    """Pixels whose label the saliency map fixes.

    Attributes:
      foreground: bool ``[H, W]``, saliency above ``foreground_threshold``.
      background: bool ``[H, W]``, saliency below ``background_threshold``.
      foreground_threshold: the map's foreground quantile.
      background_threshold: the map's background quantile.
    """

    foreground: np.ndarray
    background: np.ndarray
    foreground_threshold: float
    background_threshold: float


def quantile_seeds(
    saliency: np.ndarray,
    foreground_quantile: float = 0.95,
    background_quantile: float = 0.30,
) -> Seeds:
    """Seeds the paper's way: the most and least salient pixels (§3.2).

    Foreground seeds are the pixels strictly above the ``foreground_quantile`` of
    the map's values, background seeds those strictly below its
    ``background_quantile`` (linear interpolation between order statistics, as
    ``np.quantile``). Maps with ties at a threshold (e.g. many exact zeros) can
    leave a strict comparison empty; then, and only then, the pixels equal to that
    threshold join the seed. The two seed sets never overlap.

    Args:
      saliency: ``[H, W]`` finite map, larger = more salient.
      foreground_quantile: in ``(0, 1)``, the paper's 0.95.
      background_quantile: in ``(0, foreground_quantile)``, the paper's 0.30.

    Returns:
      :class:`Seeds`, each set non-empty.

    Raises:
      ValueError: naming the argument, for a quantile that is not a number in
        ``(0, 1)`` or quantiles out of order, a map that is not a finite
        ``[H, W]`` array, or a constant map (all zero, say): its quantiles
        coincide and no pixel is more salient than another.
    """
    wanted = "need 0 < background_quantile < foreground_quantile < 1"
    try:
        foreground_quantile = as_number(foreground_quantile, "foreground_quantile", low=0, high=1,
                                        open_low=True, open_high=True)
        background_quantile = as_number(background_quantile, "background_quantile", low=0, high=1,
                                        open_low=True, open_high=True)
    except ValueError as error:
        raise ValueError(f"{error} ({wanted})") from None
    if not background_quantile < foreground_quantile:
        raise ValueError(
            f"{wanted}, got background_quantile={background_quantile}, foreground_quantile={foreground_quantile}"
        )
    saliency = as_saliency(saliency)
    low, high = saliency.min(), saliency.max()
    if low == high:
        raise ValueError(
            f"saliency is constant (every value is {low}): its {background_quantile:.0%} and "
            f"{foreground_quantile:.0%} quantiles coincide, so it cannot seed a foreground and a "
            "background (check the map: an all-zero map usually means the gradient vanished)"
        )
    with np.errstate(over="ignore"):
        span = high - low
    if not np.isfinite(span):
        # np.quantile interpolates with differences of values, which overflow here: halve the
        # map first (exact, and the ranking is the same) and report the thresholds doubled.
        half = _seeds(saliency / 2, foreground_quantile, background_quantile)
        return half._replace(foreground_threshold=2 * half.foreground_threshold,
                             background_threshold=2 * half.background_threshold)
    return _seeds(saliency, foreground_quantile, background_quantile)


def _seeds(saliency: np.ndarray, foreground_quantile: float, background_quantile: float) -> Seeds:
    """:func:`quantile_seeds` of a checked, not constant map whose range float64 holds."""
    background_threshold, foreground_threshold = np.quantile(
        saliency, [background_quantile, foreground_quantile]
    )
    foreground = saliency > foreground_threshold
    if not foreground.any():  # the threshold is the maximum, shared by >= 5% of pixels
        foreground = saliency >= foreground_threshold
    background = saliency < background_threshold
    if not background.any():  # the threshold is the minimum, shared by >= 30% of pixels
        background = saliency <= background_threshold
    # Both fallbacks at once would need min == threshold == max: a constant map.
    return Seeds(foreground, background, float(foreground_threshold), float(background_threshold))


def seed_mask(seeds: Seeds, which: str, shape: tuple[int, int]) -> np.ndarray:
    """bool ``[H, W]``: ``seeds.foreground`` or ``seeds.background``, checked against the image's ``shape``.

    A 0/1 integer mask is read as a boolean one (not as pixel indices).
    """
    if not isinstance(seeds, Seeds):
        raise ValueError(f"seeds must be Seeds (from quantile_seeds), got {type(seeds).__name__}")
    mask = as_mask(getattr(seeds, which), f"seeds.{which}")
    if mask.shape != tuple(shape):
        raise ValueError(f"seeds.{which} must have the image's height and width {tuple(shape)}, got shape {mask.shape}")
    return mask

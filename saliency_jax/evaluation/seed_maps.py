"""Choices of the saliency map that seeds the localisation (paper §3.2 and beyond).

Plain gradient maps are speckled, so their top 5% scatter over the image. These
wrappers turn any ``map_fn(images, *args) -> maps`` (numpy in, numpy out:
``images`` float ``[B, H, W, 3]`` on the 0-255 scale, ``maps`` ``[B, H, W]``) into
a smoother one, without touching the model: extra arguments (e.g. the classes to
explain, fixed from the clean images) are passed through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MapFn = Callable[..., np.ndarray]

SEED_MAPS = ("paper", "flip-shift", "smoothgrad")


def _check_images(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, H, W, C], got shape {images.shape}")
    return images


def _check_maps(maps, images: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, np.float32)
    if maps.shape != images.shape[:3]:
        raise ValueError(f"map_fn must return maps of shape {images.shape[:3]}, got {maps.shape}")
    return maps


def flip_shift_average(map_fn: MapFn, *, shifts: tuple[int, ...] = (0, 4), flips: bool = True) -> MapFn:
    """The map averaged over horizontal flips and small circular shifts.

    Each copy's map is moved back into the original frame (the flip undone, the
    diagonal shift ``s`` rolled back) before averaging, so the result lines up
    with the input; speckle that depends on the pixel grid averages out.

    Args:
      map_fn: ``(images [B, H, W, C], *args) -> [B, H, W]``.
      shifts: diagonal pixel shifts (0 = the image itself).
      flips: also use the mirrored image.

    Returns:
      A map function with the same signature, calling ``map_fn``
      ``len(shifts) * (2 if flips else 1)`` times.
    """
    if not shifts:
        raise ValueError("shifts must name at least one shift (0 for none)")

    def averaged(images, *args, **kwargs):
        images = _check_images(images)
        total = np.zeros(images.shape[:3], np.float64)
        count = 0
        for flip in (False, True) if flips else (False,):
            for shift in shifts:
                x = images[:, :, ::-1] if flip else images
                x = np.roll(x, (shift, shift), axis=(1, 2))
                maps = np.roll(_check_maps(map_fn(x, *args, **kwargs), images), (-shift, -shift), axis=(1, 2))
                total += maps[:, :, ::-1] if flip else maps
                count += 1
        return (total / count).astype(np.float32)

    return averaged


def smoothgrad(map_fn: MapFn, *, num_samples: int = 16, noise_scale: float = 0.15, seed: int = 0) -> MapFn:
    """SmoothGrad (Smilkov et al., 2017): the map averaged over noisy copies.

    Gaussian noise of standard deviation ``noise_scale`` times each image's value
    range is added; the noise is drawn from ``seed``, so equal inputs give equal
    maps.

    Args:
      map_fn: ``(images [B, H, W, C], *args) -> [B, H, W]``.
      num_samples: noisy copies, ``>= 1``.
      noise_scale: ``>= 0``; the SmoothGrad paper's 10-20% of the range.
      seed: the noise's random state.

    Returns:
      A map function with the same signature, calling ``map_fn`` ``num_samples`` times.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    if not noise_scale >= 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")

    def smoothed(images, *args, **kwargs):
        images = _check_images(images)
        rng = np.random.default_rng(seed)
        span = images.max(axis=(1, 2, 3), keepdims=True) - images.min(axis=(1, 2, 3), keepdims=True)
        total = np.zeros(images.shape[:3], np.float64)
        for _ in range(num_samples):
            noisy = images + noise_scale * span * rng.standard_normal(images.shape, dtype=np.float32)
            total += _check_maps(map_fn(noisy, *args, **kwargs), images)
        return (total / num_samples).astype(np.float32)

    return smoothed


def seed_map_fn(name: str, map_fn: MapFn, *, seed: int = 0) -> MapFn:
    """The named choice of seed map, with its default settings.

    Args:
      name: ``"paper"`` (the plain gradient map of §3.1), ``"flip-shift"`` (averaged
        over flips and shifts of 0 and 4 pixels) or ``"smoothgrad"`` (16 copies,
        15% noise).
      map_fn: the plain map function.
      seed: SmoothGrad's noise seed.

    Returns:
      A map function with ``map_fn``'s signature.
    """
    if name == "paper":
        return map_fn
    if name == "flip-shift":
        return flip_shift_average(map_fn)
    if name == "smoothgrad":
        return smoothgrad(map_fn, seed=seed)
    raise ValueError(f"seed map must be one of {SEED_MAPS}, got {name!r}")


def batched(map_fn: MapFn, batch_size: int) -> MapFn:
    """Calls ``map_fn`` on at most ``batch_size`` images at a time.

    Positional arguments after ``images`` that have one entry per image (arrays
    of length ``B``) are split with the images; others are passed whole.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")

    def run(images, *args):
        images = _check_images(images)
        count = len(images)
        out = []
        for start in range(0, count, batch_size):
            part = slice(start, start + batch_size)
            sliced = [a[part] if np.ndim(a) and len(a) == count else a for a in args]
            out.append(_check_maps(map_fn(images[part], *sliced), images[part]))
        return np.concatenate(out) if out else np.zeros(images.shape[:3], np.float32)

    return run

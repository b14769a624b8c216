"""Checks of the pipeline's numpy inputs, raising ``ValueError`` that name the argument."""

from __future__ import annotations

import numpy as np


def as_image(image, name: str = "image") -> np.ndarray:
    """An ``[H, W, 3]`` float64 copy of a colour or grey image on the 0-255 scale.

    Accepts ``uint8`` or any real dtype holding finite values in ``[0, 255]``;
    ``[H, W]`` and ``[H, W, 1]`` grey images are repeated to three channels.
    """
    array = np.asarray(image)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must hold numbers (uint8, or floats on the 0-255 scale), got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have shape [H, W, 3] (or [H, W] grey), got shape {np.shape(image)}")
    if array.shape[0] * array.shape[1] < 2:
        raise ValueError(
            f"{name} must have at least 2 pixels to split into foreground and background, "
            f"got shape {np.shape(image)}"
        )
    if array.dtype != np.uint8:
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if array.min() < 0 or array.max() > 255:
            raise ValueError(
                f"{name} must be on the 0-255 scale, got values from {array.min()} to {array.max()}"
            )
    array = array.astype(np.float64)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def as_saliency(saliency, shape: tuple[int, int] | None = None, name: str = "saliency") -> np.ndarray:
    """A float64 ``[H, W]`` copy of a finite saliency map, checked against ``shape``."""
    array = np.asarray(saliency)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be a real-valued [H, W] map, got dtype {array.dtype}")
    if array.ndim != 2:
        hint = " (one map per image: drop the batch or channel axis)" if array.ndim == 3 else ""
        raise ValueError(f"{name} must have shape [H, W], got shape {array.shape}{hint}")
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(
            f"{name} must have the image's height and width {tuple(shape)}, got shape {array.shape}; "
            "resize the map to the image (or the image to the map) first"
        )
    if array.size < 2:
        raise ValueError(f"{name} must have at least 2 pixels, got shape {array.shape}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    return array


def as_mask(mask, name: str = "mask") -> np.ndarray:
    """A boolean ``[H, W]`` view of a mask."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [H, W], got shape {array.shape}")
    if array.dtype != bool:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"{name} must be boolean (or 0/1), got dtype {array.dtype}")
        array = array != 0
    return array

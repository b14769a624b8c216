"""Checks of the pipeline's numpy inputs, raising ``ValueError`` that name the argument.

The scalar checks accept Python numbers, numpy scalars and 0-d numpy arrays, and
return plain Python ``int`` or ``float``; booleans and strings are refused.
(This package does not import JAX, so it keeps its own checks.)
"""

from __future__ import annotations

import numbers

import numpy as np


def _scalar(value):
    """A 0-d numpy array as its numpy scalar; anything else as it is."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def as_int(value, name: str, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``, else ``ValueError``.

    Floats, even whole ones, and booleans are refused: ``num_components=2.5`` or
    ``seed=True`` is a mistake, not a request.
    """
    wanted = f"an integer >= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
    scalar = _scalar(value)
    if isinstance(scalar, (bool, np.bool_)) or not isinstance(scalar, numbers.Integral):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    if scalar < minimum or (maximum is not None and scalar > maximum):
        raise ValueError(f"{name} must be {wanted}, got {int(scalar)}")
    return int(scalar)


def as_choice(value, name: str, choices: tuple[int, ...]) -> int:
    """``value`` as an ``int`` if it is one of the integers ``choices``, else ``ValueError``."""
    wanted = " or ".join(map(str, choices))
    scalar = _scalar(value)
    if isinstance(scalar, (bool, np.bool_)) or not isinstance(scalar, numbers.Integral) or scalar not in choices:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(scalar)


def as_number(value, name: str, *, low: float | None = None, high: float | None = None,
              open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number in range, else ``ValueError``.

    ``low`` and ``high`` are inclusive unless ``open_low`` / ``open_high``.
    """
    if low is not None and high is not None:
        wanted = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    elif low is not None:
        wanted = f"{'>' if open_low else '>='} {low:g}"
    elif high is not None:
        wanted = f"{'<' if open_high else '<='} {high:g}"
    else:
        wanted = ""
    message = f"{name} must be a finite number {wanted}".rstrip()
    scalar = _scalar(value)
    if isinstance(scalar, (bool, np.bool_)) or not isinstance(scalar, numbers.Real):
        raise ValueError(f"{message}, got {value!r}")
    try:
        number = float(scalar)
    except OverflowError:  # an integer beyond float64's range
        number = float("inf") if scalar > 0 else float("-inf")
    below = low is not None and (number <= low if open_low else number < low)
    above = high is not None and (number >= high if open_high else number > high)
    if not np.isfinite(number) or below or above:
        raise ValueError(f"{message}, got {number}")
    return number


def _real_array(value, name: str, wanted: str) -> np.ndarray:
    """``np.asarray(value)``, refused unless it holds integers or floats."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # a ragged nest of sequences
        raise ValueError(f"{name} must {wanted}, got a ragged sequence") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must {wanted}, got dtype {array.dtype}")
    return array


def _refuse_non_finite(array: np.ndarray, name: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"{name} contains {int(finite.size - finite.sum())} NaN or infinite values")


def _image_array(image, name: str) -> np.ndarray:
    """A colour or grey image as an ``[H, W, 1 or 3]`` array of numbers, as given."""
    array = _real_array(image, name, "hold numbers (uint8, or floats)")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must have shape [H, W, 3] (or [H, W] grey), got shape {np.shape(image)}")
    return array


def as_colours(image, name: str = "image") -> np.ndarray:
    """An ``[H, W, 3]`` float64 copy of a finite, non-empty colour or grey image, at any scale.

    The GraphCut's contrast term does not depend on the colours' scale, so any
    finite values are accepted; ``[H, W]`` and ``[H, W, 1]`` grey images are
    repeated to three channels.
    """
    array = _image_array(image, name)
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {np.shape(image)}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def as_image(image, name: str = "image", *, min_pixels: int = 2) -> np.ndarray:
    """An ``[H, W, 3]`` float64 copy of a colour or grey image on the 0-255 scale.

    Integer images (``uint8``, say) are on the 0-255 scale. Float images follow the
    rule of the library's image reader (:func:`saliency_jax.io.load_image`): on
    the 0-1 scale when every value lies within ``[0, 1]`` (they are multiplied by
    255), on the 0-255 scale otherwise. Values must be finite and, on the 0-255
    scale, within ``[0, 255]``. ``[H, W]`` and ``[H, W, 1]`` grey images are
    repeated to three channels. The image needs ``min_pixels`` pixels (the
    pipeline's 2: a foreground and a background).

    Every public function that reads an image's colours applies this one rule;
    the pipeline applies it once and hands the result on (a second pass would
    read a converted image that happens to lie within ``[0, 1]`` as 0-1 again).
    """
    array = _image_array(image, name)
    if array.shape[0] * array.shape[1] < min_pixels:
        if min_pixels <= 1:
            raise ValueError(f"{name} must not be empty, got shape {np.shape(image)}")
        raise ValueError(
            f"{name} must have at least {min_pixels} pixels to split into foreground and background, "
            f"got shape {np.shape(image)}"
        )
    if array.dtype != np.uint8:
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        low, high = array.min(), array.max()
        if np.issubdtype(array.dtype, np.floating) and low >= 0 and high <= 1:
            array = array.astype(np.float64) * 255.0  # the 0-1 scale
        elif low < 0 or high > 255:
            raise ValueError(
                f"{name} must be on the 0-255 scale (or, for floats, all within [0, 1]), "
                f"got values from {low} to {high}"
            )
    array = array.astype(np.float64)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def as_saliency(saliency, shape: tuple[int, int] | None = None, name: str = "saliency") -> np.ndarray:
    """A float64 ``[H, W]`` copy of a finite saliency map, checked against ``shape``."""
    array = _real_array(saliency, name, "be a real-valued [H, W] map")
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
    _refuse_non_finite(array, name)
    return array


def as_cost(cost, shape: tuple[int, int], name: str) -> np.ndarray:
    """A float64 ``[H, W]`` copy of a finite per-pixel cost of the image's ``shape``."""
    return _finite_of_shape(cost, shape, name, "be a real-valued [H, W] array", "the image's height and width")


def as_mask(mask, name: str = "mask") -> np.ndarray:
    """A boolean ``[H, W]`` view of a non-empty mask (numbers: nonzero is True; NaN is refused)."""
    try:
        array = np.asarray(mask)
    except (ValueError, TypeError):  # a ragged nest of sequences
        raise ValueError(f"{name} must be a boolean [H, W] array, got a ragged sequence") from None
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape [H, W], got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must have at least one pixel, got shape {array.shape}")
    if array.dtype != bool:
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"{name} must be boolean (or 0/1), got dtype {array.dtype}")
        if np.issubdtype(array.dtype, np.floating):
            _refuse_non_finite(array, name)
        array = array != 0
    return array


def as_map(saliency, shape: tuple[int, int], name: str = "saliency") -> np.ndarray:
    """A float64 copy of a finite real-valued map of exactly ``shape`` (that of the mask it scores)."""
    return _finite_of_shape(saliency, shape, name, "be a real-valued [H, W] map", "the mask's shape")


def _finite_of_shape(value, shape: tuple[int, int], name: str, wanted: str, whose: str) -> np.ndarray:
    """A float64 copy of finite real ``value`` of exactly ``shape`` (``whose``, in the message)."""
    array = _real_array(value, name, wanted)
    if array.shape != tuple(shape):
        raise ValueError(f"{name} must have {whose} {tuple(shape)}, got shape {array.shape}")
    array = array.astype(np.float64)
    _refuse_non_finite(array, name)
    return array


def as_colour_array(colours, name: str, dim: int) -> np.ndarray:
    """A float64 copy of finite ``[N, dim]`` colours."""
    array = _real_array(colours, name, f"be [N, {dim}] colours (numbers)")
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"{name} must have shape [N, {dim}], got shape {array.shape}")
    array = array.astype(np.float64)
    _refuse_non_finite(array, name)
    return array


def unit_range(saliency: np.ndarray) -> np.ndarray:
    """A finite float64 map scaled to ``[0, 1]`` by its minimum and maximum; all 0 when it is constant.

    A map whose range exceeds float64's (``max - min`` overflows) is halved
    first, which is exact.
    """
    low, high = saliency.min(), saliency.max()
    if not high > low:
        return np.zeros_like(saliency)
    with np.errstate(over="ignore"):
        span = high - low
    if not np.isfinite(span):
        saliency, low, high = saliency / 2, low / 2, high / 2
    return (saliency - low) / (high - low)

"""Image priors for class model visualisation: the paper's L2 and what goes beyond it.

The paper (§2) regularises only with ``lambda * ||I||^2``. Without more, gradient
ascent finds high-frequency patterns that the model scores highly but that break
under a small shift or rescale. Later work added image-space priors, each one a
small piece here:

* :func:`l2_penalty`: the paper's ``lambda * ||z||^2``.
* :func:`jitter`, :func:`random_scale`: score a randomly shifted / rescaled copy
  at every step (Mordvintsev et al., 2015; Olah et al., 2017), so the image must
  work wherever the object lands.
* :func:`total_variation`: penalise differences between neighbouring pixels
  (Mahendran & Vedaldi, 2015).
* :func:`blur_every`: Gaussian-blur the image every ``k`` steps (Yosinski et al.,
  2015).
* :func:`clip_pixels`: project onto the valid pixel box after each step.

A regulariser is a :class:`Regularizer`: up to three pure hooks on *one* image
``z`` ``[H, W, C]`` in the model's preprocessed space, each optional. The ascent
``vmap``-s them over the batch with one PRNG key per image, so a batch of class
images behaves exactly like the same images made one at a time. Regularisers
compose with :func:`compose` (lucid's transform pipeline, with explicit keys).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from saliency_jax import _checks

Transform = Callable[[jax.Array, jax.Array], jax.Array]
Penalty = Callable[[jax.Array], jax.Array]
Projection = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


class Regularizer(NamedTuple):
    """Three optional pure hooks on one image ``z`` ``[H, W, C]``.

    Attributes:
      transform: ``(key, z) -> z'``, a random change applied to the image before the
        model scores it; the objective is differentiated through it. ``None``: none.
      penalty: ``z -> []``, a cost subtracted from the objective. ``None``: none.
      project: ``(key, z, step) -> z'``, applied to the image after each optimiser
        update (not differentiated); ``step`` is the 0-based index of the update
        just made. ``None``: none.
    """

    transform: Transform | None = None
    penalty: Penalty | None = None
    project: Projection | None = None


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _number(value, name: str, *, low: float | None = None, open_low: bool = False,
            high: float | None = None) -> float:
    """``value`` as a ``float``: a real number (or concrete 0-d array) in range that float32 holds.

    The hooks compute in float32, where a finite float64 such as ``1e39`` is ``inf``.
    """
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) and np.shape(value) == ():
        if not _checks.is_concrete(value):
            raise ValueError(f"{name} must be a concrete number, got a traced array")
        if jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating):
            value = float(value)
    if low is None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        value = float(value)
    else:
        value = _checks.check_number(value, name, low=low, open_low=open_low, high=high)
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} must be finite in float32 (|{name}| <= {FLOAT32_MAX:.4g}), got {value:g}")
    return value


def _check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    return _number(value, name, low=0.0, open_low=not allow_zero)


def _image_shape(z, name: str = "z") -> tuple[int, int, int]:
    """``(H, W, C)`` of one image ``z``; anything but an ``[H, W, C]`` array is refused by name.

    The shape is static, so this also runs under ``jit`` and ``vmap``.
    """
    shape = getattr(z, "shape", None)
    if shape is None or len(shape) != 3:
        got = type(z).__name__ if shape is None else f"shape {tuple(shape)}"
        hint = ""
        if shape is not None and len(shape) == 4:
            hint = " (a batch: these functions and the regularisers' hooks take one image; vmap over the batch)"
        elif shape is not None and len(shape) == 2:
            hint = " (add the channel axis: z[..., None])"
        raise ValueError(f"{name} must be one image of shape [H, W, C], got {got}{hint}")
    return tuple(shape)


def compose(*regularizers: Regularizer) -> Regularizer:
    """Chains regularisers: transforms and projections in order, penalties summed.

    Each member gets its own key, split from the one passed to the hook.

    Args:
      *regularizers: :class:`Regularizer` values; none gives the empty regulariser.

    Returns:
      One :class:`Regularizer` whose hooks are ``None`` where no member has one.
    """
    for i, r in enumerate(regularizers):
        if not isinstance(r, Regularizer):
            raise ValueError(f"regularizers[{i}] must be a Regularizer, got {type(r).__name__}")
    transforms = [r.transform for r in regularizers if r.transform is not None]
    penalties = [r.penalty for r in regularizers if r.penalty is not None]
    projections = [r.project for r in regularizers if r.project is not None]

    def transform(key, z):
        for t, k in zip(transforms, jax.random.split(key, len(transforms))):
            z = t(k, z)
        return z

    def penalty(z):
        return sum((p(z) for p in penalties[1:]), penalties[0](z))

    def project(key, z, step):
        for p, k in zip(projections, jax.random.split(key, len(projections))):
            z = p(k, z, step)
        return z

    return Regularizer(
        transform=transform if transforms else None,
        penalty=penalty if penalties else None,
        project=project if projections else None,
    )


def l2_penalty(weight: float) -> Regularizer:
    """The paper's prior (§2): ``weight * ||z||_2^2``, summed over pixels and channels.

    Args:
      weight: ``lambda >= 0``, in score units per squared preprocessed pixel unit.
    """
    weight = _check_positive("weight", weight, allow_zero=True)
    return Regularizer(penalty=lambda z: weight * jnp.sum(jnp.square(z)))


def jitter(pixels: int) -> Regularizer:
    """Shifts the image by a random whole number of pixels in ``[-pixels, pixels]``.

    The image keeps its size; the uncovered border is filled by reflection
    (:func:`translate`), so no seam or blank border appears.

    Args:
      pixels: the largest shift along each axis, ``>= 0``, smaller than the image's sides.
    """
    pixels = _checks.check_int(pixels, "pixels", 0)

    def transform(key, z):
        height, width, _ = _image_shape(z)
        if pixels == 0:
            return z
        if pixels >= min(height, width):
            raise ValueError(
                f"jitter's pixels must be smaller than the image's sides {height}x{width}, got {pixels}"
            )
        shift = jax.random.randint(key, (2,), -pixels, pixels + 1)
        return translate(z, shift[0], shift[1], max_shift=pixels)

    return Regularizer(transform=transform)


def translate(z: jax.Array, dy, dx, *, max_shift: int) -> jax.Array:
    """Shifts one image by whole pixels, filling the uncovered border by reflection.

    Args:
      z: ``[H, W, C]``.
      dy: shift down (negative: up), an int scalar, ``|dy| <= max_shift``; may be traced
        (a concrete value outside the range is refused; a traced one is clipped to it).
      dx: shift right (negative: left), likewise.
      max_shift: static bound on the shifts, an integer ``>= 0`` smaller than the image's sides.

    Returns:
      ``[H, W, C]``: ``out[i, j] = z[i - dy, j - dx]`` where that lies inside.

    Raises:
      ValueError: naming the argument, for a ``z`` that is not ``[H, W, C]``, a
        ``max_shift`` that is not such an integer, or a concrete shift beyond it.
    """
    height, width, channels = _image_shape(z)
    # The padding's width: 2.5 would otherwise reach jnp.pad ("pad_width must be of integral type").
    max_shift = _checks.check_int(max_shift, "max_shift", 0)
    if not max_shift < min(height, width):
        raise ValueError(
            f"max_shift must be in [0, {min(height, width)}) for an image of shape {z.shape}, got {max_shift}"
        )
    p = max_shift
    shifts = []
    for name, shift in (("dy", dy), ("dx", dx)):
        if _checks.is_concrete(shift):
            # A shift beyond the padding would make ``dynamic_slice`` wrap a negative start and clamp
            # it, i.e. silently shift by another amount, even the other way.
            shift = _checks.check_int(shift, name, -p, p)
        else:
            shift = jnp.clip(jnp.asarray(shift, jnp.int32), -p, p)
        shifts.append(jnp.asarray(shift, jnp.int32))
    padded = jnp.pad(z, ((p, p), (p, p), (0, 0)), mode="reflect")
    start = (p - shifts[0], p - shifts[1], jnp.zeros((), jnp.int32))
    return jax.lax.dynamic_slice(padded, start, (height, width, channels))


MAX_SCALE = 1e6  # of rescale and random_scale: beyond, the centring translation overflows float32


def random_scale(min_scale: float, max_scale: float) -> Regularizer:
    """Rescales the image about its centre by a factor drawn uniformly from a range.

    The output keeps the image's size: enlarging crops, shrinking leaves a border
    of zeros, i.e. of the mean image. Linear interpolation, antialiased.

    Args:
      min_scale: smallest factor, ``> 0``.
      max_scale: largest factor, ``>= min_scale``.
    """
    min_scale = _number(min_scale, "min_scale", low=0.0, high=MAX_SCALE, open_low=True)
    max_scale = _number(max_scale, "max_scale", low=0.0, high=MAX_SCALE, open_low=True)
    if not np.float32(min_scale) > 0:  # drawn in float32: 1e-45 would be a scale of 0
        raise ValueError(f"min_scale must be > 0 in float32, got {min_scale:g}")
    if max_scale < min_scale:
        raise ValueError(f"max_scale must be >= min_scale, got {max_scale} < {min_scale}")

    def transform(key, z):
        factor = jax.random.uniform(key, (), minval=min_scale, maxval=max_scale)
        return rescale(z, factor)

    return Regularizer(transform=transform)


def rescale(z: jax.Array, factor) -> jax.Array:
    """Rescales one image about its centre, keeping its size (see :func:`random_scale`).

    Args:
      z: ``[H, W, C]``.
      factor: scalar scale factor, ``> 0`` and at most :data:`MAX_SCALE`; may be traced (as
        :func:`random_scale` draws it). A concrete factor out of range is refused.
        A traced one cannot be checked while tracing: out of range (0; negative,
        which would turn the image by 180 degrees; not finite) it gives an
        all-NaN image rather than a plausible one.

    Returns:
      ``[H, W, C]``.

    Raises:
      ValueError: naming the argument, for a ``z`` that is not ``[H, W, C]``, a
        ``factor`` that is not a scalar, or a concrete ``factor`` that is not a
        number ``> 0`` (in float32) and at most :data:`MAX_SCALE`.
    """
    height, width, _ = _image_shape(z)
    if jnp.ndim(factor) != 0:
        raise ValueError(f"factor must be a scalar, got shape {jnp.shape(factor)}")
    traced = not _checks.is_concrete(factor)
    if not traced:
        factor = _number(factor, "factor", low=0.0, high=MAX_SCALE, open_low=True)
        if not np.float32(factor) > 0:  # below float32's smallest subnormal: a scale of 0
            raise ValueError(f"factor must be > 0 in float32 (at least {np.finfo(np.float32).smallest_subnormal:g}), "
                             f"got {factor:g}")
    factor = jnp.asarray(factor, jnp.float32)
    scale = jnp.stack([factor, factor])
    translation = jnp.stack([height * (1 - factor) / 2, width * (1 - factor) / 2])
    out = jax.image.scale_and_translate(z, z.shape, (0, 1), scale, translation, "linear", antialias=True)
    if traced:
        out = jnp.where((factor > 0) & (factor <= MAX_SCALE), out, jnp.nan)
    return out


def total_variation(weight: float, *, beta: float = 2.0) -> Regularizer:
    """Total variation ``weight * sum((dx^2 + dy^2) ** (beta / 2))`` (Mahendran & Vedaldi, 2015).

    ``dx``, ``dy`` are differences to the right and lower neighbour, per channel,
    over the ``[H-1, W-1]`` pixels that have both. ``beta = 2`` (the default) is the
    smooth quadratic version; ``beta = 1`` is the classic edge-preserving one (a
    tiny constant under the root keeps its gradient finite on flat regions).

    Args:
      weight: ``>= 0``.
      beta: exponent, ``> 0``.
    """
    weight = _check_positive("weight", weight, allow_zero=True)
    beta = _check_positive("beta", beta)

    def penalty(z):
        _image_shape(z)  # a batch would take differences across its images
        dx = z[:-1, 1:] - z[:-1, :-1]
        dy = z[1:, :-1] - z[:-1, :-1]
        squared = dx * dx + dy * dy
        if beta == 2.0:
            return weight * jnp.sum(squared)
        return weight * jnp.sum((squared + 1e-8) ** (beta / 2))

    return Regularizer(penalty=penalty)


def gaussian_blur(z: jax.Array, sigma: float) -> jax.Array:
    """Blurs one image with a separable Gaussian of std ``sigma`` pixels, reflect borders.

    The kernel is truncated at ``3 sigma`` (at least one pixel each side), which
    must be smaller than the image's sides. ``sigma = 0`` is no blur: ``z`` is
    returned as it is, as ``scipy.ndimage.gaussian_filter`` and
    :func:`saliency_jax.attribution.gaussian_blur` do, so a sweep over blur
    levels may start at 0.

    Args:
      z: ``[H, W, C]``.
      sigma: ``>= 0``, a concrete number (it sets the kernel's size, which is static).

    Returns:
      ``[H, W, C]``.

    Raises:
      ValueError: naming the argument, for a ``z`` that is not ``[H, W, C]``, or a
        ``sigma`` that is negative, not finite, traced, or too large for the image.
    """
    height, width, _ = _image_shape(z)
    sigma = _number(sigma, "sigma", low=0.0)
    if sigma == 0.0:
        return z
    radius = max(1, int(math.ceil(3 * sigma)))
    if radius >= min(height, width):
        raise ValueError(
            f"sigma {sigma} is too large for an image of shape {tuple(z.shape)}: the kernel's radius, "
            f"max(1, ceil(3 sigma)) = {radius}, must be smaller than the image's sides"
        )
    # The taps in float64 on the host: in float32 a tiny sigma underflows to 0 and 0 / 0 is NaN.
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = jnp.asarray(taps / taps.sum(), jnp.float32)
    padded = jnp.pad(z, ((radius, radius), (0, 0), (0, 0)), mode="reflect")
    z = sum(taps[i] * padded[i : i + height] for i in range(2 * radius + 1))
    padded = jnp.pad(z, ((0, 0), (radius, radius), (0, 0)), mode="reflect")
    return sum(taps[i] * padded[:, i : i + width] for i in range(2 * radius + 1))


def blur_every(every: int, sigma: float) -> Regularizer:
    """Gaussian-blurs the image after every ``every``-th update (Yosinski et al., 2015).

    Args:
      every: blur after updates ``every - 1, 2 * every - 1, ...`` (0-based), ``>= 1``.
      sigma: the blur's standard deviation in pixels, ``> 0``.
    """
    # The step counter is int32.
    every = _checks.check_int(every, "every", 1, np.iinfo(np.int32).max)
    sigma = _check_positive("sigma", sigma)

    def project(key, z, step):
        del key
        return jax.lax.cond((step + 1) % every == 0, lambda x: gaussian_blur(x, sigma), lambda x: x, z)

    return Regularizer(project=project)


def clip_pixels(low: float, high: float) -> Regularizer:
    """Projects every pixel onto ``[low, high]`` after each update (optax's box projection).

    Bounds are in the model's preprocessed space; for raw 0-255 images fed as
    ``(x - mean) / scale`` use ``low = -mean / scale``, ``high = (255 - mean) / scale``.

    Args:
      low: lower bound.
      high: upper bound, ``> low``.
    """
    low, high = _number(low, "low"), _number(high, "high")
    if not high > low:
        raise ValueError(f"clip_pixels needs high > low, got low={low}, high={high}")

    def project(key, z, step):
        del key, step
        return optax.projections.projection_box(z, low, high)

    return Regularizer(project=project)

"""How the optimised variable of a class model becomes an image (beyond the paper, §2).

The paper optimises the pixels themselves. Gradient ascent on pixels favours high
frequencies, because a network's gradient is rich in them; the images it makes
look like noise to us even when the model is sure of the class. Optimising a
*decorrelated* description of the image instead (Olah, Mordvintsev & Schubert,
2017, "Feature Visualization") evens out how fast each frequency and colour
direction moves:

* :func:`pixel_parametrization`: the paper's choice, the image is the variable.
* :func:`fourier_parametrization`: the variable is the 2-D spectrum of each
  decorrelated colour channel, with each frequency ``f`` scaled by ``1 / f**decay``
  (natural images have roughly that amplitude spectrum), then mixed into RGB by
  the square root of the colour covariance of natural images.

Every parametrisation describes one image ``z`` ``[H, W, C]`` in the model's
preprocessed space (``z = 0`` is the mean image) and is linear and invertible on
images: ``to_image(from_image(z)) == z``. The zero variable is the zero image, so a
run starts from the mean image as in the paper, and a projection on images (pixel
clipping, blurring; see :mod:`saliency_jax.regularizers`) can be applied to any
parametrisation by a round trip through ``to_image``/``from_image``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks

# RGB covariance of natural images (pixels on a 0-1 scale), the mean of the
# per-photo covariances of the seven photos that ship with scikit-image and
# scikit-learn (see experiments/sweep_class_model.py --colour). Its eigenvalues,
# about 0.155, 0.019 and 0.002, say how much more the luminance direction varies
# than the two colour-opponent ones.
NATURAL_RGB_COVARIANCE = np.array(
    [
        [0.0679, 0.0506, 0.0428],
        [0.0506, 0.0531, 0.0510],
        [0.0428, 0.0510, 0.0553],
    ]
)


def colour_mixing_matrix(covariance: np.ndarray = NATURAL_RGB_COVARIANCE) -> np.ndarray:
    """The symmetric square root of a colour covariance, largest column norm 1.

    Uncorrelated, equal-variance channels mixed by this matrix have (up to scale)
    the given covariance; normalising the largest column keeps a unit change of one
    decorrelated channel at most a unit change of a pixel.

    Args:
      covariance: ``[C, C]`` covariance of the colour channels: finite, symmetric
        (to a relative ``1e-8``, so ``np.cov``'s rounding passes) and positive
        definite (the mixing is inverted to map images back to the variable).

    Returns:
      float32 ``[C, C]``.

    Raises:
      ValueError: naming ``covariance``, for anything else. A matrix that is not
        symmetric is refused rather than read through one of its triangles (an
        upper-triangular matrix would give the identity).
    """
    try:
        array = np.asarray(covariance)
    except (TypeError, ValueError):  # a ragged nest of sequences
        raise ValueError(f"covariance must be a [C, C] matrix of numbers, got {covariance!r}") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"covariance must be a [C, C] matrix of numbers, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise ValueError(f"covariance must be a square [C, C] matrix with C >= 1, got shape {array.shape}")
    covariance = array.astype(np.float64)
    if not np.isfinite(covariance).all():
        raise ValueError("covariance contains NaN or infinite values")
    asymmetry = np.abs(covariance - covariance.T)
    if asymmetry.max() > 1e-8 * np.abs(covariance).max():
        i, j = np.unravel_index(np.argmax(asymmetry), asymmetry.shape)
        raise ValueError(
            f"covariance must be symmetric, got covariance[{i}, {j}] = {covariance[i, j]:g} but "
            f"covariance[{j}, {i}] = {covariance[j, i]:g}"
        )
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    # Eigenvalues at rounding level of the largest are zero: a singular mixing cannot be inverted.
    if values.min() <= max(values.max(), 0.0) * len(values) * np.finfo(np.float64).eps:
        raise ValueError(
            f"covariance must be positive definite, got eigenvalues from {values.min():g} to {values.max():g}"
        )
    root = vectors @ np.diag(np.sqrt(values)) @ vectors.T
    return (root / np.linalg.norm(root, axis=0).max()).astype(np.float32)


class Parametrization(NamedTuple):
    """A linear, invertible description of one image.

    Attributes:
      image_shape: ``(H, W, C)`` of the image it describes.
      init: ``() -> variable``, the variable of the zero (mean) image.
      to_image: ``variable -> z`` ``[H, W, C]``, the image in the model's
        preprocessed space.
      from_image: ``z -> variable``, the inverse of ``to_image``.
    """

    image_shape: tuple[int, int, int]
    init: Callable[[], Any]
    to_image: Callable[[Any], jax.Array]
    from_image: Callable[[jax.Array], Any]


MAX_IMAGE_VALUES = 2**28  # H * W * C of a parametrised image: 1 GiB of float32


def _check_shape(image_shape) -> tuple[int, int, int]:
    """``(H, W, C)`` as ints; a float such as ``8.5`` is refused, not truncated."""
    wanted = "image_shape must be (H, W, C) with positive integer sizes"
    if isinstance(image_shape, np.ndarray):
        image_shape = tuple(image_shape.tolist())
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
        raise ValueError(f"{wanted}, got {image_shape!r}")
    for size in image_shape:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"{wanted}, got {tuple(image_shape)!r}")
    height, width, channels = (int(size) for size in image_shape)
    if height * width * channels > MAX_IMAGE_VALUES:  # 2**40 squared aborted the interpreter inside XLA
        raise ValueError(f"{wanted} and at most {MAX_IMAGE_VALUES:,} values (2**28), got {tuple(image_shape)!r}")
    return height, width, channels


def pixel_parametrization(image_shape) -> Parametrization:
    """The paper's parametrisation: the variable is the image ``z`` itself.

    Args:
      image_shape: ``(H, W, C)``.

    Returns:
      A :class:`Parametrization` whose variable is float32 ``[H, W, C]``.
    """
    shape = _check_shape(image_shape)
    return Parametrization(
        image_shape=shape,
        init=lambda: jnp.zeros(shape, jnp.float32),
        to_image=lambda variable: variable,
        from_image=lambda z: z,
    )


# The largest ratio between the amplitudes of two frequencies: the variable is
# divided by the smallest amplitude (from_image), so both stay well inside float32.
MAX_SPECTRUM_RANGE = 1e30


def _frequencies(height: int, width: int) -> np.ndarray:
    """``[H, W // 2 + 1]``: each real 2-D FFT coefficient's frequency, floored at one cycle per image."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    return np.maximum(np.sqrt(fy * fy + fx * fx), 1.0 / max(height, width))


def max_decay(height: int, width: int) -> float:
    """The largest ``decay`` whose amplitudes span at most :data:`MAX_SPECTRUM_RANGE` (``inf``: any).

    ``height`` and ``width`` are integers ``>= 1`` (a ``ValueError`` names either otherwise).
    """
    height = _checks.check_int(height, "height", 1)
    width = _checks.check_int(width, "width", 1)
    freq = _frequencies(height, width)
    ratio = float(freq.max() / freq.min())
    return math.inf if ratio <= 1.0 else math.log(MAX_SPECTRUM_RANGE) / math.log(ratio)


def _check_decay(decay, height: int, width: int) -> float:
    decay = _checks.check_number(decay, "decay", low=0.0)
    limit = max_decay(height, width)
    if decay > limit:
        raise ValueError(
            f"decay must be at most {math.floor(limit * 100) / 100} for {height}x{width} images (beyond it the "
            f"amplitudes span more than {MAX_SPECTRUM_RANGE:g}, and dividing by the smallest leaves float32's "
            f"range), got {decay}"
        )
    return decay


def spectrum_scale(height: int, width: int, decay: float = 1.0) -> np.ndarray:
    """Per-frequency amplitudes ``1 / max(f, 1/max(H, W))**decay``, unit RMS.

    ``f`` is the spatial frequency in cycles per pixel of each coefficient of a real
    2-D FFT. The floor at one cycle per image keeps the DC term finite; the RMS
    normalisation makes an i.i.d. unit-variance spectrum give unit-variance pixels
    (with an orthonormal FFT), so learning rates mean about the same as for pixels.
    ``decay`` is at most :func:`max_decay` (about 39 for 8x8 images, 13 for
    224x224): beyond it the smallest amplitudes underflow float32 and the
    parametrisation is no longer invertible.

    Returns:
      float32 ``[H, W // 2 + 1]``.
    """
    height = _checks.check_int(height, "height", 1)
    width = _checks.check_int(width, "width", 1)
    decay = _check_decay(decay, height, width)
    # In logarithms, relative to the largest: f**decay itself under- or overflows
    # float64 for large decays, and the RMS normalisation removes the common factor.
    log_scale = -decay * np.log(_frequencies(height, width))
    scale = np.exp(log_scale - log_scale.max())
    return (scale / np.sqrt(np.mean(scale * scale))).astype(np.float32)


def fourier_parametrization(
    image_shape, *, decay: float = 1.0, decorrelate: bool = True
) -> Parametrization:
    """A decorrelated Fourier parametrisation (Olah et al., 2017).

    The variable holds, for each decorrelated colour channel, the real and
    imaginary parts of its orthonormal real 2-D FFT divided by
    :func:`spectrum_scale`; the image is the inverse FFT mixed into RGB by
    :func:`colour_mixing_matrix`. Equal steps on every coefficient therefore make
    a change with a natural ``1/f`` spectrum and natural colour correlations.

    Args:
      image_shape: ``(H, W, C)``; ``decorrelate`` needs ``C == 3``.
      decay: exponent of the ``1 / f`` amplitude scaling (0 = white), ``>= 0`` and at
        most :func:`max_decay` of the image's size.
      decorrelate: mix the channels with the natural colour covariance's square root.

    Returns:
      A :class:`Parametrization` whose variable is float32 ``[H, W // 2 + 1, C, 2]``.
    """
    height, width, channels = _check_shape(image_shape)
    decay = _check_decay(decay, height, width)
    if not isinstance(decorrelate, (bool, np.bool_)):
        raise ValueError(f"decorrelate must be True or False, got {decorrelate!r}")
    if decorrelate and channels != 3:
        raise ValueError(f"decorrelate needs 3 colour channels, got image_shape {image_shape}")
    # Each half-spectrum coefficient stands for a conjugate pair: with unit-variance
    # real and imaginary parts it carries twice a white image's energy, hence sqrt(1/2).
    scale = spectrum_scale(height, width, decay)[:, :, None] * np.float32(np.sqrt(0.5))  # [H, W // 2 + 1, 1]
    mixing = colour_mixing_matrix() if decorrelate else np.eye(channels, dtype=np.float32)
    unmixing = np.linalg.inv(mixing.astype(np.float64)).astype(np.float32)
    variable_shape = (height, width // 2 + 1, channels, 2)

    def to_image(variable):
        spectrum = jax.lax.complex(variable[..., 0], variable[..., 1]) * scale
        signal = jnp.fft.irfft2(spectrum, s=(height, width), axes=(0, 1), norm="ortho")
        return jnp.einsum("hwd,cd->hwc", signal, mixing).astype(jnp.float32)

    def from_image(z):
        signal = jnp.einsum("hwc,dc->hwd", jnp.asarray(z, jnp.float32), unmixing)
        spectrum = jnp.fft.rfft2(signal, axes=(0, 1), norm="ortho") / scale
        return jnp.stack([spectrum.real, spectrum.imag], axis=-1).astype(jnp.float32)

    return Parametrization(
        image_shape=(height, width, channels),
        init=lambda: jnp.zeros(variable_shape, jnp.float32),
        to_image=to_image,
        from_image=from_image,
    )


PARAMETRIZATIONS = ("pixels", "fourier")


def make_parametrization(name_or_parametrization, image_shape) -> Parametrization:
    """Resolves ``"pixels"``, ``"fourier"`` or a :class:`Parametrization` for ``image_shape``."""
    shape = _check_shape(image_shape)
    if isinstance(name_or_parametrization, Parametrization):
        if tuple(name_or_parametrization.image_shape) != shape:
            raise ValueError(
                f"parametrization describes images of shape {name_or_parametrization.image_shape}, "
                f"but image_shape is {shape}"
            )
        return name_or_parametrization
    if name_or_parametrization == "pixels":
        return pixel_parametrization(shape)
    if name_or_parametrization == "fourier":
        return fourier_parametrization(shape)
    raise ValueError(
        f"parametrization must be one of {PARAMETRIZATIONS} or a Parametrization, got {name_or_parametrization!r}"
    )

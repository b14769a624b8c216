"""Argument checks that name the argument and say what was expected.

Shape checks are static and always run. Value checks (finite pixels, class ids in
range) run when the values are concrete, i.e. outside ``jit``; call the library
eagerly once, or check inputs before a jitted loop, to get them.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)
#: The most samples, masks or steps of an expansion: they are counted in int32 under ``jit``.
MAX_COUNT = 2**31 - 1
#: The most integration steps: their points and weights are built on the host, 8 bytes a step.
MAX_INTEGRATION_STEPS = 2**20

def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _scalar(value):
    """A concrete 0-d array (numpy or JAX) as its Python or numpy scalar; anything else as it is."""
    if getattr(value, "shape", None) == () and hasattr(value, "dtype") and is_concrete(value):
        return np.asarray(value)[()]
    return value


def check_int(value, name: str, minimum: int, maximum: int | None = None) -> int:
    """Returns ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``, else raises ``ValueError``.

    Floats, even whole ones, and booleans are refused: ``num_samples=2.5`` or
    ``steps=True`` is a mistake, not a request. NumPy integers and concrete 0-d
    integer arrays are integers.
    """
    bounds = f">= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {bounds}, got {value}")
    return int(value)


def check_number(value, name: str, *, low: float | None = None, high: float | None = None,
                 open_low: bool = False) -> float:
    """Returns ``value`` as a ``float`` if it is a finite real number in range, else raises ``ValueError``.

    ``low`` is inclusive unless ``open_low``; ``high`` is inclusive. NumPy scalars
    and concrete 0-d arrays are numbers.
    """
    lo = "" if low is None else f"{'>' if open_low else '>='} {low}"
    hi = "" if high is None else f"<= {high}"
    wanted = " and ".join(s for s in (lo, hi) if s)
    wanted = f" {wanted}" if wanted else ""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number{wanted}, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int past float64's range
        raise ValueError(f"{name} must be a finite number{wanted}, got an integer of {len(str(value))} digits") from None
    below = low is not None and (value <= low if open_low else value < low)
    above = high is not None and value > high
    if not np.isfinite(value) or below or above:
        raise ValueError(f"{name} must be a finite number{wanted}, got {value}")
    return value


def check_key(key, what: str) -> jax.Array:
    """Returns ``key`` if it is one PRNG key (typed or raw ``uint32[2]``), else raises ``ValueError``.

    ``what`` names the function that needs it.
    """
    if key is None:
        raise ValueError(f"key must be a PRNG key for {what} (e.g. key=jax.random.key(0)), got None")
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        raise ValueError(f"key must be a PRNG key (jax.random.key(0)), got {type(key).__name__}")
    if not jnp.issubdtype(dtype, jax.dtypes.prng_key) and not (dtype == jnp.uint32 and key.shape == (2,)):
        raise ValueError(f"key must be one PRNG key (jax.random.key(0)), got dtype {dtype} and shape {key.shape}")
    if jnp.issubdtype(dtype, jax.dtypes.prng_key) and key.shape != ():
        raise ValueError(f"key must be a single PRNG key, got shape {key.shape}")
    return key


def check_images(images, name: str = "images", *, channels=(1, 3)) -> None:
    """Raises ``ValueError`` unless ``images`` is a finite ``[B, H, W, C]`` batch."""
    shape = getattr(images, "shape", None)
    if shape is None:
        raise ValueError(f"{name} must be an array of shape [B, H, W, C], got {type(images).__name__}")
    if len(shape) != 4:
        hint = " (add a batch axis: images[None])" if len(shape) == 3 else ""
        raise ValueError(f"{name} must have shape [B, H, W, C] (rank 4), got shape {tuple(shape)}{hint}")
    if channels is not None and shape[-1] not in channels:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, channels))} channels in the last axis (NHWC), "
            f"got shape {tuple(shape)}"
        )
    if min(shape) == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(shape)}")
    dtype = np.dtype(getattr(images, "dtype", np.float32))
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {dtype}")
    if is_concrete(images) and jnp.issubdtype(dtype, jnp.floating):
        values = np.asarray(images)
        if not bool(np.isfinite(values).all()):
            raise ValueError(f"{name} contains NaN or infinite pixels")
        if dtype.itemsize > 4 and values.size and float(np.abs(values).max()) > FLOAT32_MAX:
            raise ValueError(f"{name} holds values beyond float32's range (|x| > {FLOAT32_MAX:.4g}), "
                             f"which the computation, in float32, would turn into infinities")


def class_ids(classes, name: str = "classes") -> jax.Array:
    """``classes`` as an int32 array, refusing what int32 would change.

    Floats and booleans are refused (:func:`check_classes` says why), and so are
    concrete ids beyond int32's range: ``jnp.asarray`` would wrap ``2**32 + 1``
    to the valid class 1.
    """
    small = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.uint8, np.uint16)}
    if isinstance(classes, jax.Array) and np.dtype(classes.dtype) in small:
        return classes.astype(jnp.int32)  # fits: no copy to the host
    if is_concrete(classes):
        values = np.asarray(classes)
        if values.size == 0 and values.dtype == np.float64:  # an empty list: no ids, of no type
            values = values.astype(np.int32)
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"{name} must be integer class ids, got dtype {values.dtype}")
        info = np.iinfo(np.int32)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ValueError(f"{name} must be class ids in [0, K), got values from {values.min()} to {values.max()}")
        return jnp.asarray(values.astype(np.int32))
    classes = jnp.asarray(classes)
    if not jnp.issubdtype(classes.dtype, jnp.integer):
        raise ValueError(f"{name} must be integer class ids, got dtype {classes.dtype}")
    return classes.astype(jnp.int32)


def check_logits(logits, batch: int, *, floating: bool = False) -> None:
    """Refuses a model output that is not ``[batch, K]`` logits, one row per image.

    ``batch`` is the number of images the model was given; with ``floating``
    the logits must also be floating-point (a gradient or an ascent needs them).
    """
    shape = getattr(logits, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != batch:
        got = type(logits).__name__ if shape is None else tuple(shape)
        raise ValueError(
            f"logits_fn must return logits of shape [B, K], one row per image: [{batch}, K] for {batch} "
            f"image{'s' if batch != 1 else ''}, got {got}"
        )
    if floating and not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ValueError(f"logits_fn must return floating-point logits (their gradient is followed), "
                         f"got dtype {logits.dtype}")


def model_logits(logits_fn, params, images, *, floating: bool = False) -> jax.Array:
    """``logits_fn(params, images)``, refused unless it is ``[B, K]`` for the ``B`` images (:func:`check_logits`)."""
    logits = logits_fn(params, images)
    check_logits(logits, images.shape[0], floating=floating)
    return logits


def check_classes(classes, num_classes: int | None, batch: int | None, name: str = "classes") -> None:
    """Raises ``ValueError`` unless ``classes`` holds integer ids in ``[0, num_classes)``.

    ``num_classes=None`` checks the dtype and shape only; ``batch=None`` skips the shape.
    """
    if not hasattr(classes, "dtype"):
        classes = np.asarray(classes)
    shape, dtype = tuple(classes.shape), np.dtype(classes.dtype)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must be integer class ids, got dtype {dtype}")
    if batch is not None and shape not in ((), (batch,)):
        raise ValueError(f"{name} must be a scalar or have shape [{batch}] (one per image), got {shape}")
    if num_classes is not None and is_concrete(classes):
        values = np.asarray(classes)
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must be in [0, {num_classes}), got values from {values.min()} to {values.max()}"
            )


def nan_where_invalid(values: jax.Array, images: jax.Array, classes: jax.Array, num_classes: int) -> jax.Array:
    """``values`` (``[B, ...]``) with NaN in every row whose request is invalid.

    A request is invalid when its class is outside ``[0, num_classes)`` or its
    image holds a NaN or infinite pixel. Eager calls refuse such requests with a
    ``ValueError`` first; under ``jit`` the values are not known while tracing,
    so this is what keeps a jitted call from returning a plausible map (a
    one-hot of class 1000 is all zeros, so its gradient would be a zero map).
    """
    classes = jnp.broadcast_to(jnp.asarray(classes), values.shape[:1])
    finite = jnp.all(jnp.isfinite(images.reshape(images.shape[0], -1)), axis=1)
    valid = (classes >= 0) & (classes < num_classes) & finite
    return jnp.where(valid.reshape((-1,) + (1,) * (values.ndim - 1)), values, jnp.nan)

"""Argument checks that name the argument and say what was expected.

Shape checks are static and always run. Value checks (finite pixels, class ids in
range) run when the values are concrete, i.e. outside ``jit``; call the library
eagerly once, or check inputs before a jitted loop, to get them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


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
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {dtype}")
    if is_concrete(images) and np.issubdtype(dtype, np.floating):
        if not bool(np.isfinite(np.asarray(images)).all()):
            raise ValueError(f"{name} contains NaN or infinite pixels")


def check_classes(classes, num_classes: int, batch: int | None, name: str = "classes") -> None:
    """Raises ``ValueError`` unless ``classes`` holds integer ids in ``[0, num_classes)``."""
    if not hasattr(classes, "dtype"):
        classes = np.asarray(classes)
    shape, dtype = tuple(classes.shape), np.dtype(classes.dtype)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must be integer class ids, got dtype {dtype}")
    if batch is not None and shape not in ((), (batch,)):
        raise ValueError(f"{name} must be a scalar or have shape [{batch}] (one per image), got {shape}")
    if is_concrete(classes):
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

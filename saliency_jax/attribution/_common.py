"""Machinery shared by every attribution method: argument checks, the classes to
explain, expansions summed in fixed chunks, the companion form for many classes,
and the reducer to the paper's map.

Expansions (IG's interpolation steps, noisy copies, RISE masks, occluded copies)
are laid out as ``B * N`` rows, image-major: row ``r`` is expansion ``r % N`` of
image ``r // N``. The rows are processed ``batch_size`` at a time in a
``lax.scan`` whose carry is the running sum over expansions, ``[B, ...]``, so the
peak memory depends on ``batch_size`` and not on ``N``. Each chunk is one batched
model call; that a batch of unrelated rows gives each row's own result is exact
because the model's examples are independent (inference mode). The gradient-based
methods take a chunk's gradients with :func:`saliency_jax.input_gradients`, and the
layer methods (Grad-CAM, Grad-CAM++, crop Grad-CAM) with
:func:`saliency_jax.layer_gradients`; on a single CPU device both run a few rows per
forward and backward pass (:func:`saliency_jax.default_images_per_pass`).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.parallel import vary_like
from saliency_jax.types import LogitsFn

DEFAULT_BATCH_SIZE = 64
REDUCTIONS = ("max_abs", "sum_abs", "sum", "l2")
FLOAT32_MAX = float(np.finfo(np.float32).max)


# --- argument checks -------------------------------------------------------------------


def check_batch_size(batch_size) -> int | None:
    """``None`` (every row in one chunk) or an integer ``>= 1``."""
    return None if batch_size is None else _checks.check_int(batch_size, "batch_size", 1)


def check_bool(value, name: str) -> bool:
    """``value`` as a ``bool`` if it is one (numpy's ``bool_`` too), else ``ValueError``.

    A truthy string such as ``"no"`` is a mistake, not a request.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_float32(value, name: str, *, low: float | None = None, high: float | None = None,
                  open_low: bool = False) -> float:
    """``value`` as a ``float`` if it is a real number in range that float32 holds, else ``ValueError``.

    A concrete 0-d array (``jnp.float32(0)``) counts as its number. The methods
    compute in float32, where a finite float64 such as ``1e39`` becomes ``inf``
    and turns every map into NaN, so such values are refused.
    """
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) and np.shape(value) == ():
        if not _checks.is_concrete(value):
            raise ValueError(f"{name} must be a concrete number (bind it with functools.partial), got a traced array")
        if jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating):
            value = float(value)
    if isinstance(value, (np.ndarray, jax.Array, list, tuple)) and np.ndim(value) > 0:
        raise ValueError(f"{name} must be a finite number, got an array of shape {np.shape(value)}")
    if low is None and high is None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        value = float(value)
    else:
        value = _checks.check_number(value, name, low=low, high=high, open_low=open_low)
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} must be finite in float32 (|{name}| <= {FLOAT32_MAX:.4g}), got {value:g}")
    return value


def check_pair(value, name: str) -> tuple[int, int]:
    """An integer ``n >= 1`` as ``(n, n)``, or a pair of them, else ``ValueError`` naming ``name``.

    NumPy integers and concrete 0-d integer arrays count as integers, as in :func:`_checks.check_int`.
    """
    value = _checks._scalar(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        value = (value, value)
    if isinstance(value, np.ndarray) and value.shape == (2,):
        value = tuple(value.tolist())
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be an integer or a pair of integers (height, width), got {value!r}")
    return _checks.check_int(value[0], name, 1), _checks.check_int(value[1], name, 1)


def check_key(key, method: str) -> jax.Array:
    """Raises ``ValueError`` unless ``key`` is a PRNG key (typed or raw ``uint32[2]``)."""
    return _checks.check_key(key, method)


def as_images(images) -> jax.Array:
    """Checks a ``[B, H, W, C]`` batch and returns it as float32."""
    _checks.check_images(images)
    return jnp.asarray(images, jnp.float32)


def broadcast_baseline(baseline, images: jax.Array, name: str = "baseline") -> jax.Array:
    """A baseline as ``[B, H, W, C]``: a number, ``[H, W, C]``, ``[1, H, W, C]`` or ``[B, H, W, C]``."""
    if baseline is None:
        return jnp.zeros_like(images)
    shape = tuple(np.shape(baseline))
    allowed = ((), images.shape[1:], (1,) + images.shape[1:], images.shape)
    if shape not in allowed:
        raise ValueError(
            f"{name} must be a number or have shape {images.shape[1:]}, {(1,) + images.shape[1:]} or "
            f"{images.shape} (like images), got shape {shape}"
        )
    dtype = np.dtype(baseline.dtype if hasattr(baseline, "dtype") else np.asarray(baseline).dtype)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise ValueError(f"{name} must hold real numbers (a number or an array), got dtype {dtype}")
    if _checks.is_concrete(baseline):
        values = np.asarray(baseline, np.float64)
        if not bool(np.isfinite(values).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        if values.size and float(np.abs(values).max()) > FLOAT32_MAX:
            raise ValueError(
                f"{name} must be finite in float32 (|{name}| <= {FLOAT32_MAX:.4g}), got values up to "
                f"{float(np.abs(values).max()):g} in size"
            )
    return jnp.broadcast_to(jnp.asarray(baseline, jnp.float32), images.shape)


def num_classes(logits_fn: LogitsFn, params: Any, images: jax.Array) -> int:
    """``K``, from the model's output shape on one image (no computation)."""
    out = jax.eval_shape(logits_fn, params, images[:1])
    _checks.check_logits(out, 1)
    return int(out.shape[1])


def resolve_classes(logits_fn: LogitsFn, params: Any, images: jax.Array, classes) -> jax.Array:
    """int32 ``[B]``: the given classes (a scalar or ``[B]``), or each image's top-1 class if ``None``."""
    if classes is None:
        logits = _checks.model_logits(logits_fn, params, images)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    _checks.check_classes(classes, num_classes(logits_fn, params, images), images.shape[0])
    return jnp.broadcast_to(_checks.class_ids(classes), images.shape[:1])


def nan_for_invalid_requests(method: Callable) -> Callable:
    """Makes ``method`` return NaN for the images whose request is invalid, under ``jit`` too.

    Eager calls refuse a class out of range or a non-finite image with a
    ``ValueError``; under ``jit`` those values are unknown while tracing, so the
    method's output for such an image is replaced by NaN rather than returned as
    a plausible map (a one-hot of class 1000 is all zeros: its gradient would be
    a zero map).
    """

    @functools.wraps(method)
    def guarded(logits_fn: LogitsFn, params: Any, images, classes=None, **settings):
        out = method(logits_fn, params, images, classes, **settings)
        images = jnp.asarray(images)
        chosen = jnp.zeros(images.shape[:1], jnp.int32) if classes is None else classes
        return _checks.nan_where_invalid(out, images, chosen, num_classes(logits_fn, params, images))

    return guarded


# --- expansions in chunks ---------------------------------------------------------------


def trace_once(fn: Callable, *args: Any) -> tuple[Callable, Any]:
    """``fn`` traced once on the types of ``args``: ``(replay, shapes)``.

    ``replay`` takes arguments of the same types and evaluates the recorded
    operations, without running ``fn``'s Python again; ``shapes`` is its output as
    ``jax.ShapeDtypeStruct``s. A loop whose carry must be built from the output's
    shapes (``lax.scan``) would otherwise trace the model twice, once for the shapes
    and once for the body: seconds of Python for EfficientNet-Lite0 with its
    backward pass, on every compilation.
    """
    closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
    tree = jax.tree.structure(shapes)

    def replay(*new_args: Any) -> Any:
        return jax.tree.unflatten(tree, jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree.leaves(new_args)))

    return replay, shapes


def sum_over_expansions(
    row_fn: Callable[[jax.Array, jax.Array], Any],
    batch: int,
    count: int,
    batch_size: int | None,
    *,
    combine: str = "sum",
) -> Any:
    """``out[b] = sum_n row_fn(b, n)`` over ``count`` expansions of each of ``batch`` images.

    Args:
      row_fn: ``(image_index int32 [R], expansion_index int32 [R]) -> pytree of [R, ...]``,
        the contribution of each row; called on chunks of ``R <= batch_size`` rows.
      batch: ``B``.
      count: ``N``, expansions per image.
      batch_size: rows per chunk (``None``: all ``B * N`` rows at once).
      combine: ``"sum"``, or ``"max"`` for the largest over ``n`` (element-wise).

    Returns:
      The pytree of ``row_fn``'s output with ``[B, ...]`` leaves: sums (or maxima) over ``n``.
    """
    if combine not in ("sum", "max"):
        raise ValueError(f"combine must be 'sum' or 'max', got {combine!r}")
    total = batch * count
    rows = total if batch_size is None else min(batch_size, total)
    chunks = -(-total // rows)
    if chunks == 1:
        index = np.arange(total)
        out = row_fn(jnp.asarray(index // count, jnp.int32), jnp.asarray(index % count, jnp.int32))
        reduce = jnp.sum if combine == "sum" else jnp.max
        return jax.tree.map(lambda o: reduce(o.reshape((batch, count) + o.shape[1:]), axis=1), out)

    def chunk_rows(i):
        r = i * rows + jnp.arange(rows, dtype=jnp.int32)
        valid = r < total
        r = jnp.minimum(r, total - 1)  # padding rows repeat the last row and are masked out
        return r // count, r % count, valid

    b0, n0, _ = chunk_rows(jnp.int32(0))
    replay, shapes = trace_once(row_fn, b0, n0)
    # The identity of the combination: padding rows contribute it.
    identity = 0.0 if combine == "sum" else -jnp.inf

    def empty(like):
        return jnp.full(like.shape, identity, like.dtype)

    # Inside ``shard_map`` the sums vary over the mesh axes that the rows' output varies over.
    init = jax.tree.map(
        lambda s: vary_like(empty(jax.ShapeDtypeStruct((batch,) + s.shape[1:], s.dtype)), s), shapes
    )

    def body(acc, i):
        b, n, valid = chunk_rows(i)
        out = replay(b, n)

        def add(a, o):
            o = jnp.where(valid.reshape((rows,) + (1,) * (o.ndim - 1)), o, empty(o))
            return a.at[b].add(o) if combine == "sum" else a.at[b].max(o)

        return jax.tree.map(add, acc, out), None

    acc, _ = jax.lax.scan(body, init, jnp.arange(chunks, dtype=jnp.int32))
    return acc


# --- many classes of one image ------------------------------------------------------------


def for_classes(method: Callable) -> Callable:
    """The companion form of ``method``: several classes per image, one forward pass.

    ``for_classes(method)(logits_fn, params, images, classes, **settings)`` takes
    ``images`` ``[B, H, W, C]`` and int ``classes`` ``[B, N]`` (or ``[N]``, the same
    classes for every image) and returns ``method``'s output for each class,
    stacked on axis 1: ``[B, N, H, W, C]`` (pixel methods) or ``[B, N, h, w]``
    (layer methods). The method is ``vmap``-ped over the class axis, so everything
    that does not depend on the class (the forward pass, IG's interpolants, the
    occluded and masked copies, the noise) is computed once and only the
    pullbacks are batched. ``key`` is shared by the classes, so random methods
    use the same noise or masks for every class.

    Args:
      method: any attribution method of this package.

    Returns:
      A function with the method's signature and settings.
    """
    if not callable(method):
        raise ValueError(f"method must be an attribution method (a function such as gradient), got {method!r}")

    @functools.wraps(method)
    def companion(logits_fn: LogitsFn, params: Any, images, classes, **settings):
        images = as_images(images)
        if classes is None:
            raise ValueError("classes must be int [B, N] or [N] (the classes to explain), got None")
        if not hasattr(classes, "dtype"):
            classes = np.asarray(classes)
        batch = images.shape[0]
        if classes.ndim == 1:
            classes = jnp.broadcast_to(_checks.class_ids(classes)[None, :], (batch, classes.shape[0]))
        if classes.ndim != 2 or classes.shape[0] != batch or classes.shape[1] == 0:
            raise ValueError(
                f"classes must have shape [B, N] = [{batch}, N] or [N] with N >= 1, got shape {tuple(classes.shape)}"
            )
        _checks.check_classes(classes.reshape(-1), num_classes(logits_fn, params, images), None)
        classes = _checks.class_ids(classes)
        return jax.vmap(lambda c: method(logits_fn, params, images, c, **settings), in_axes=1, out_axes=1)(classes)

    companion.__doc__ = f"Companion form (classes [B, N]) of {method.__name__}; see for_classes."
    return companion


# --- the paper's map ---------------------------------------------------------------------


MAX_MAP_PIXELS = 2**28  # pixels of one map resized by attribution_map: 1 GiB of float32


def attribution_map(attributions: jax.Array, *, reduction: str = "max_abs", size: int | tuple[int, int] | None = None):
    """Attributions as one map per image, ``[B, H, W]``.

    Pixel attributions ``[B, H, W, C]`` are reduced over channels; with the
    default ``"max_abs"`` this is the paper's map ``max_c |w|`` (§3.1), equal to
    :func:`saliency_jax.saliency_from_gradients`. Layer maps ``[B, h, w]``
    (Grad-CAM) are returned as they are, or resized.

    Args:
      attributions: ``[B, H, W, C]`` or ``[B, h, w]``.
      reduction: over channels: ``"max_abs"`` (paper), ``"sum_abs"``, ``"sum"``
        (signed, e.g. for IG's completeness) or ``"l2"``.
      size: ``(H, W)`` (or one int for a square) to resize the maps to, bilinearly
        with half-pixel centres (e.g. a Grad-CAM map to the input resolution);
        ``None`` keeps their size. At most :data:`MAX_MAP_PIXELS` pixels per map.

    Returns:
      float32 ``[B, H, W]``, reduced in float32 (float64 under x64) whatever the
      attributions' precision, so float16 squares and sums do not overflow.

    Raises:
      ValueError: for an unknown ``reduction``, attributions of another rank or
        not of real numbers, or a bad or too large ``size``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if size is not None:
        height, width = check_pair(size, "size")
        if height * width > MAX_MAP_PIXELS:
            raise ValueError(f"size must give at most {MAX_MAP_PIXELS:,} pixels per map (2**28), got {height} x "
                             f"{width}")
    attributions = jnp.asarray(attributions)
    if not (jnp.issubdtype(attributions.dtype, jnp.floating) or jnp.issubdtype(attributions.dtype, jnp.integer)
            or attributions.dtype == jnp.bool_):
        raise ValueError(f"attributions must be real numbers, got dtype {attributions.dtype}")
    if attributions.dtype != jnp.float64:
        attributions = attributions.astype(jnp.float32)
    if attributions.ndim == 4:
        if reduction == "max_abs":
            maps = jnp.max(jnp.abs(attributions), axis=-1)
        elif reduction == "sum_abs":
            maps = jnp.sum(jnp.abs(attributions), axis=-1)
        elif reduction == "sum":
            maps = jnp.sum(attributions, axis=-1)
        else:
            maps = jnp.sqrt(jnp.sum(jnp.square(attributions), axis=-1))
    elif attributions.ndim == 3:
        maps = attributions
    else:
        raise ValueError(f"attributions must have shape [B, H, W, C] or [B, h, w], got shape {attributions.shape}")
    if size is not None:
        if (height, width) != maps.shape[1:]:
            maps = jax.image.resize(maps, (maps.shape[0], height, width), method="bilinear")
    return maps.astype(jnp.float32)

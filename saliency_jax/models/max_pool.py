"""Max pooling whose backward pass is fast on CPU.

XLA's CPU backend lowers the backward pass of ``lax.reduce_window`` max pooling
(``select_and_scatter``) to index tensors the size of the input (four ``iota`` arrays), a
reduce-window that carries the indices and a scatter: in a training step of the scaled ConvNet
(batch 32, 64 x 64 images) those took about 17 of its 27.5 ms. A max pool is only the maximum over
``kh * kw`` strided slices, which XLA fuses into one loop, so on CPU this module writes it that
way, with a ``jax.custom_vjp`` whose backward pass is made of the same kind of loops: each
window's cotangent goes to the first tap, in row-major window order, that holds the window's
maximum (the element ``select_and_scatter`` picks, so ties are broken the same way), and each
tap's share is put back in place by a strided ``pad`` and summed.

On GPU and TPU ``lax.reduce_window`` is fast and is used unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from saliency_jax.models.depthwise import _as_int, resolve_by_backend

__all__ = ["IMPLS", "max_pool2d"]

IMPLS = ("auto", "strided", "xla")


def max_pool2d(
    x: jax.Array,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
    *,
    impl: str = "auto",
) -> jax.Array:
    """2-D max pooling of ``[B, H, W, C]`` images, as ``flax.linen.max_pool`` computes it.

    Equals ``flax.linen.max_pool(x, window, strides, padding)`` exactly, forward and backward
    (the gradient goes to the first maximum of each window in row-major order, as XLA's
    ``select_and_scatter`` sends it), and is jit-, vmap- and grad-compatible. Forward-mode
    differentiation (``jax.jvp``) is available only with ``impl="xla"``.

    Args:
      x: float array of shape ``[B, H, W, C]``.
      window: the window's rows and columns, two positive ints (or one int for both).
      strides: the row and column strides, two positive ints (or one for both); default 1.
      padding: ``"VALID"``, ``"SAME"`` or explicit ``((top, bottom), (left, right))``
        non-negative ints; padded positions never win a window.
      impl: ``"strided"`` (strided slices with a custom VJP; fast on CPU), ``"xla"``
        (``lax.reduce_window``) or ``"auto"`` (``"strided"`` when JAX's default backend is the
        CPU, else ``"xla"``).

    Returns:
      The pooled array, ``[B, H', W', C]``.

    Raises:
      ValueError: on a bad ``x`` rank, ``window``, ``strides``, ``padding`` or ``impl``, or a
        window larger than the padded image.
    """
    impl = resolve_by_backend(impl, IMPLS, "strided")
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape [B, H, W, C], got shape {tuple(x.shape)}")
    window = _pair(window, "window")
    strides = (1, 1) if strides is None else _pair(strides, "strides")
    pads = _pads(padding, x.shape[1:3], window, strides)
    for axis, (n, (lo, hi), k) in enumerate(zip(x.shape[1:3], pads, window)):
        if n + lo + hi < k:
            raise ValueError(
                f"the window of {k} is larger than the padded image ({n + lo + hi}) along axis {axis + 1}"
            )
    if impl == "xla":
        dims, steps = (1, *window, 1), (1, *strides, 1)
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, steps, ((0, 0), *pads, (0, 0)))
    if any(lo or hi for lo, hi in pads):
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    return _strided_max_pool(x, window, strides)


def _pair(value, name: str) -> tuple[int, int]:
    """``value`` as two positive Python ints (NumPy integers too); floats and bools are refused."""
    try:
        pair = (_as_int(value),) * 2 if _as_int(value) is not None else tuple(_as_int(v) for v in value)
    except TypeError:  # not iterable: a float, None, ...
        pair = ()
    if len(pair) != 2 or any(v is None or v < 1 for v in pair):
        raise ValueError(f"{name} must be one positive int or two; got {value!r}")
    return pair


def _pads(padding, hw, window, strides) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, str):
        if padding.upper() not in ("VALID", "SAME"):
            raise ValueError(f"padding must be 'VALID', 'SAME' or ((top, bottom), (left, right)); got {padding!r}")
        return tuple(lax.padtype_to_pads(hw, window, strides, padding.upper()))
    try:
        pads = tuple(tuple(_as_int(v) for v in p) for p in padding)
    except TypeError:  # not pairs
        pads = ()
    if len(pads) != 2 or not all(len(p) == 2 and all(v is not None and v >= 0 for v in p) for p in pads):
        raise ValueError(f"padding must be 'VALID', 'SAME' or ((top, bottom), (left, right)) ints >= 0; got {padding!r}")
    return pads


def _taps(x, window, strides):
    """Each window tap's strided slice of ``x``, in row-major window order, all ``[B, H', W', C]``."""
    (kh, kw), (sh, sw) = window, strides
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    return [
        lax.slice(x, (0, a, b, 0), (x.shape[0], a + sh * (ho - 1) + 1, b + sw * (wo - 1) + 1, x.shape[3]),
                  (1, sh, sw, 1))
        for a in range(kh) for b in range(kw)
    ]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _strided_max_pool(x, window, strides):
    return functools.reduce(lax.max, _taps(x, window, strides))


def _strided_max_pool_fwd(x, window, strides):
    out = _strided_max_pool(x, window, strides)
    return out, (x, out)


def _strided_max_pool_bwd(window, strides, residuals, g):
    x, out = residuals
    (_, kw), (sh, sw) = window, strides
    ho, wo = out.shape[1:3]
    free = jnp.ones(out.shape, bool)  # windows whose maximum no earlier tap has taken
    grad = jnp.zeros_like(x)
    for t, tap in enumerate(_taps(x, window, strides)):
        hit = free & (tap == out)
        free = free & ~hit
        share = jnp.where(hit, g, jnp.zeros_like(g))
        a, b = divmod(t, kw)
        # Place the share at rows a, a + sh, ... and columns b, b + sw, ... of the input.
        config = ((0, 0, 0), (a, x.shape[1] - a - sh * (ho - 1) - 1, sh - 1),
                  (b, x.shape[2] - b - sw * (wo - 1) - 1, sw - 1), (0, 0, 0))
        grad = grad + lax.pad(share, jnp.zeros((), share.dtype), config)
    return (grad,)


_strided_max_pool.defvjp(_strided_max_pool_fwd, _strided_max_pool_bwd)

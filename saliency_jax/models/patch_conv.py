"""A dense 2-D convolution with few input channels, as one matrix product over image patches.

XLA's CPU backend computes EfficientNet-Lite's stem (a 3x3, stride-2 convolution from the three
colour channels to 32) about half as fast as the same arithmetic written as a matrix product: with
three input channels each output pixel's dot product is only 27 long. :func:`patch_conv2d` gathers
each output pixel's ``kh * kw * C`` inputs with ``kh * kw`` strided slices, joins them on the
channel axis and multiplies by the kernel reshaped to ``[kh * kw * C, F]``. Its gradients are
JAX's own: the input gradient is a matrix product with the transposed kernel followed by the
slices' transposes (strided pads, summed), which on CPU is also faster than the transposed
convolution. On GPU and TPU the convolution is used unchanged.

The patches take ``kh * kw / (sh * sw)`` times the input's memory (2.25 times for a 3x3 kernel
with stride 2), which is why this path is meant for stems on a few colour channels, not for the
wide layers inside a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

from saliency_jax.models.depthwise import check_strides, check_window, resolve_by_backend

__all__ = ["IMPLS", "patch_conv2d", "resolve_patch_impl"]

PatchImpl = Literal["auto", "patches", "xla"]

#: The values of ``impl``.
IMPLS = ("auto", "patches", "xla")
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def resolve_patch_impl(impl: PatchImpl = "auto") -> str:
    """The implementation ``patch_conv2d`` will use: ``"patches"`` or ``"xla"``.

    ``"auto"`` is ``"patches"`` when JAX's default backend is the CPU, else ``"xla"``; any value
    other than ``"auto"``, ``"patches"`` or ``"xla"`` raises ``ValueError``.
    """
    return resolve_by_backend(impl, IMPLS, "patches")


def patch_conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = (1, 1),
    padding: str | Sequence[tuple[int, int]] = "SAME",
    *,
    impl: PatchImpl = "auto",
) -> jax.Array:
    """Dense 2-D convolution without bias, NHWC, as ``lax.conv_general_dilated`` computes it.

    Equals ``lax.conv_general_dilated(x, kernel, strides, padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))`` up to float rounding, and is jit-, vmap- and
    grad-compatible (any order, forward or reverse mode).

    Args:
      x: input images, shape ``[B, H, W, C]``.
      kernel: filters in Flax's HWIO layout (as ``nn.Conv`` stores them), shape ``[kh, kw, C, F]``.
      strides: the row and column strides, two positive ints (or one int for both).
      padding: ``"SAME"`` (output size ``ceil(H / stride)``, the odd pixel of padding at the
        end), ``"VALID"`` (no padding), or explicit ``((top, bottom), (left, right))``
        non-negative ints.
      impl: ``"patches"`` (gathered patches and one matrix product; fast on CPU for few input
        channels), ``"xla"`` (``lax.conv_general_dilated``) or ``"auto"`` (``"patches"`` when
        JAX's default backend is the CPU, else ``"xla"``).

    Returns:
      The convolution, shape ``[B, H_out, W_out, F]``, in the promoted dtype of ``x`` and
      ``kernel``.

    Raises:
      ValueError: if a shape, the strides, the padding or ``impl`` is invalid, or if the output
        would be empty.
    """
    impl = resolve_patch_impl(impl)
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    if x.ndim != 4:
        raise ValueError(f"x must have shape [B, H, W, C]; got shape {x.shape}.")
    channels = x.shape[3]
    if kernel.ndim != 4 or kernel.shape[2] != channels:
        raise ValueError(
            f"kernel must have shape [kh, kw, C, F] with C = {channels} (the channels of x); "
            f"got shape {kernel.shape}."
        )
    if min(kernel.shape) < 1:
        raise ValueError(f"kernel must have a positive size on every axis; got shape {kernel.shape}.")
    strides = check_strides(strides)
    pads, out_hw = check_window(padding, x.shape[1:3], kernel.shape[:2], strides)
    dtype = jnp.result_type(x, kernel)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if impl == "xla":
        return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_DIMENSION_NUMBERS)
    if any(p for pair in pads for p in pair):
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    kh, kw = kernel.shape[:2]
    batch = x.shape[0]
    # Tap (i, j) of output (o, p) reads padded input (s0 * o + i, s1 * p + j); the taps are joined
    # in (i, j, c) order, the order of the kernel's rows once it is reshaped to [kh * kw * C, F].
    taps = [
        lax.slice(
            x,
            (0, i, j, 0),
            (batch, i + strides[0] * (out_hw[0] - 1) + 1, j + strides[1] * (out_hw[1] - 1) + 1, channels),
            (1, strides[0], strides[1], 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=3)
    weights = kernel.reshape(kh * kw * channels, kernel.shape[3])
    return lax.dot_general(patches, weights, (((3,), (0,)), ((), ())))

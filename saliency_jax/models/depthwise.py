"""Depthwise 2-D convolution that is fast on CPU in both directions.

XLA's CPU backend lowers a grouped convolution (``feature_group_count`` equal to the number of
channels) to a slow generic loop: on EfficientNet-Lite0 the depthwise layers dominate the forward
pass and, even more, the backward pass that a saliency map needs. A depthwise convolution is only
``kh * kw`` shifted, per-channel multiplies, which XLA fuses into one vectorised loop, so on CPU
this module writes it that way, with a ``jax.custom_vjp`` whose backward pass is made of the same
kind of shifted sums:

* the input gradient is a stride-1 depthwise correlation of the output cotangent with the
  flipped kernel; for stride ``s`` it splits into ``s * s`` phases, each a stride-1 correlation
  with a sub-sampled kernel, interleaved at the end, so no work is spent on the zeros that a
  dilated cotangent would hold;
* the kernel gradient is, per tap, a sum over the batch and the image of a shifted slice of the
  input times the cotangent.

The backward pass calls the same differentiable operation, so gradients of gradients stay on the
fast path too. On GPU and TPU the grouped convolution is fast and is used unchanged.

Large inputs are never padded: each output is split into an interior, where every tap reads
inside the image and the sum is made of plain (strided) slices, and border strips; the pieces are
concatenated into the output. (At batch 16, copying a padded 112x112x96 input took several times
longer than the whole stride-2 convolution.) A strip one output wide zeroes its out-of-image taps
one by one; a wider strip (two rows or columns, from a 5x5 kernel at stride 1) is summed over a
zero-padded copy of the few input rows or columns it reads, which made the batch-16 28x28x240
and 14x14x672 convolutions about three times faster than zeroing each tap. Small inputs, up to
``pad_below_bytes`` (by default :data:`PAD_BELOW_BYTES` forward and :data:`GRAD_PAD_BELOW_BYTES`
for the cotangents of the backward pass), are padded once and summed in one region
instead: the copy costs little there, and the interior and four strips are separate loops for
XLA's CPU runtime to schedule, forward and backward.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from saliency_jax.parallel import vary_like

__all__ = ["GRAD_PAD_BELOW_BYTES", "IMPLS", "PAD_BELOW_BYTES", "check_impl", "depthwise_conv2d", "resolve_impl"]

Impl = Literal["auto", "shifted", "xla"]
Padding = str | Sequence[tuple[int, int]]

#: The values of ``impl``.
IMPLS = ("auto", "shifted", "xla")

#: The shifted path pads an input of at most this many bytes (batch included) and sums it in one
#: region; a larger input is split into an interior and border strips. 256 KiB pads only the
#: 7x7x1152 input of EfficientNet-Lite0 at batch 1: with the wide strips summed over padded copies,
#: its batch-1 saliency map took 0.87-0.96 of the time it took with a 2 MiB threshold (every input
#: but the 112x112x96 one padded), its forward pass alone 1.04.
PAD_BELOW_BYTES = 256 * 2**10

#: The same threshold for the output cotangent of the backward pass (the input gradient). 2 MiB
#: pads every cotangent of EfficientNet-Lite0 at batch 1: its batch-1 saliency map then took
#: 0.94-0.95 of the time it took with 256 KiB in both directions (1 MiB: 0.97).
GRAD_PAD_BELOW_BYTES = 2 * 2**20
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def resolve_impl(impl: Impl = "auto") -> str:
    """Returns the implementation ``depthwise_conv2d`` will use: ``"shifted"`` or ``"xla"``.

    Args:
      impl: ``"shifted"`` (shifted sums, fast on CPU), ``"xla"`` (XLA's grouped convolution, fast
        on GPU and TPU) or ``"auto"``: ``"shifted"`` when JAX's default backend is the CPU, else
        ``"xla"``.

    Returns:
      ``"shifted"`` or ``"xla"``.

    Raises:
      ValueError: if ``impl`` is not one of ``"auto"``, ``"shifted"``, ``"xla"``.
    """
    return resolve_by_backend(impl, IMPLS, "shifted")


def check_impl(impl, impls: tuple[str, ...], name: str = "impl") -> str:
    """``impl`` if it is one of ``impls``, else ``ValueError`` naming the argument ``name``.

    Models check their ``*_impl`` options with it when they are built, so a misspelt one
    fails there, by its own name, rather than at the first call.
    """
    if not isinstance(impl, str) or impl not in impls:
        raise ValueError(f"{name} must be one of {impls}; got {impl!r}.")
    return impl


def resolve_by_backend(impl: str, impls: tuple[str, ...], cpu_impl: str) -> str:
    """``impl`` checked against ``impls``; ``"auto"`` is ``cpu_impl`` on JAX's CPU backend, else ``"xla"``."""
    check_impl(impl, impls)
    if impl == "auto":
        return cpu_impl if jax.default_backend() == "cpu" else "xla"
    return impl


def depthwise_conv2d(
    x: jax.Array,
    kernel: jax.Array,
    strides: int | Sequence[int] = (1, 1),
    padding: Padding = "SAME",
    *,
    impl: Impl = "auto",
    pad_below_bytes: int | None = None,
) -> jax.Array:
    """Depthwise 2-D convolution (channel multiplier 1), as a grouped convolution computes it.

    Equals ``lax.conv_general_dilated(x, kernel, strides, padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=C)`` up to float rounding
    (the sums are taken in another order), and is jit-, vmap- and grad-compatible, with respect
    to ``x`` and ``kernel``. Forward-mode differentiation (``jax.jvp``) is available only with
    ``impl="xla"``, since the fast path defines its reverse-mode rule.

    Args:
      x: input images, shape ``[B, H, W, C]``.
      kernel: per-channel filters in Flax's HWIO layout for ``nn.Conv(...,
        feature_group_count=C)``, shape ``[kh, kw, 1, C]``.
      strides: the row and column strides, two positive ints (or one int for both).
      padding: ``"SAME"`` (TensorFlow's SAME, as in ``lax``: output size ``ceil(H / stride)``,
        the odd pixel of padding at the end), ``"VALID"`` (no padding), or explicit
        ``((top, bottom), (left, right))`` non-negative ints.
      impl: ``"shifted"`` (shifted sums with a custom VJP; fast on CPU), ``"xla"``
        (``lax.conv_general_dilated``; fast on GPU/TPU) or ``"auto"`` (``"shifted"`` when JAX's
        default backend is the CPU, else ``"xla"``).
      pad_below_bytes: the shifted path only: inputs (and, backward, output cotangents) of at most
        this many bytes are padded and summed in one region, larger ones split into an interior
        and border strips; the results are the same up to float rounding. ``None``:
        :data:`PAD_BELOW_BYTES` forward and :data:`GRAD_PAD_BELOW_BYTES` backward.

    Returns:
      The convolution, shape ``[B, H_out, W_out, C]``, in the promoted dtype of ``x`` and
      ``kernel``.

    Raises:
      ValueError: if a shape, the strides, the padding or ``impl`` is invalid, or if the output
        would be empty.
    """
    impl = resolve_impl(impl)
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    if x.ndim != 4:
        raise ValueError(f"x must have shape [B, H, W, C]; got shape {x.shape}.")
    channels = x.shape[3]
    if kernel.ndim != 4 or kernel.shape[2] != 1 or kernel.shape[3] != channels:
        raise ValueError(
            f"kernel must have shape [kh, kw, 1, C] with C = {channels} (the channels of x); "
            f"got shape {kernel.shape}."
        )
    if kernel.shape[0] < 1 or kernel.shape[1] < 1:
        raise ValueError(f"kernel must have positive spatial size; got shape {kernel.shape}.")
    strides = check_strides(strides)
    if pad_below_bytes is None:
        pads_below = (PAD_BELOW_BYTES, GRAD_PAD_BELOW_BYTES)
    elif _as_int(pad_below_bytes) is None or pad_below_bytes < 0:
        raise ValueError(f"pad_below_bytes must be a non-negative int or None; got {pad_below_bytes!r}.")
    else:
        pads_below = (int(pad_below_bytes),) * 2
    pads, out_hw = check_window(padding, x.shape[1:3], kernel.shape[:2], strides)
    dtype = jnp.promote_types(x.dtype, kernel.dtype)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if impl == "xla":
        return lax.conv_general_dilated(
            x,
            kernel,
            window_strides=strides,
            padding=pads,
            dimension_numbers=_DIMENSION_NUMBERS,
            feature_group_count=channels,
        )
    lo = (pads[0][0], pads[1][0])
    # Inside ``shard_map`` a replicated kernel meets a sharded input: the custom VJP must return
    # each cotangent with its input's type, so both vary over the same axes first, and the cast's
    # own transpose sums the kernel's gradient over the shards.
    x, kernel = vary_like(x, kernel), vary_like(kernel, x)
    return _depthwise(x, kernel[:, :, 0, :], strides, lo, out_hw, pads_below)


def _as_int(value) -> int | None:
    """``value`` as a Python int if it is an integer (not a bool), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_strides(strides) -> tuple[int, int]:
    """``strides`` as two positive ints (one int stands for both); ``ValueError`` otherwise."""
    if _as_int(strides) is not None:
        strides = (strides, strides)
    try:
        values = tuple(_as_int(s) for s in strides)
    except TypeError:
        values = ()
    if len(values) != 2 or any(v is None or v < 1 for v in values):
        raise ValueError(f"strides must be two positive ints (or one for both); got {strides!r}.")
    return values


def check_padding(padding, in_hw, kernel_hw, strides) -> tuple[tuple[int, int], ...]:
    """``padding`` (``"SAME"``, ``"VALID"`` or explicit pairs) as ``((top, bottom), (left, right))``."""
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(
                f'padding must be "SAME", "VALID" or ((top, bottom), (left, right)); got {padding!r}.'
            )
        return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, kernel_hw, strides, padding))
    try:
        pads = tuple(tuple(_as_int(v) for v in p) for p in padding)
    except TypeError:
        pads = ()
    if len(pads) != 2 or any(len(p) != 2 or any(v is None or v < 0 for v in p) for p in pads):
        raise ValueError(
            'padding must be "SAME", "VALID" or ((top, bottom), (left, right)) non-negative ints; '
            f"got {padding!r}."
        )
    return pads


def check_window(padding, in_hw, kernel_hw, strides) -> tuple[tuple[tuple[int, int], ...], tuple[int, int]]:
    """The explicit padding and the output's spatial size; ``ValueError`` if the output is empty."""
    pads = check_padding(padding, in_hw, kernel_hw, strides)
    out_hw = tuple((n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in zip(in_hw, pads, kernel_hw, strides))
    if min(out_hw) < 1:
        raise ValueError(
            f"the output would be empty: input {tuple(in_hw)}, kernel {tuple(kernel_hw)}, "
            f"strides {strides}, padding {pads}."
        )
    return pads, out_hw


# ---------------------------------------------------------------------------------------------
# The shifted-sum formulation. Throughout, ``kernel`` is [kh, kw, C] and ``lo`` the padding
# before the first row and column, and an output of size ``out_hw`` is computed as
#   y[b, o, p, c] = sum_{i, j} x[b, s0*o + i - lo0, s1*p + j - lo1, c] * kernel[i, j, c],
# where x reads as zero outside the image. The padding after the image is implied by out_hw.
# ---------------------------------------------------------------------------------------------


def _tap_range(n_out: int, stride: int, tap: int, lo: int, n_in: int) -> tuple[int, int]:
    """Outputs ``o`` in ``[first, last)`` whose tap reads inside the input (``0 <= s*o+tap-lo < n``)."""
    first = max(0, -((tap - lo) // stride))
    last = min(n_out, (n_in - 1 + lo - tap) // stride + 1)
    return first, max(first, last)


def _tap_slice(x, tap, rows, cols, strides, lo):
    """The input that tap ``(i, j)`` reads for outputs ``rows x cols`` (all inside the image)."""
    (i, j), (r0, r1), (c0, c1) = tap, rows, cols
    start = (strides[0] * r0 + i - lo[0], strides[1] * c0 + j - lo[1])
    stop = (strides[0] * (r1 - 1) + i - lo[0] + 1, strides[1] * (c1 - 1) + j - lo[1] + 1)
    return lax.slice(
        x,
        (0, start[0], start[1], 0),
        (x.shape[0], stop[0], stop[1], x.shape[3]),
        (1, strides[0], strides[1], 1),
    )


def _kernel_taps(kernel):
    """The taps of a ``[kh, kw, C]`` kernel, each ``[1, 1, C]``, sliced once for every region."""
    return tuple(
        tuple(lax.slice(kernel, (i, j, 0), (i + 1, j + 1, kernel.shape[2])) for j in range(kernel.shape[1]))
        for i in range(kernel.shape[0])
    )


def _region_sum(x, taps, strides, lo, out_hw, rows, cols):
    """The outputs in ``rows x cols`` (half-open ranges), zeroing taps that fall off the image.

    ``taps``: the kernel as :func:`_kernel_taps` gives it.
    """
    (r0, r1), (c0, c1) = rows, cols
    acc = None
    for i in range(len(taps)):
        a0, a1 = _tap_range(out_hw[0], strides[0], i, lo[0], x.shape[1])
        a0, a1 = max(a0, r0), min(a1, r1)
        for j in range(len(taps[0])):
            b0, b1 = _tap_range(out_hw[1], strides[1], j, lo[1], x.shape[2])
            b0, b1 = max(b0, c0), min(b1, c1)
            if a1 <= a0 or b1 <= b0:
                continue
            # lax rather than jax.numpy: the same operations, traced several times faster (a
            # Lite0 map traces thousands of these).
            term = _tap_slice(x, (i, j), (a0, a1), (b0, b1), strides, lo)
            term = lax.mul(term, lax.broadcast_in_dim(taps[i][j], term.shape, (0, 1, 3)))
            if (a0, a1, b0, b1) != (r0, r1, c0, c1):
                zero = lax.full((), 0, term.dtype)
                term = lax.pad(term, zero, ((0, 0, 0), (a0 - r0, r1 - a1, 0), (b0 - c0, c1 - b1, 0), (0, 0, 0)))
            acc = term if acc is None else lax.add(acc, term)
    if acc is None:
        acc = jnp.zeros((x.shape[0], r1 - r0, c1 - c0, x.shape[3]), x.dtype)
    return acc


def _strip_sum(x, taps, strides, lo, rows, cols):
    """The outputs in ``rows x cols`` from a zero-padded copy of the input window they read.

    For the thin border strips: padding the few rows or columns they read costs little, and
    every tap then reads a plain slice of the copy, where zeroing the off-image taps of each
    tap separately made the strips of a 5x5 kernel several times slower than its interior.
    """
    window, pads = [], []
    for axis, (o0, o1) in enumerate((rows, cols)):
        first = strides[axis] * o0 - lo[axis]  # the first and one past the last input read
        last = strides[axis] * (o1 - 1) - lo[axis] + (len(taps), len(taps[0]))[axis]
        start, stop = min(max(first, 0), x.shape[1 + axis]), max(min(last, x.shape[1 + axis]), 0)
        if stop <= start:  # the strip reads only padding
            return jnp.zeros((x.shape[0], rows[1] - rows[0], cols[1] - cols[0], x.shape[3]), x.dtype)
        window.append((start, stop))
        pads.append((start - first, last - stop))
    (a0, a1), (b0, b1) = window
    padded = jnp.pad(x[:, a0:a1, b0:b1, :], ((0, 0), pads[0], pads[1], (0, 0)))
    size = (rows[1] - rows[0], cols[1] - cols[0])
    return _region_sum(padded, taps, strides, (0, 0), size, (0, size[0]), (0, size[1]))


def _tap_sum(x, kernel, strides, lo, out_hw, pad_below_bytes: int):
    """The depthwise correlation ``y`` defined above, shape ``[B, *out_hw, C]``."""
    taps = _kernel_taps(kernel)
    if x.size * x.dtype.itemsize <= pad_below_bytes:
        # Padded once: every tap of every output then reads inside the padded input.
        hi = [
            max(0, (n_out - 1) * s + k - before - n_in)
            for n_out, s, k, before, n_in in zip(out_hw, strides, kernel.shape[:2], lo, x.shape[1:3])
        ]
        padded = jnp.pad(x, ((0, 0), (lo[0], hi[0]), (lo[1], hi[1]), (0, 0)))
        return _region_sum(padded, taps, strides, (0, 0), out_hw, (0, out_hw[0]), (0, out_hw[1]))
    ranges = []
    for axis in range(2):
        spans = [
            _tap_range(out_hw[axis], strides[axis], t, lo[axis], x.shape[1 + axis])
            for t in range(kernel.shape[axis])
        ]
        ranges.append((max(t[0] for t in spans), min(t[1] for t in spans)))
    (r0, r1), (c0, c1) = ranges
    full_rows, full_cols = (0, out_hw[0]), (0, out_hw[1])
    if r1 <= r0 or c1 <= c0:  # No output sees the whole kernel inside the image.
        return _region_sum(x, taps, strides, lo, out_hw, full_rows, full_cols)

    def region(rows, cols):
        if (rows, cols) == ((r0, r1), (c0, c1)) or min(rows[1] - rows[0], cols[1] - cols[0]) == 1:
            return _region_sum(x, taps, strides, lo, out_hw, rows, cols)
        return _strip_sum(x, taps, strides, lo, rows, cols)

    def joined(pieces, axis):
        return jnp.concatenate(pieces, axis=axis) if len(pieces) > 1 else pieces[0]

    # The interior and the strips are concatenated, not written into a padded interior: XLA then
    # emits one loop that writes every output once, where the four in-place updates of a padded
    # interior cost a pass over the output each (batch-16 saliency map 0.87-0.94 of the time).
    middle = joined(
        [region((r0, r1), cols) for cols in ((0, c0), (c0, c1), (c1, out_hw[1])) if cols[1] > cols[0]], 2
    )
    bands = [
        middle if rows == (r0, r1) else region(rows, full_cols)
        for rows in ((0, r0), (r0, r1), (r1, out_hw[0]))
        if rows[1] > rows[0]
    ]
    return joined(bands, 1)


def _depthwise(x, kernel, strides, lo, out_hw, pads_below):
    """The shifted-sums correlation with its custom VJP.

    ``pads_below``: (this direction's ``pad_below_bytes``, the transposed direction's).
    """
    return _shifted(x, kernel, (strides, lo, out_hw, pads_below, x.shape[1:3], kernel.shape[:2]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _shifted(x, kernel, geometry):
    strides, lo, out_hw, pads_below, _, _ = geometry
    return _tap_sum(x, kernel, strides, lo, out_hw, pads_below[0])


def _shifted_fwd(x, kernel, geometry):
    # With symbolic zeros, each input says whether it is differentiated. A saliency map
    # differentiates the input only: the kernel's gradient is then neither traced nor lowered
    # (it was a fifth of the tracing of Lite0's map), and the input is not kept for it. The
    # residuals hold only what the wanted gradients read, ``None`` in place of the rest.
    y = _shifted(x.value, kernel.value, geometry)
    return y, (x.value if kernel.perturbed else None, kernel.value if x.perturbed else None)


def _shifted_bwd(geometry, residuals, g):
    strides, lo, _, pads_below, in_hw, kernel_hw = geometry
    x, kernel = residuals
    if isinstance(g, SymbolicZero):
        return None, None
    dx = None if kernel is None else _input_grad(g, kernel, strides, lo, in_hw, pads_below[::-1])
    dkernel = None if x is None else _kernel_grad(x, g, kernel_hw, strides, lo)
    return dx, dkernel


_shifted.defvjp(_shifted_fwd, _shifted_bwd, symbolic_zeros=True)


def _phase(stride, lo, ksize, r):
    """For input positions ``s*m + r``: first tap, number of taps and padding of the phase.

    Input position ``s*m + r`` receives ``g[m + q - t] * kernel[e + s*t]`` for
    ``t < n_taps``, with ``e = (r + lo) % s`` and ``q = (r + lo) // s``; reversing ``t`` makes it
    a stride-1 correlation of ``g`` with ``kernel[e::s][::-1]`` and padding ``n_taps - 1 - q``.
    """
    first, q = (r + lo) % stride, (r + lo) // stride
    n_taps = len(range(first, ksize, stride))
    return first, n_taps, n_taps - 1 - q


def _input_grad(g, kernel, strides, lo, in_hw, pads_below):
    """The gradient with respect to the input, ``[B, *in_hw, C]``, from the cotangent ``g``."""
    # Every phase is computed on ceil(n / s) positions, then the phases are interleaved and the
    # positions past the image cut off.
    phase_hw = tuple(-(-n // s) for n, s in zip(in_hw, strides))
    rows = []
    for r0 in range(strides[0]):
        e0, t0, lo0 = _phase(strides[0], lo[0], kernel.shape[0], r0)
        row = []
        for r1 in range(strides[1]):
            e1, t1, lo1 = _phase(strides[1], lo[1], kernel.shape[1], r1)
            if t0 == 0 or t1 == 0:
                row.append(jnp.zeros((g.shape[0], *phase_hw, g.shape[3]), g.dtype))
                continue
            sub_kernel = kernel[e0 :: strides[0], e1 :: strides[1]][::-1, ::-1]
            row.append(_depthwise(g, sub_kernel, (1, 1), (lo0, lo1), phase_hw, pads_below))
        rows.append(row)
    if strides == (1, 1):
        return rows[0][0]
    interleaved = jnp.stack([jnp.stack(row, axis=3) for row in rows], axis=2)
    batch, channels = g.shape[0], g.shape[3]
    interleaved = interleaved.reshape(
        batch, phase_hw[0] * strides[0], phase_hw[1] * strides[1], channels
    )
    return interleaved[:, : in_hw[0], : in_hw[1], :]


def _kernel_grad(x, g, kernel_hw, strides, lo):
    """The gradient with respect to the ``[kh, kw, C]`` kernel: per tap, sum of shifted ``x * g``."""
    # Per tap, the products are summed over the batch in a loop, then over the image. Reducing a
    # shifted slice directly makes XLA's CPU backend copy every slice before reducing it, which
    # at batch 16 was 15-30 times slower than this.
    out_hw = g.shape[1:3]
    windows = []  # (tap, output rows, output columns) of each tap, or None when it sees no input.
    for i in range(kernel_hw[0]):
        rows = _tap_range(out_hw[0], strides[0], i, lo[0], x.shape[1])
        for j in range(kernel_hw[1]):
            cols = _tap_range(out_hw[1], strides[1], j, lo[1], x.shape[2])
            seen = rows[1] > rows[0] and cols[1] > cols[0]
            windows.append(((i, j), rows, cols) if seen else None)
    used = [w for w in windows if w is not None]

    def products(b):
        x_b = lax.dynamic_slice_in_dim(x, b, 1, axis=0)
        g_b = lax.dynamic_slice_in_dim(g, b, 1, axis=0)
        return tuple(
            _tap_slice(x_b, tap, rows, cols, strides, lo) * g_b[:, slice(*rows), slice(*cols), :]
            for tap, rows, cols in used
        )

    def add_example(b, sums):
        return tuple(total + p for total, p in zip(sums, products(b)))

    # The first example's products start the sums (rather than zeros), so the carry has the type
    # of ``x * g`` everywhere, including the varying axes that ``shard_map`` tracks.
    sums = iter(lax.fori_loop(1, x.shape[0], add_example, products(0)))
    taps = [
        jnp.zeros((x.shape[3],), x.dtype) if w is None else jnp.sum(next(sums), axis=(0, 1, 2))
        for w in windows
    ]
    return jnp.stack(taps).reshape(*kernel_hw, x.shape[3])

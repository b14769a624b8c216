"""Any method averaged over horizontal flips and small shifts of the image.

Each copy's attribution is moved back into the original frame before averaging
(the flip undone, the diagonal circular shift ``s`` rolled back), so the result
lines up with the input, and speckle tied to the pixel grid (e.g. the stride
pattern of a strided convolution) averages out. The copies run one after the
other in a ``lax.scan``; each is one call of the method on the whole batch.

Layer methods (``[B, h, w]`` maps) are shifted back by ``s * h / H`` cells, which
must be a whole number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.attribution import _common
from saliency_jax.attribution.gradients import gradient
from saliency_jax.parallel import vary_like
from saliency_jax.types import LogitsFn


@_common.nan_for_invalid_requests
def flip_shift_average(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    method: Callable = gradient,
    shifts: Sequence[int] = (0, 4),
    flips: bool = True,
    reduction: str | None = None,
    **settings,
) -> jax.Array:
    """``method`` averaged over flipped and shifted copies, each moved back into the image's frame.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for the top-1 class of the clean image.
      key: PRNG key, passed on (folded with the copy's index) to a random ``method``.
      batch_size: passed to ``method``.
      method: any attribution method of the package.
      shifts: diagonal circular shifts in pixels (0: the image itself), at least one.
      flips: also use the horizontally mirrored copies.
      reduction: ``None`` to average the attributions; or a reduction of
        :func:`attribution_map` (e.g. ``"max_abs"``) applied to each copy first,
        averaging ``[B, H, W]`` maps.
      **settings: passed to ``method``.

    Returns:
      ``method``'s output shape (``[B, H, W]`` with a ``reduction``), averaged over
      ``len(shifts) * (2 if flips else 1)`` copies.
    """
    if not callable(method):
        raise ValueError(f"method must be an attribution method (a function), got {method!r}")
    images = _common.as_images(images)
    shifts = tuple(shifts) if isinstance(shifts, Sequence) and not isinstance(shifts, str) else shifts
    if not isinstance(shifts, tuple) or not shifts:
        raise ValueError(f"shifts must be a non-empty sequence of integers (0 for none), got {shifts!r}")
    shifts = tuple(_checks.check_int(s, "shifts", 0) for s in shifts)
    flips = _common.check_bool(flips, "flips")
    batch_size = _common.check_batch_size(batch_size)
    if key is not None:
        key = _checks.check_key(key, "flip_shift_average")
    classes = _common.resolve_classes(logits_fn, params, images, classes)
    height, width = images.shape[1:3]

    def call(x, k):
        out = method(logits_fn, params, x, classes, key=k, batch_size=batch_size, **settings)
        return out if reduction is None else _common.attribution_map(out, reduction=reduction)

    replay, out = _common.trace_once(call, images, key)  # the method's model traced once, for the loop too
    out_shape = out.shape
    if len(out_shape) < 3:
        raise ValueError(f"method must return [B, H, W, C] or [B, h, w] maps, got shape {out_shape}")
    out_h, out_w = out_shape[1:3]
    out_shifts = []
    for s in shifts:
        if (s * out_h) % height or (s * out_w) % width:
            raise ValueError(
                f"shifts must move the method's {out_h}x{out_w} maps by whole cells ({height}x{width} images), got {s}"
            )
        out_shifts.append((s * out_h // height, s * out_w // width))  # each axis by its own scale
    copies = [(f, s, o) for f in ((False, True) if flips else (False,)) for s, o in zip(shifts, out_shifts)]
    flip_flags = jnp.asarray(np.array([c[0] for c in copies]))
    shift_in = jnp.asarray(np.array([c[1] for c in copies], np.int32))
    shift_out = jnp.asarray(np.array([c[2] for c in copies], np.int32))  # [copies, 2]: rows, columns

    def body(total, i):
        x = jnp.where(flip_flags[i], images[:, :, ::-1], images)
        x = jnp.roll(x, (shift_in[i], shift_in[i]), axis=(1, 2))
        out = replay(x, None if key is None else jax.random.fold_in(key, i))
        out = jnp.roll(out, (-shift_out[i, 0], -shift_out[i, 1]), axis=(1, 2))
        out = jnp.where(flip_flags[i], out[:, :, ::-1], out)
        return total + out, None

    # Inside ``shard_map`` the sum varies over the mesh axes that the method's output varies over.
    init = vary_like(jnp.zeros(out_shape, jnp.float32), out)
    total, _ = jax.lax.scan(body, init, jnp.arange(len(copies)))
    return total / len(copies)

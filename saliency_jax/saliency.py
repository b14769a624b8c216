"""Image-specific class saliency (paper §3, §3.1).

The class score is linearised around an image ``I0``: ``S_c(I) ~ w^T I + b`` with
``w = dS_c/dI (I0)``. The saliency map is ``|w|`` for a grey image and
``max_channels |w|`` for a colour one. Gradients are taken w.r.t. the image the
model receives (for the embedded models: raw 0-255 pixels, preprocessing inside the
differentiated function), and the ReLU backward rule can be swapped (§4, see
:mod:`saliency_jax.backprop_rules`).

Every function runs the forward pass once per image (``jax.vjp``) and pulls back
one-hot cotangents. For a batch, one pullback of the summed per-image scores gives
every image's gradient at once; this is exact only because the examples of a batch
are independent (the model runs in inference mode), which the tests check against a
per-example ``vmap``. On a single CPU device a batch runs a few images per pass
(``images_per_pass``), which keeps each pass's intermediates small; on accelerators
the whole batch is one pass. For many classes of one image the pullback is
``vmap``-ed over one-hot cotangents, a few classes per backward pass, so the forward
pass is not repeated per class.

All functions are jit-friendly: bind ``logits_fn`` and the keyword arguments with
``functools.partial`` (or mark them static) and ``jax.jit`` the rest.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from saliency_jax import _checks
from saliency_jax.backprop_rules import applied_rule, check_rule
from saliency_jax.types import LogitsFn


class Attribution(NamedTuple):
    """Input gradients with the classes they explain.

    Attributes:
      gradients: ``[B, H, W, C]``, ``dS_c/dI`` for each image's class.
      classes: int32 ``[B]``, the class explained in each image.
      logits: ``[B, K]``, the model's scores for the images.
    """

    gradients: jax.Array
    classes: jax.Array
    logits: jax.Array


def _forward(logits_fn: LogitsFn, params: Any, images: jax.Array, rule: str):
    """One forward pass, keeping its pullback; the rule is fixed while tracing it."""
    check_rule(rule, logits_fn=logits_fn)

    def forward(x):
        return logits_fn(params, x)

    with applied_rule(rule, lambda: jax.make_jaxpr(forward)(images)):
        return jax.vjp(forward, images)


#: Rows (image x class) per backward pass by default on CPU. :func:`class_gradients` pulls back
#: ``max(1, ROWS_PER_PASS // b)`` classes of a pass's ``b`` images per backward pass; on a single CPU
#: device :func:`input_gradients` and the class functions run ``ROWS_PER_PASS`` images per pass. On
#: EfficientNet-Lite0 (CPU, 8 classes), 2 or 4 classes per pass at batch 1 took 0.77-0.82 of the time
#: of all 8 in one vmapped pass, and 1 class per pass at batch 4 took 0.87: a wide backward pass no
#: longer fits in the caches. Since the stem became a matrix product, 2 per pass at batch 1 takes
#: 0.93-0.97 of the time of 4 (and 1 per pass at batch 2 the same time as 2). Saliency maps in passes
#: of 2 images against the whole batch at once: batch 16 0.74-0.82, batch 64 0.70, batch 3-5
#: 0.81-0.97 (passes of 4: batch 16 0.75, batch 64 0.71; of 8: 0.83 and 0.86).
ROWS_PER_PASS = 2


def input_gradients(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    rule: str = "gradient",
    images_per_pass: int | None = None,
) -> Attribution:
    """``w = dS_c/dI`` for each image and its class (paper §3).

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]`` unnormalised scores.
      params: its weights.
      images: float32 ``[B, H, W, C]`` on the model's input scale.
      classes: int ``[B]``, a scalar for all images, or ``None`` for each image's
        top-1 class.
      rule: the ReLU backward rule: ``"gradient"`` (the paper's saliency),
        ``"deconvnet"`` or ``"guided"`` (§4).
      images_per_pass: images per forward and backward pass (an int ``>= 1``; ``B`` or
        more: all at once). The passes run one after another in a ``lax.map``, and a
        last pass takes the ``B % images_per_pass`` images left over. ``None``:
        :func:`default_images_per_pass`, ``ROWS_PER_PASS`` on a single CPU device,
        else all at once. The results do not depend on it; the peak memory grows
        with it.

    Returns:
      :class:`Attribution` with ``gradients`` ``[B, H, W, C]``.
    """
    _checks.check_images(images)
    images = jnp.asarray(images, jnp.float32)
    batch = images.shape[0]
    given = classes
    if given is not None:
        _checks.check_classes(given, None, batch)
        classes = jnp.broadcast_to(_checks.class_ids(given), (batch,))

    def one_pass(x, c):
        logits, pullback = _forward(logits_fn, params, x, rule)
        _checks.check_logits(logits, x.shape[0], floating=True)  # per pass (images_per_pass)
        if c is None:
            c = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        else:
            _checks.check_classes(given, logits.shape[-1], batch)
        (gradients,) = pullback(jax.nn.one_hot(c, logits.shape[-1], dtype=logits.dtype))
        return gradients, c, logits

    gradients, classes, logits = _in_passes(one_pass, _images_per_pass(images_per_pass, batch), images, classes)
    gradients = _checks.nan_where_invalid(gradients, images, classes, logits.shape[-1])
    return Attribution(gradients, classes, logits)


def _images_per_pass(images_per_pass: int | None, batch: int) -> int:
    """``images_per_pass`` checked, ``None`` resolved by :func:`default_images_per_pass`, at most ``batch``."""
    if images_per_pass is None:
        images_per_pass = default_images_per_pass()
    return min(_checks.check_int(images_per_pass, "images_per_pass", 1), batch)


def _in_passes(fn, per_pass: int, *args):
    """``fn(*args)`` on ``per_pass`` rows of every arg at a time, outputs joined on axis 0.

    The args share their leading axis (an arg may be ``None``: each pass then gets
    ``None``). Full passes run in a ``lax.map``, then one pass over the rows left over,
    so no work is spent on filler rows.
    """
    total = next(a for a in args if a is not None).shape[0]
    passes, left = divmod(total, per_pass)
    if passes == 1 and not left:
        return fn(*args)
    full = passes * per_pass

    def rows(start, stop):
        return [None if a is None else a[start:stop] for a in args]

    stacked = jax.tree.map(lambda a: a.reshape(passes, per_pass, *a.shape[1:]), rows(0, full))
    parts = [jax.tree.map(lambda a: a.reshape(full, *a.shape[2:]), jax.lax.map(lambda xs: fn(*xs), stacked))]
    if left:
        parts.append(fn(*rows(full, total)))
    return jax.tree.map(lambda *p: jnp.concatenate(p), *parts)


def default_images_per_pass() -> int:
    """The images per pass of :func:`input_gradients`, the class functions and
    :func:`~saliency_jax.layer_gradients` when none is given.

    ``ROWS_PER_PASS`` when JAX's default backend is the CPU and there is one device;
    else :data:`ALL_IMAGES` (all images at once): an accelerator is fastest with the whole
    batch, and with several devices the batch is usually sharded over them, which
    passes one after another would undo.
    """
    if jax.default_backend() == "cpu" and jax.device_count() == 1:
        return ROWS_PER_PASS
    return ALL_IMAGES


#: ``images_per_pass`` that puts any batch in one pass (what ``default_images_per_pass`` returns off
#: a single CPU device; an int, so that a benchmark can record it).
ALL_IMAGES = 2**31 - 1


def saliency_from_gradients(gradients: jax.Array) -> jax.Array:
    """The paper's map from gradients (§3.1): ``|w|`` (grey) or ``max_c |w|`` (colour).

    Args:
      gradients: ``[B, H, W, C]`` with ``C == 1`` (grey) or ``C == 3`` (colour).

    Returns:
      ``[B, H, W]``, non-negative.
    """
    _checks.check_images(gradients, "gradients")
    return jnp.max(jnp.abs(gradients), axis=-1)


def saliency_map(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    rule: str = "gradient",
    images_per_pass: int | None = None,
) -> jax.Array:
    """Image-specific class saliency maps (paper §3.1).

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for the top-1 class.
      rule: ReLU backward rule, ``"gradient"`` for the paper's map.
      images_per_pass: images per forward and backward pass, see :func:`input_gradients`.

    Returns:
      float32 ``[B, H, W]``: ``max_c |dS_c/dI|``, in score units per input unit.
    """
    attribution = input_gradients(logits_fn, params, images, classes, rule=rule, images_per_pass=images_per_pass)
    gradients = attribution.gradients
    if _checks.is_concrete(gradients) and not bool(jnp.isfinite(gradients).all()):
        raise ValueError("logits_fn's gradient at these images is NaN or infinite (non-finite logits, or an "
                         "overflow inside the model): there is no saliency map; check logits_fn and params")
    return saliency_from_gradients(gradients)


def class_gradients(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array,
    *,
    rule: str = "gradient",
    classes_per_pass: int | None = None,
    images_per_pass: int | None = None,
) -> jax.Array:
    """Gradients of several class scores of each image, with one forward pass.

    The forward pass runs once per image; the pullback is ``vmap``-ed over
    one-hot cotangents, ``classes_per_pass`` classes at a time (the passes run
    one after another in a ``lax.map``). For ``N`` classes of one image pass
    ``images[None]`` and take ``[0]``.

    Args:
      logits_fn: the model.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B, N]``, the classes to explain in each image (or ``[N]``
        for the same classes in every image).
      rule: ReLU backward rule.
      classes_per_pass: classes pulled back together in one backward pass of a pass's
        ``b`` images (an int ``>= 1``; ``N`` or more: all at once). ``None``:
        ``max(1, ROWS_PER_PASS // b)``, the fastest measured on EfficientNet-Lite0 on CPU.
        The results do not depend on it; the peak memory grows with it.
      images_per_pass: images per forward pass and its class pullbacks, see
        :func:`input_gradients` (``None``: :func:`default_images_per_pass`).

    Returns:
      ``[B, N, H, W, C]``: ``dS_{classes[b, n]}/dI`` at ``images[b]``.
    """
    return _class_pullbacks(logits_fn, params, images, classes, rule, classes_per_pass, images_per_pass, lambda g: g)


def _class_pullbacks(logits_fn, params, images, classes, rule, classes_per_pass, images_per_pass, reduce):
    """:func:`class_gradients`, with ``reduce`` applied to each pass's ``[n, b, H, W, C]`` gradients.

    ``reduce`` runs inside the pass, so a reduction (a saliency map's ``max_c |w|``) never
    writes the full gradients out. Returns ``[B, N, *reduced]`` with NaN for invalid rows.
    """
    _checks.check_images(images)
    images = jnp.asarray(images, jnp.float32)
    classes = _checks.class_ids(classes)
    if classes.ndim == 1:
        classes = jnp.broadcast_to(classes, (images.shape[0], classes.shape[0]))
    if classes.ndim != 2 or classes.shape[0] != images.shape[0] or classes.shape[1] == 0:
        raise ValueError(
            f"classes must have shape [B, N] = [{images.shape[0]}, N] with N >= 1 (or [N]), got shape {classes.shape}"
        )
    _checks.check_classes(classes, None, None)
    count = classes.shape[1]
    if classes_per_pass is not None:
        _checks.check_int(classes_per_pass, "classes_per_pass", 1)
    given = classes
    classes = classes.astype(jnp.int32)

    def one_pass(x, c):
        logits, pullback = _forward(logits_fn, params, x, rule)
        _checks.check_logits(logits, x.shape[0], floating=True)  # per pass (images_per_pass)
        _checks.check_classes(given, logits.shape[-1], None)
        per_pass = min(max(1, ROWS_PER_PASS // x.shape[0]) if classes_per_pass is None else classes_per_pass, count)
        # cotangents[n, b] = one_hot(c[b, n]): one pullback per class, all of the pass's images at once
        cotangents = jax.nn.one_hot(c.T, logits.shape[-1], dtype=logits.dtype)
        results = _in_passes(lambda t: reduce(jax.vmap(pullback)(t)[0]), per_pass, cotangents)
        return jnp.swapaxes(results, 0, 1), logits

    results, logits = _in_passes(one_pass, _images_per_pass(images_per_pass, images.shape[0]), images, classes)
    valid = jax.vmap(lambda c: _checks.nan_where_invalid(jnp.zeros(images.shape[:1]), images, c, logits.shape[-1]),
                     in_axes=1, out_axes=1)(classes)
    return results + valid.reshape(valid.shape + (1,) * (results.ndim - 2))


def class_saliency_maps(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array,
    *,
    rule: str = "gradient",
    classes_per_pass: int | None = None,
    images_per_pass: int | None = None,
) -> jax.Array:
    """Saliency maps of several classes of each image, with one forward pass.

    Args:
      logits_fn: the model.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B, N]`` (or ``[N]`` for every image).
      rule: ReLU backward rule.
      classes_per_pass: classes per backward pass, see :func:`class_gradients`.
      images_per_pass: images per forward pass, see :func:`class_gradients`.

    Returns:
      ``[B, N, H, W]``.
    """
    return _class_pullbacks(
        logits_fn, params, images, classes, rule, classes_per_pass, images_per_pass,
        lambda g: jnp.max(jnp.abs(g), axis=-1),
    )

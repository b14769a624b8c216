"""Blur Integrated Gradients (Xu et al., 2020) and the Gaussian blur it integrates along.

Instead of a straight line from a baseline, the path runs through ever stronger
Gaussian blurs of the image, ``x(s) = G_s * x`` for ``s`` from ``max_sigma`` down
to 0, so no baseline has to be chosen and the path adds no new features:

    BlurIG_c(x) = -sum_i (s_{i+1} - s_i) * dx/ds (s_i) * dS_c/dI (x(s_i)),

with ``s_i = i * max_sigma / steps`` (with ``sqrt=True``: ``s_i = sqrt(i *
max_sigma / steps)``, so the strongest blur is then ``sqrt(max_sigma)`` pixels),
``i = 0 .. steps - 1``, and ``dx/ds`` a forward difference of step ``grad_step``,
as in the authors' implementation (PAIR saliency's ``BlurIG`` with
``batch_size=1``, whose blur pads with zeros). Its sum is about ``S_c(x) -
S_c(G_s * x)`` with ``s = s_steps``, the strongest blur: ``max_sigma``, or
``sqrt(max_sigma)`` with ``sqrt``. PAIR's defaults are ``steps=100``,
``max_sigma=50``, ``grad_step=0.01``; here ``steps`` defaults to 32.

The blur is separable and written as two ``[H, H]`` and ``[W, W]`` matrices whose
entries depend on ``sigma``, so a batch can be blurred with a different, traced
``sigma`` per image (one per path point) under ``jit``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.attribution import _common
from saliency_jax.attribution.gradients import row_gradients
from saliency_jax.backprop_rules import check_rule
from saliency_jax.types import LogitsFn

BLUR_MODES = ("constant", "reflect")
TRUNCATE = 4.0  # kernel radius in standard deviations, scipy.ndimage's default
# Taps summed one by one, per pixel of the blurred side. A wider kernel's sums
# are taken in closed form instead, so memory and time follow the image, not sigma.
EXACT_TAPS_PER_PIXEL = 64


def _gaussian_sums(lo: jax.Array, hi: jax.Array, step: int, sigma: jax.Array) -> jax.Array:
    """``sum_{t = lo, lo + step, ..., hi} exp(-t^2 / (2 sigma^2)) / sigma``, for ``sigma >> step``.

    The Euler-Maclaurin formula: the integral plus the end corrections up to the
    third derivative. ``lo`` and ``hi`` are in units of ``sigma``; with ``sigma``
    at least 8 steps (where it is used) the next term is below 1e-9 of the sum.
    """
    g_lo, g_hi = jnp.exp(-0.5 * jnp.square(lo)), jnp.exp(-0.5 * jnp.square(hi))
    r = step / sigma
    integral = np.sqrt(np.pi / 2) * (jax.lax.erf(hi / np.sqrt(2)) - jax.lax.erf(lo / np.sqrt(2))) / step
    ends = 0.5 * (g_lo + g_hi)
    first = r / 12 * (lo * g_lo - hi * g_hi)
    third = -(r**3) / 720 * ((3 * hi - hi**3) * g_hi - (3 * lo - lo**3) * g_lo)
    return integral + (ends + first + third) / sigma


def _blur_matrix(size: int, sigma: jax.Array, max_radius: int, mode: str) -> jax.Array:
    """``[size, size]`` matrix ``M`` with ``(M @ x)`` = ``x`` blurred along its first axis.

    The kernel is scipy's: Gaussian weights on ``|t| <= int(4 sigma + 0.5)``,
    normalised to sum 1, outside pixels zero (``"constant"``) or mirrored with the
    edge pixel repeated (``"reflect"``, ``d c b a | a b c d | d c b a``).

    Taps up to ``EXACT_TAPS_PER_PIXEL * size`` are summed one by one. When
    ``max_radius`` reaches past them, a ``sigma`` whose kernel does takes the
    normalisation (and, for ``"reflect"``, the taps folded onto each pixel) from
    :func:`_gaussian_sums` instead: it is then at least 16 times the side, so the
    closed form agrees with the tap-by-tap sums to float32 precision.
    """
    taps_max = min(max_radius, EXACT_TAPS_PER_PIXEL * size)
    taps = np.arange(-taps_max, taps_max + 1)
    radius = jnp.floor(TRUNCATE * sigma + 0.5)
    safe = jnp.maximum(sigma, 1e-12)

    def weight(t):
        g = jnp.where(t == 0, 1.0, jnp.exp(-0.5 * jnp.square(t / safe)))
        return jnp.where(jnp.abs(t) <= radius, g, 0.0)

    weights = weight(jnp.asarray(taps, jnp.float32))
    i = np.arange(size)[:, None]
    j = np.arange(size)[None, :]
    period = 2 * size
    # Reflection has period 2 * size: pixel i + t is j when i + t = j + 2 size m or -j - 1 + 2 size m.
    forward, backward = (j - i) % period, (-j - 1 - i) % period
    if mode == "constant":
        matrix = weight(jnp.asarray(j - i, jnp.float32)) / jnp.sum(weights)
    else:
        folded = jax.ops.segment_sum(weights, jnp.asarray(taps % period), num_segments=period)
        matrix = (folded[forward] + folded[backward]) / jnp.sum(weights)
    if max_radius <= taps_max:
        return matrix

    # Wide kernels, in units of sigma (finite for any float32 sigma): above 2^22 the
    # radius 4 sigma + 0.5 rounds to 4 sigma exactly.
    wide = jnp.maximum(sigma, 1.0)
    countable = wide < 2.0**22  # below 2^24 the radius is exact in float32 and int32
    whole = jnp.where(countable, radius, 0.0).astype(jnp.int32)
    edge = jnp.where(countable, radius / wide, TRUNCATE)
    norm = _gaussian_sums(-edge, edge, 1, wide)
    if mode == "constant":
        wide_matrix = jnp.exp(-0.5 * jnp.square((j - i) / wide)) / wide / norm
    else:
        # Taps t = r + period * m in [-radius, radius], for each residue r.
        r = np.arange(period)
        lo = jnp.where(countable, (r - period * ((whole + r) // period)) / wide, -TRUNCATE)
        hi = jnp.where(countable, (r + period * ((whole - r) // period)) / wide, TRUNCATE)
        folded = _gaussian_sums(lo, hi, period, wide)
        wide_matrix = (folded[forward] + folded[backward]) / norm
    return jnp.where(radius <= taps_max, matrix, wide_matrix)


def gaussian_blur(images: jax.Array, sigma, *, mode: str = "constant", max_sigma: float | None = None) -> jax.Array:
    """Blurs each image with a Gaussian of standard deviation ``sigma`` pixels (not across channels).

    Equal to ``scipy.ndimage.gaussian_filter(image, [sigma, sigma, 0], mode=mode)``.
    Memory and time grow with the image, not with ``sigma``.

    Args:
      images: float32 ``[B, H, W, C]``.
      sigma: a number or ``[B]`` (one per image), ``>= 0``; may be traced.
      mode: ``"constant"`` (zeros outside the image) or ``"reflect"``.
      max_sigma: an upper bound on ``sigma`` when it is traced (sets the kernel's
        largest radius); defaults to ``sigma`` itself when concrete. Both must be
        numbers that float32 holds.

    Returns:
      float32 ``[B, H, W, C]``.
    """
    if mode not in BLUR_MODES:
        raise ValueError(f"mode must be one of {BLUR_MODES}, got {mode!r}")
    images = _common.as_images(images)
    if _checks.is_concrete(sigma):
        values = np.asarray(sigma)
        if (
            values.shape not in ((), images.shape[:1])
            or not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer))
            or not np.isfinite(values.astype(np.float64)).all()
            or (values < 0).any()
            or (values > _common.FLOAT32_MAX).any()
        ):
            raise ValueError(
                f"sigma must be a number >= 0 or [B] such numbers (finite in float32), got {sigma!r}"
            )
    if max_sigma is None:
        if not _checks.is_concrete(sigma):
            raise ValueError("max_sigma must be given when sigma is traced (it sets the kernel's size)")
        max_sigma = float(np.max(np.asarray(sigma)))
    max_sigma = _common.check_float32(max_sigma, "max_sigma", low=0.0)
    # A sigma computed in float32 (blur IG's sigma + grad_step) may pass its float64
    # bound by a rounding; one more tap than the bound's radius covers it.
    if _checks.is_concrete(sigma) and float(np.max(np.asarray(sigma, np.float64))) > max_sigma * (1 + 1e-6):
        raise ValueError(f"sigma must be at most max_sigma {max_sigma}, got {sigma!r}")
    batch, height, width = images.shape[:3]
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), (batch,))
    max_radius = int(TRUNCATE * max_sigma + 0.5) + 1
    rows = jax.vmap(lambda s: _blur_matrix(height, s, max_radius, mode))(sigma)
    cols = jax.vmap(lambda s: _blur_matrix(width, s, max_radius, mode))(sigma)
    return jnp.einsum("bij,bjkc,blk->bilc", rows, images, cols, precision=jax.lax.Precision.HIGHEST)


def blur_sigmas(steps: int, max_sigma: float, sqrt: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(sigmas, step_sizes)``, each ``[steps]``: the path's blur levels and their spacing."""
    fractions = np.arange(steps + 1) / steps
    sigmas = np.sqrt(fractions * max_sigma) if sqrt else fractions * max_sigma
    return sigmas[:-1].astype(np.float32), np.diff(sigmas).astype(np.float32)


@_common.nan_for_invalid_requests
def blur_integrated_gradients(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    steps: int = 32,
    max_sigma: float = 50.0,
    grad_step: float = 0.01,
    sqrt: bool = False,
    rule: str = "gradient",
) -> jax.Array:
    """Integrated Gradients along the blur path (Xu et al., 2020).

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      key: unused; accepted for the common interface.
      batch_size: path points per model call (``None``: all ``B * steps`` at once).
      steps: points of the path, ``>= 2`` (the authors use 100).
      max_sigma: the strongest blur, in pixels, ``> 0`` (the authors' 50); with
        ``sqrt``, the strongest blur is ``sqrt(max_sigma)`` (PAIR's schedule).
      grad_step: the step in ``sigma`` of the forward difference ``dx/ds``, ``> 0``.
      sqrt: blur levels ``sqrt(i * max_sigma / steps)`` (PAIR's ``sqrt=True``: finer
        near the image, up to ``sqrt(max_sigma)``) instead of ``i * max_sigma / steps``.
      rule: the ReLU backward rule (§4).

    Returns:
      float32 ``[B, H, W, C]``, in score units; summed, about
      ``S_c(x) - S_c(blur(x, max_sigma))`` (``sqrt(max_sigma)`` with ``sqrt``).
    """
    del key
    images = _common.as_images(images)
    check_rule(rule)
    steps = _checks.check_int(steps, "steps", 2, _checks.MAX_INTEGRATION_STEPS)
    max_sigma = _common.check_float32(max_sigma, "max_sigma", low=0.0, open_low=True)
    grad_step = _common.check_float32(grad_step, "grad_step", low=0.0, open_low=True)
    bound = _common.check_float32(max_sigma + grad_step, "max_sigma + grad_step")
    sqrt = _common.check_bool(sqrt, "sqrt")
    batch_size = _common.check_batch_size(batch_size)
    classes = _common.resolve_classes(logits_fn, params, images, classes)
    sigmas, step_sizes = (jnp.asarray(a) for a in blur_sigmas(steps, max_sigma, sqrt))

    def row(b, n):
        x, s = images[b], sigmas[n]
        path_point = gaussian_blur(x, s, max_sigma=bound)
        path_velocity = (gaussian_blur(x, s + grad_step, max_sigma=bound) - path_point) / grad_step
        grads = row_gradients(logits_fn, params, path_point, classes[b], rule)
        return -step_sizes[n][:, None, None, None] * path_velocity * grads

    return _common.sum_over_expansions(row, images.shape[0], steps, batch_size)

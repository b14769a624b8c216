"""Reconstructions from any layer: deconvnet-style signals in input space (paper §4).

Zeiler & Fergus reconstruct a feature map by feeding it, with every other map of
its layer set to zero, down an attached "deconvnet". Simonyan et al. (§4) show
that this is back-propagation of the map to the input, except at the rectifiers:
a convolution's reconstruction is the convolution with flipped filters (the
transpose convolution, i.e. its gradient) and max-pooling's is unpooling with the
switches of the forward pass (again its gradient). Only the ReLU differs, and
:mod:`saliency_jax.backprop_rules` provides the gradient, deconvnet and guided
rules for it. So one function, the vector-Jacobian product from layer ``n`` to
the input, gives all three kinds of reconstruction of any layer of any model.

The layer's output is captured from the model's own forward pass with
:func:`flax.linen.intercept_methods` (no second, truncated model): a layer is
named by its Flax module path, e.g. ``"blocks_7"`` or ``"blocks_7/bn1"``, and
``""`` is the whole model (its logits). Because the capture works inside any
``logits_fn`` that calls a Linen module, preprocessing inside ``logits_fn`` is
differentiated too, and reconstructions are w.r.t. the raw pixels the model is
fed (0-255 for the embedded models). :func:`list_layers` lists the names.

A reconstruction is seeded in one of two ways (``weighting``):

* ``"activation"`` (Zeiler & Fergus): the map's own values, zero elsewhere; the
  gradient of ``sum(X_c ** 2) / 2``.
* ``"ones"``: ones on the map; the gradient of ``sum(X_c)``, the paper's
  ``dX_c / dI``.

Restricting the seed to one position gives the reconstruction of a single neuron.

As elsewhere in the library the backward pass of a batch is one pullback of the
per-image seeds, which is exact because images are independent in inference
mode; several channels of the same images reuse one forward pass (the pullback
is ``vmap``-ed over the seeds). All functions are jit-friendly with ``layer``,
``rule``, ``weighting`` and ``logits_fn`` static.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.backprop_rules import _is_jitted, applied_rule, check_rule
from saliency_jax.parallel import vary_like
from saliency_jax.saliency import _images_per_pass, _in_passes
from saliency_jax.types import LogitsFn

WEIGHTINGS = ("activation", "ones")


class Layer(NamedTuple):
    """One module call of a model's forward pass.

    Attributes:
      name: the module path joined by ``/``, e.g. ``"blocks_7/bn1"``; ``""`` is the
        whole model.
      shape: the shape of the module's output for the images it was listed with.
    """

    name: str
    shape: tuple[int, ...]


class TopChannels(NamedTuple):
    """The most strongly activated channels of a layer, per image.

    Attributes:
      channels: int32 ``[B, k]``, strongest first.
      activations: float32 ``[B, k]``, each channel's largest value over positions.
    """

    channels: jax.Array
    activations: jax.Array


class Reconstruction(NamedTuple):
    """Input-space reconstructions of channels (or neurons) of one layer.

    Shapes below are for :func:`layer_reconstructions`; :func:`layer_reconstruction`
    drops the ``N`` axis.

    Attributes:
      signals: ``[B, N, H, W, C]``, the back-propagated signal in the input space
        (the image's shape), in seed units per input unit.
      channels: int32 ``[B, N]``, the reconstructed channel of the layer.
      positions: int32 ``[B, N, D]``, the neuron's position among the layer's ``D``
        spatial axes; for whole-map reconstructions, the position of the map's
        largest value.
      activations: float32 ``[B, N]``, the neuron's value, or the map's largest value.
    """

    signals: jax.Array
    channels: jax.Array
    positions: jax.Array
    activations: jax.Array


def _layer_path(layer: str | Sequence[str], name: str = "layer") -> tuple[str, ...]:
    if isinstance(layer, str):
        return tuple(p for p in layer.split("/") if p)
    if isinstance(layer, Sequence) and all(isinstance(p, str) for p in layer):
        return tuple(layer)
    raise ValueError(f"{name} must be a module path such as 'blocks_7/bn1' or ('blocks_7', 'bn1'), got {layer!r}")


def _module_path(context) -> tuple[str, ...] | None:
    module = context.module
    if context.method_name != "__call__" or getattr(module, "scope", None) is None:
        return None
    return tuple(module.path)


def _run_capturing(logits_fn: LogitsFn, params: Any, images: jax.Array, path: tuple[str, ...] | None):
    """Runs the model; returns (logits, outputs of the module at ``path``, every module path called)."""
    if _is_jitted(logits_fn):
        raise ValueError(
            "logits_fn must not be jax.jit-wrapped for the layer functions: a jitted model runs as one compiled "
            "call whose modules cannot be seen; pass the plain function and jit the call to the library instead"
        )
    captured, called = [], []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module_path = _module_path(context)
        if module_path is not None:
            called.append((module_path, out))
            if module_path == path:
                captured.append(out)
        return out

    with nn.intercept_methods(interceptor):
        logits = logits_fn(params, images)
    return logits, captured, called


def list_layers(logits_fn: LogitsFn, params: Any, images: jax.Array) -> tuple[Layer, ...]:
    """Every module call of the model on ``images``, in call order, with output shapes.

    Only shapes are computed (``jax.eval_shape``), so this is cheap. Modules whose
    output is not a single array (e.g. a tuple) are listed with an empty shape.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``, built on Flax Linen.
      params: its weights.
      images: ``[B, H, W, C]`` (only the shape and dtype matter).

    Returns:
      One :class:`Layer` per call, the whole model (``""``) last.
    """
    _checks.check_images(images)
    layers = []

    def run(p, x):
        _, _, called = _run_capturing(logits_fn, p, x, None)
        for path, out in called:
            shape = tuple(out.shape) if isinstance(out, jax.Array) else ()
            layers.append(Layer("/".join(path), shape))

    jax.eval_shape(run, params, jnp.asarray(images, jnp.float32))
    return tuple(layers)


def _capture_fn(logits_fn: LogitsFn, params: Any, path: tuple[str, ...], batch: int) -> Callable:
    """``images -> the layer's output``, for one forward pass of the model."""

    def layer_fn(x):
        _, captured, called = _run_capturing(logits_fn, params, x, path)
        name = "/".join(path)
        if not captured:
            seen = sorted({"/".join(p) for p, _ in called})
            raise ValueError(
                f"layer {name!r} is not a module called by the model; "
                f"available layers: {seen if seen else 'none (is logits_fn built on Flax Linen, and not jitted inside?)'}"
            )
        if len(captured) > 1:
            raise ValueError(
                f"layer {name!r} is called {len(captured)} times in one forward pass; pick a layer called once"
            )
        (out,) = captured
        if not isinstance(out, jax.Array) or out.ndim < 2 or out.shape[0] != batch:
            raise ValueError(
                f"layer {name!r} must output one array of shape [B, ..., channels] with B = {batch}, "
                f"got {getattr(out, 'shape', type(out).__name__)}"
            )
        return out

    return layer_fn


@functools.partial(jax.jit, static_argnames=("logits_fn", "path"))
def _one_image_layer(params: Any, image: jax.Array, *, logits_fn: LogitsFn, path: tuple[str, ...]) -> jax.Array:
    return _capture_fn(logits_fn, params, path, 1)(image)


def _layer_shape(logits_fn: LogitsFn, params: Any, images: jax.Array, path: tuple[str, ...]) -> jax.ShapeDtypeStruct:
    """The shape of the layer's output for ``images``, from the model traced on one image.

    Checks the layer as :func:`layer_activations` does. The trace is kept by JAX's
    cache of jitted functions (the model, the path and the types of the weights and
    of one image are its key), so the layer methods, which need the shape before
    their own trace, trace the model once more per model and image size, not per call.
    A ``logits_fn`` that cannot be hashed is traced every time. Inside ``shard_map``
    the result varies over the axes the layer's output varies over.
    """
    first = images[:1]
    try:
        hash(logits_fn)
    except TypeError:
        one = jax.eval_shape(_capture_fn(logits_fn, params, path, 1), first)
    else:
        one = _one_image_layer.eval_shape(params, first, logits_fn=logits_fn, path=path)
    return jax.ShapeDtypeStruct(
        (images.shape[0],) + tuple(one.shape[1:]), one.dtype, manual_axis_type=getattr(one, "manual_axis_type", None)
    )


def layer_activations(logits_fn: LogitsFn, params: Any, images: jax.Array, *, layer: str | Sequence[str]) -> jax.Array:
    """The output of one layer, captured from the model's forward pass.

    Args:
      logits_fn: the model, built on Flax Linen.
      params: its weights.
      images: float32 ``[B, H, W, C]`` on the model's input scale.
      layer: the module path, e.g. ``"blocks_7"`` (see :func:`list_layers`).

    Returns:
      ``[B, ..., channels]``, e.g. ``[B, h, w, c]`` for a convolutional layer.
    """
    _checks.check_images(images)
    images = jnp.asarray(images, jnp.float32)
    return _capture_fn(logits_fn, params, _layer_path(layer), images.shape[0])(images)


def layer_vjp(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    *,
    layer: str | Sequence[str],
    rule: str = "gradient",
) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
    """A layer's output and its pullback to the input: the deconvnet attached at layer n.

    ``reconstruct(R_n)`` back-propagates a signal ``R_n`` placed on the layer's
    output down to the input with the chosen ReLU rule (§4): with ``"deconvnet"``
    it is Zeiler & Fergus' reconstruction, with ``"gradient"`` the vector-Jacobian
    product ``R_n^T dX_n/dI``. Convolutions pull back by transpose convolution and
    max-pooling by its switches under every rule.

    Args:
      logits_fn: the model, built on Flax Linen.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      layer: the module path (see :func:`list_layers`).
      rule: ``"gradient"``, ``"deconvnet"`` or ``"guided"``.

    Returns:
      ``(features, reconstruct)``: the layer's output ``[B, ..., c]`` and a
      function from a signal of that shape to ``[B, H, W, C]``. ``reconstruct`` is
      not linear under the deconvnet and guided rules.
    """
    _checks.check_images(images)
    check_rule(rule)
    images = jnp.asarray(images, jnp.float32)
    layer_fn = _capture_fn(logits_fn, params, _layer_path(layer), images.shape[0])
    # The rule is read while tracing the forward pass; a rule that reached no rectifier is reported.
    with applied_rule(rule, lambda: jax.make_jaxpr(layer_fn)(images)):
        features, pullback = jax.vjp(layer_fn, images)

    def reconstruct(signal: jax.Array) -> jax.Array:
        signal = jnp.asarray(signal, features.dtype)
        if signal.shape != features.shape:
            raise ValueError(f"signal must have the layer's shape {features.shape}, got {signal.shape}")
        (out,) = pullback(signal)
        return out

    return features, reconstruct


def layer_gradients(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array,
    *,
    layer: str | Sequence[str],
    images_per_pass: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """A layer's output ``A`` and the class score's gradient at it, ``dS_c/dA`` (e.g. for Grad-CAM).

    The gradient is taken by adding a zero offset to the layer's output inside
    the forward pass and differentiating the scores w.r.t. the offset; one
    pullback of the per-image scores gives every image's gradient, exact because
    the examples are independent.

    Args:
      logits_fn: the model, built on Flax Linen.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, the class of each image.
      layer: the module path (see :func:`list_layers`).
      images_per_pass: images per forward and backward pass, as in
        :func:`~saliency_jax.input_gradients` (``None``:
        :func:`~saliency_jax.default_images_per_pass`). The results do not depend on it.

    Returns:
      ``(features, gradients)``, both of the layer's output shape ``[B, ..., c]``.
    """
    features, gradients, _ = layer_gradients_and_logits(logits_fn, params, images, classes, layer=layer,
                                                        images_per_pass=images_per_pass)
    return features, gradients


def layer_gradients_and_logits(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array,
    *,
    layer: str | Sequence[str],
    images_per_pass: int | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`layer_gradients` and the logits ``[B, K]`` of the same forward pass.

    On a single CPU device the images go through the model two at a time by default
    (``images_per_pass``, as in :func:`~saliency_jax.input_gradients`). On
    EfficientNet-Lite0, against one pass: Grad-CAM of 8 images 0.78-0.83 of the time,
    crop Grad-CAM with its default 64 crops per call 0.71-0.72.
    """
    path = _layer_path(layer)
    _checks.check_images(images)
    images = jnp.asarray(images, jnp.float32)
    batch = images.shape[0]
    _checks.check_classes(classes, None, batch)
    given, classes = classes, jnp.broadcast_to(_checks.class_ids(classes), images.shape[:1])

    def one_pass(x, c):
        def scores_from(offset):
            captured = []

            def interceptor(next_fun, args, kwargs, context):
                out = next_fun(*args, **kwargs)
                if _module_path(context) == path and not captured:
                    captured.append(out)
                    out = out + offset
                return out

            with nn.intercept_methods(interceptor):
                logits = logits_fn(params, x)
            if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
                raise ValueError(f"logits_fn must return logits of shape [B, K], one row per image: "
                                 f"[{x.shape[0]}, K] for {x.shape[0]} image(s), got {logits.shape}")
            _checks.check_classes(given, logits.shape[-1], batch)
            valid = (c >= 0) & (c < logits.shape[-1])
            scores = jnp.take_along_axis(logits, jnp.where(valid, c, 0)[:, None], axis=1)[:, 0]
            return scores, (captured[0], logits)

        layer = _layer_shape(logits_fn, params, x, path)
        # Inside ``shard_map`` the offset varies like the layer's output: a replicated zero's gradient
        # would be summed over the shards.
        offset = vary_like(jnp.zeros(layer.shape, jnp.float32), layer)
        scores, pullback, (features, logits) = jax.vjp(scores_from, offset, has_aux=True)
        (gradients,) = pullback(jnp.ones_like(scores))
        return features, gradients, logits

    features, gradients, logits = _in_passes(one_pass, _images_per_pass(images_per_pass, batch), images, classes)
    # Under jit an invalid request (class out of range, non-finite image) gives NaN rows.
    gradients = _checks.nan_where_invalid(gradients, images, classes, logits.shape[-1])
    return features, gradients, logits


def top_activated_channels(
    logits_fn: LogitsFn, params: Any, images: jax.Array, *, layer: str | Sequence[str], k: int = 3
) -> TopChannels:
    """The ``k`` channels of a layer with the largest activation in each image.

    Zeiler & Fergus show the strongest activations of a layer; a channel's
    strength is its largest value over positions.

    Args:
      logits_fn: the model, built on Flax Linen.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      layer: the module path.
      k: channels per image, ``1 <= k <= channels``.

    Returns:
      :class:`TopChannels` with ``[B, k]`` fields.
    """
    features = layer_activations(logits_fn, params, images, layer=layer)
    try:
        k = _checks.check_int(k, "k", 1, features.shape[-1])
    except ValueError:
        raise ValueError(f"k must be an integer in [1, {features.shape[-1]}] (the layer's channels), got {k!r}") from None
    strength = jnp.max(features.reshape(features.shape[0], -1, features.shape[-1]), axis=1)
    activations, channels = jax.lax.top_k(strength, k)
    return TopChannels(channels.astype(jnp.int32), activations)


def _check_channels(channels, batch: int, num_channels: int) -> jax.Array:
    if _checks.is_concrete(channels) and not isinstance(channels, jax.Array):
        channels = np.asarray(channels)
        if channels.size == 0:
            raise ValueError("channels must name at least one channel, got none")
        if not np.issubdtype(channels.dtype, np.integer):
            raise ValueError(f"channels must be integer channel ids, got {channels.dtype} {channels.tolist()!r}"[:200])
        if channels.size and (
            channels.min() < 0 or channels.max() >= num_channels
        ):
            raise ValueError(
                f"channels must be in [0, {num_channels}) (the layer's channels), "
                f"got values from {channels.min()} to {channels.max()}"
            )
    channels_arr = jnp.asarray(channels)
    if not jnp.issubdtype(channels_arr.dtype, jnp.integer):
        raise ValueError(f"channels must be integer channel ids, got dtype {channels_arr.dtype}")
    if channels_arr.ndim == 0:
        channels_arr = jnp.broadcast_to(channels_arr, (batch, 1))
    elif channels_arr.ndim == 1:
        channels_arr = jnp.broadcast_to(channels_arr[None, :], (batch, channels_arr.shape[0]))
    elif channels_arr.ndim != 2 or channels_arr.shape[0] != batch:
        raise ValueError(
            f"channels must be a scalar, [N] (the same for every image) or [B, N] = [{batch}, N], "
            f"got shape {channels_arr.shape}"
        )
    if channels_arr.shape[1] == 0:
        raise ValueError("channels must name at least one channel")
    if _checks.is_concrete(channels_arr):
        values = np.asarray(channels_arr)
        if values.min() < 0 or values.max() >= num_channels:
            raise ValueError(
                f"channels must be in [0, {num_channels}) (the layer's channels), "
                f"got values from {values.min()} to {values.max()}"
            )
    return channels_arr.astype(jnp.int32)


def _as_ids(value):
    """Integer ids as numpy when concrete (64-bit, checked before any cast to int32), else as a JAX array."""
    if isinstance(value, (jax.Array, jax.core.Tracer)):
        return jnp.asarray(value)
    try:
        return np.asarray(value)
    except TypeError:  # a list holding tracers
        return jnp.asarray(value)


def _neuron_positions(neuron, maps: jax.Array) -> jax.Array:
    """int32 ``[B, N, D]`` positions; ``maps`` is ``[B, N, *spatial]``."""
    batch, count, spatial = maps.shape[0], maps.shape[1], maps.shape[2:]
    if not spatial:
        if neuron is not None and not (isinstance(neuron, str) and neuron == "max"):
            raise ValueError(f"neuron must be None or 'max' for a layer without spatial axes, got {neuron!r}")
        return jnp.zeros((batch, count, 0), jnp.int32)
    if neuron is None or (isinstance(neuron, str) and neuron == "max"):
        flat = jnp.argmax(maps.reshape(batch, count, -1), axis=-1)
        positions = jnp.stack(jnp.unravel_index(flat, spatial), axis=-1)
        return positions.astype(jnp.int32).reshape(batch, count, len(spatial))
    if isinstance(neuron, str):
        raise ValueError(f"neuron must be None, 'max', or a position, got {neuron!r}")
    pos = _as_ids(neuron)
    if not jnp.issubdtype(pos.dtype, jnp.integer) or pos.ndim not in (1, 2) or pos.shape[-1] != len(spatial):
        raise ValueError(
            f"neuron must be None, 'max', or integer positions [{len(spatial)}] or [B, {len(spatial)}] "
            f"in the layer's spatial shape {spatial}, got {neuron!r}"
        )
    if pos.ndim == 2 and pos.shape[0] != batch:
        raise ValueError(f"neuron must have shape [{len(spatial)}] or [{batch}, {len(spatial)}], got {pos.shape}")
    if _checks.is_concrete(pos):
        values = np.asarray(pos).reshape(-1, len(spatial))
        if (values < 0).any() or (values >= np.asarray(spatial)[None, :]).any():
            raise ValueError(
                f"neuron must lie within the layer's spatial shape {spatial}, got {np.asarray(pos).tolist()}"
            )
    pos = jnp.broadcast_to(pos.reshape(-1, 1, len(spatial)), (batch, count, len(spatial)))
    return pos.astype(jnp.int32)


def layer_reconstructions(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    channels: jax.Array | Sequence[int] | int,
    *,
    layer: str | Sequence[str],
    neuron: Any = None,
    rule: str = "gradient",
    weighting: str = "activation",
) -> Reconstruction:
    """Reconstructions of several channels of a layer, with one forward pass (§4).

    Each reconstruction seeds the layer with one channel (every other channel
    zero) and back-propagates it to the input with the chosen ReLU rule. With
    ``rule="deconvnet"`` and ``weighting="activation"`` this is Zeiler & Fergus'
    deconvnet; with ``rule="gradient"`` it is the gradient of the channel's
    activity w.r.t. the image, which the paper shows to be the same computation
    except at the ReLUs.

    Args:
      logits_fn: the model, built on Flax Linen (preprocessing inside is
        differentiated, so signals are w.r.t. the images as given).
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      layer: the module path (see :func:`list_layers`), output ``[B, ..., c]``.
      channels: int, ``[N]`` (the same channels for every image) or ``[B, N]``.
      neuron: ``None`` for whole feature maps; ``"max"`` for each map's strongest
        neuron; or a position ``[D]`` / ``[B, D]`` among the layer's ``D`` spatial axes.
      rule: ``"gradient"``, ``"deconvnet"`` or ``"guided"``.
      weighting: ``"activation"`` (seed with the map's values, Zeiler & Fergus) or
        ``"ones"`` (the gradient of the map's sum or of the neuron).

    Returns:
      :class:`Reconstruction` with ``signals`` ``[B, N, H, W, C]``.
    """
    if not isinstance(weighting, str) or weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    features, reconstruct = layer_vjp(logits_fn, params, images, layer=layer, rule=rule)
    batch, num_channels = features.shape[0], features.shape[-1]
    channels = _check_channels(channels, batch, num_channels)
    count, spatial = channels.shape[1], features.shape[1:-1]

    # maps[b, n] = features[b, ..., channels[b, n]]: [B, N, *spatial]
    moved = jnp.moveaxis(features, -1, 1)
    maps = jnp.take_along_axis(moved, channels.reshape((batch, count) + (1,) * len(spatial)), axis=1)
    positions = _neuron_positions(neuron, maps)
    flat_maps = maps.reshape(batch, count, -1)
    if spatial:
        flat_index = jnp.ravel_multi_index(tuple(jnp.moveaxis(positions, -1, 0)), spatial, mode="clip")
    else:
        flat_index = jnp.zeros((batch, count), jnp.int32)
    activations = jnp.take_along_axis(flat_maps, flat_index[..., None], axis=-1)[..., 0]

    seed_maps = maps if weighting == "activation" else jnp.ones_like(maps)
    if neuron is not None:
        size = int(np.prod(spatial)) if spatial else 1
        seed_maps = seed_maps * jax.nn.one_hot(flat_index, size, dtype=maps.dtype).reshape(maps.shape)
    # seeds[n, b, ..., c] = seed_maps[b, n, ...] if c == channels[b, n] else 0
    channel_mask = jax.nn.one_hot(channels, num_channels, dtype=features.dtype)  # [B, N, c]
    seeds = seed_maps[..., None] * channel_mask.reshape((batch, count) + (1,) * len(spatial) + (num_channels,))
    signals = jax.vmap(reconstruct, in_axes=1, out_axes=1)(seeds)
    # Under jit the ids are not known while tracing: an invalid channel or position gives NaN,
    # never another channel's or a clipped position's signal.
    valid = (channels >= 0) & (channels < num_channels)
    if spatial and neuron is not None and not isinstance(neuron, str):
        bounds = jnp.asarray(spatial).reshape((1, 1, len(spatial)))
        valid = valid & jnp.all((positions >= 0) & (positions < bounds), axis=-1)
    signals = jnp.where(valid.reshape(valid.shape + (1,) * (signals.ndim - 2)), signals, jnp.nan)
    activations = jnp.where(valid, activations, jnp.nan)
    return Reconstruction(signals, channels, positions, activations)


def layer_reconstruction(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    channel: jax.Array | int,
    *,
    layer: str | Sequence[str],
    neuron: Any = None,
    rule: str = "gradient",
    weighting: str = "activation",
) -> Reconstruction:
    """The reconstruction of one channel (or neuron) of a layer per image (§4).

    See :func:`layer_reconstructions`, which this calls with ``N = 1``.

    Args:
      logits_fn: the model, built on Flax Linen.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      layer: the module path (see :func:`list_layers`).
      channel: int, or int ``[B]`` (one channel per image).
      neuron: ``None`` (the whole map), ``"max"``, or a position ``[D]`` / ``[B, D]``.
      rule: ``"gradient"``, ``"deconvnet"`` or ``"guided"``.
      weighting: ``"activation"`` or ``"ones"``.

    Returns:
      :class:`Reconstruction` with ``signals`` ``[B, H, W, C]``, ``channels``
      ``[B]``, ``positions`` ``[B, D]`` and ``activations`` ``[B]``.
    """
    # Concrete ids stay numpy (int64) until checked: jnp.asarray would wrap 2**32 + 1 to 1 silently.
    channel = _as_ids(channel)
    if channel.ndim > 1:
        raise ValueError(f"channel must be a scalar or [B] (one per image), got shape {channel.shape}")
    per_image = channel[:, None] if channel.ndim == 1 else channel
    if channel.ndim == 1 and channel.shape[0] != jnp.shape(images)[0]:
        raise ValueError(f"channel must be a scalar or have shape [{jnp.shape(images)[0]}], got shape {channel.shape}")
    out = layer_reconstructions(
        logits_fn, params, images, per_image, layer=layer, neuron=neuron, rule=rule, weighting=weighting
    )
    return Reconstruction(*(field[:, 0] for field in out))

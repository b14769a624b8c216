"""Grad-CAM (Selvaraju et al., 2017), Guided Grad-CAM and Grad-CAM++ (Chattopadhay et al., 2018) on any Flax layer.

Both weight the feature maps ``A_k`` (``[h, w]`` each) of a layer by how much the
class score depends on them and keep the positive part:

    CAM_c = ReLU(sum_k alpha_k A_k)

Grad-CAM: ``alpha_k = mean_ij dS_c/dA_kij``. Grad-CAM++: ``alpha_k = sum_ij
a_kij ReLU(dS_c/dA_kij)`` with ``a_kij = g^2 / (2 g^2 + sum_ij A_kij g^3)``
(``g = dS_c/dA_kij``; higher derivatives of ``exp(S_c)`` written through the first),
the form of the authors' and pytorch-grad-cam's code. The two differ only in the
weights.

The layer is named by its Flax module path, as in
:mod:`saliency_jax.reconstruction` (see :func:`saliency_jax.list_layers`): its output
is intercepted in the model's own forward pass (no hooks, no second model), and a
zero added to it there gives ``dS_c/dA`` as the gradient with respect to that zero.
For the embedded models the default layer is the classifier's
``feature_layer`` (:func:`default_layer`), the last spatial feature map.

Against Captum's ``LayerGradCam(model, layer)``: Grad-CAM here is its
``attribute(x, target, relu_attributions=True)[:, 0]``, always rectified as in
Selvaraju et al. (Captum's default, ``relu_attributions=False``, keeps the
negative part). The map stays at the layer's resolution; resizing it with
:func:`~saliency_jax.attribution.attribution_map`'s ``size`` is bilinear with
half-pixel centres, Captum's ``LayerAttribution.interpolate(..., interpolate_mode=
"bilinear")`` (``align_corners=False``) when upsampling; Captum's default mode is
``"nearest"``. :func:`guided_gradcam` is Captum's ``GuidedGradCam``: guided
back-propagation (``gradient(..., rule="guided")``) times the Grad-CAM map
upsampled to the input, bilinearly as in Selvaraju et al. by default, or with
``upsample="nearest"`` (Captum's default, PyTorch's ``interpolate(mode="nearest")``:
output pixel ``i`` takes cell ``floor(i * h / H)``, whatever the sizes). Grad-CAM++ equals
pytorch-grad-cam's, whose denominator adds ``1e-6``; here a zero denominator
gives a zero weight instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax.attribution import _common
from saliency_jax.attribution.gradients import gradient
from saliency_jax.reconstruction import _layer_path, _layer_shape, layer_gradients
from saliency_jax.types import Classifier, LogitsFn


def default_layer(classifier: Classifier) -> str:
    """The layer of a :class:`~saliency_jax.Classifier` that layer methods explain by default.

    Raises:
      ValueError: if the classifier names no ``feature_layer``.
    """
    if not getattr(classifier, "feature_layer", None):
        raise ValueError("classifier has no feature_layer; pass layer= (a module path, see list_layers)")
    return classifier.feature_layer


def _check_layer(logits_fn: LogitsFn, params: Any, images: jax.Array, layer) -> tuple[tuple[str, ...], tuple]:
    """The layer's path and its output shape ``[B, h, w, k]`` (shapes only; raises for an unknown layer)."""
    if layer is None or (isinstance(layer, str) and not layer.strip("/")):
        raise ValueError(
            "layer must name a convolutional layer by its module path, e.g. layer='head_activation' "
            "(see list_layers, or a Classifier's feature_layer)"
        )
    path = _layer_path(layer)
    shape = _layer_shape(logits_fn, params, images[:1], path).shape
    if len(shape) != 4:
        raise ValueError(f"layer {'/'.join(path)!r} must output [B, h, w, channels] feature maps, got shape {shape}")
    return path, shape


def _cam(logits_fn, params, images, classes, layer, batch_size, weights_fn) -> jax.Array:
    images = _common.as_images(images)
    path, shape = _check_layer(logits_fn, params, images, layer)
    batch_size = _common.check_batch_size(batch_size)
    classes = _common.resolve_classes(logits_fn, params, images, classes)

    def row(b, n):
        features, grads = layer_gradients(logits_fn, params, images[b], classes[b], layer=path)
        alpha = weights_fn(features, grads)  # [R, k]
        return jax.nn.relu(jnp.einsum("rhwk,rk->rhw", features, alpha))

    return _common.sum_over_expansions(row, images.shape[0], 1, batch_size)


def _gradcam_weights(features, grads):
    return jnp.mean(grads, axis=(1, 2))


def _gradcam_plus_plus_weights(features, grads):
    g2, g3 = jnp.square(grads), grads**3
    sum_features = jnp.sum(features, axis=(1, 2), keepdims=True)
    denominator = 2.0 * g2 + sum_features * g3
    safe = jnp.where(denominator != 0.0, denominator, 1.0)
    a = jnp.where((grads != 0.0) & (denominator != 0.0), g2 / safe, 0.0)
    return jnp.sum(a * jax.nn.relu(grads), axis=(1, 2))


@_common.nan_for_invalid_requests
def gradcam(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    layer: str | Sequence[str] | None = None,
) -> jax.Array:
    """Grad-CAM: the layer's feature maps weighted by their mean gradient, rectified.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``, built on Flax Linen.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      key: unused; accepted for the common interface.
      batch_size: images per model call.
      layer: the module path of a layer with ``[B, h, w, k]`` output (e.g. a
        :class:`~saliency_jax.Classifier`'s ``feature_layer``, see :func:`default_layer`).

    Returns:
      float32 ``[B, h, w]``, non-negative, at the layer's resolution (resize with
      :func:`attribution_map`'s ``size``).
    """
    del key
    return _cam(logits_fn, params, images, classes, layer, batch_size, _gradcam_weights)


@_common.nan_for_invalid_requests
def gradcam_plus_plus(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    layer: str | Sequence[str] | None = None,
) -> jax.Array:
    """Grad-CAM++: feature maps weighted by pixel-weighted positive gradients, rectified.

    Args:
      logits_fn: the model, built on Flax Linen.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      key: unused; accepted for the common interface.
      batch_size: images per model call.
      layer: the module path of a layer with ``[B, h, w, k]`` output.

    Returns:
      float32 ``[B, h, w]``, non-negative.
    """
    del key
    return _cam(logits_fn, params, images, classes, layer, batch_size, _gradcam_plus_plus_weights)


UPSAMPLING = ("bilinear", "nearest")


@_common.nan_for_invalid_requests
def guided_gradcam(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array | None = None,
    batch_size: int | None = _common.DEFAULT_BATCH_SIZE,
    layer: str | Sequence[str] | None = None,
    upsample: str = "bilinear",
) -> jax.Array:
    """Guided Grad-CAM (Selvaraju et al., 2017): guided back-propagation times the upsampled Grad-CAM map.

    The guided gradient (§4's ``guided`` rule, :func:`~saliency_jax.attribution.gradient`)
    is sharp but hardly depends on the class; the Grad-CAM map is class-specific but
    coarse. Their product keeps the fine detail inside the regions of the class.
    The guided rule needs a model built on :func:`saliency_jax.backprop_rules.relu` /
    ``relu6``; another model gets the plain gradient with a ``RuleNotAppliedWarning``.
    On a ReLU network this equals Captum's ``GuidedGradCam`` (with
    ``upsample="nearest"``, its default). Captum's guided back-propagation rewrites
    ``torch.nn.ReLU`` modules only, so on EfficientNet-Lite (``nn.ReLU6``) it gives
    the plain gradient without a warning; here ``relu6`` follows the guided rule too.

    Args:
      logits_fn: the model, ``(params, [B, H, W, C]) -> [B, K]``, built on Flax Linen.
      params: its weights.
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for each image's top-1 class.
      key: unused; accepted for the common interface.
      batch_size: images per model call.
      layer: the module path of the Grad-CAM layer, with ``[B, h, w, k]`` output.
      upsample: how the ``[h, w]`` map is brought to ``[H, W]``: ``"bilinear"``
        (half-pixel centres, as :func:`attribution_map`'s ``size``) or ``"nearest"``
        (PyTorch's rule, as Captum: pixel ``i`` takes cell ``floor(i * h / H)``).

    Returns:
      float32 ``[B, H, W, C]``, in score units per input unit (the Grad-CAM map is
      non-negative, so each pixel keeps its guided gradient's sign).
    """
    del key
    if upsample not in UPSAMPLING:
        raise ValueError(f"upsample must be one of {UPSAMPLING}, got {upsample!r}")
    images = _common.as_images(images)
    classes = _common.resolve_classes(logits_fn, params, images, classes)
    cam = gradcam(logits_fn, params, images, classes, batch_size=batch_size, layer=layer)
    guided = gradient(logits_fn, params, images, classes, batch_size=batch_size, rule="guided")
    if upsample == "nearest":
        cam = _torch_nearest(cam, images.shape[1:3])
    else:
        cam = jax.image.resize(cam, images.shape[:3], method=upsample)
    return (guided * cam[..., None]).astype(jnp.float32)


def _torch_nearest(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``[B, h, w]`` maps at ``size`` by PyTorch's nearest rule: pixel ``i`` takes cell ``floor(i * h / H)``.

    (``jax.image.resize``'s nearest samples at half-pixel centres, which picks other
    cells where the sizes do not divide: 5 -> 8 rows gives 0 0 1 2 2 3 4 4, PyTorch 0 0 1 1 2 3 3 4.)
    """
    (h, w), (height, width) = maps.shape[1:3], size
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    return maps[:, rows][:, :, cols]

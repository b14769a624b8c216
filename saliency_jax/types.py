"""The model contract and small typed containers shared by every method."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax


class LogitsFn(Protocol):
    """A pure classifier: ``logits_fn(params, images) -> logits``.

    ``images`` are float32 ``[B, H, W, C]`` on the model's raw input scale (the
    embedded models take 0-255 pixels and preprocess inside, so gradients are
    w.r.t. the raw image); ``logits`` are unnormalised class scores ``[B, K]``.
    Examples must be independent (inference mode: no batch statistics), which is
    what lets one backward pass of summed scores give every image's gradient.

    For Flax Linen pass ``functools.partial(module.apply, train=False)`` with the
    whole variables dict as ``params``; for Flax NNX, ``nnx.split`` the model and
    ``nnx.merge`` inside the function.
    """

    def __call__(self, params: Any, images: jax.Array) -> jax.Array: ...


class Classifier(NamedTuple):
    """A ready-to-use model: the function, its weights and how to feed it.

    Attributes:
      logits_fn: the pure model, see :class:`LogitsFn`.
      params: its weights (a pytree).
      image_size: the square input resolution the model expects, e.g. 224.
      class_names: ``K`` human-readable class names, index = class id.
      pixel_mean: the raw pixel value the model's preprocessing maps to zero; the
        "mean image" that class model visualisation adds back (paper §2).
      pixel_scale: raw pixel units per unit of the preprocessed input.
      feature_layer: the module path of the last spatial feature map (the default
        layer of layer methods such as Grad-CAM), or ``None`` if not known.
    """

    logits_fn: LogitsFn
    params: Any
    image_size: int
    class_names: tuple[str, ...]
    pixel_mean: float = 0.0
    pixel_scale: float = 1.0
    feature_layer: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class TopK(NamedTuple):
    """The ``k`` best classes per image.

    Attributes:
      classes: int32 ``[B, k]``, best first.
      probabilities: float32 ``[B, k]``, softmax posteriors.
      scores: float32 ``[B, k]``, unnormalised class scores.
    """

    classes: jax.Array
    probabilities: jax.Array
    scores: jax.Array

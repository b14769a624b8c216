"""Saliency maps and top classes of a JAX classifier, as numpy map functions.

The glue between a :class:`~saliency_jax.types.Classifier` and the numpy side
(the GraphCut pipeline, the benchmarks, the command line): the library's
jitted methods, called on numpy batches of bounded size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

# (images float [B, H, W, 3] raw 0-255, classes int [B]) -> maps float32 [B, H, W]
MapFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

SEED_MAPS = ("paper", "flip-shift", "smoothgrad")


def _batched(map_fn: MapFn, batch_size: int) -> MapFn:
    """Calls ``map_fn(images, classes)`` on at most ``batch_size`` images at a time."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")

    def run(images, classes):
        images = np.asarray(images, np.float32)
        if images.ndim != 4:
            raise ValueError(f"images must have shape [B, H, W, C], got shape {images.shape}")
        classes = np.broadcast_to(np.asarray(classes), images.shape[:1])
        out = [np.asarray(map_fn(images[i : i + batch_size], classes[i : i + batch_size]), np.float32)
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros(images.shape[:3], np.float32)

    return run


def saliency_fn(classifier, seed_map: str = "paper", *, rule: str = "gradient", batch_size: int = 8,
                seed: int = 0) -> MapFn:
    """``(images, classes) -> maps``: a classifier's map of each image's class, in numpy.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier`.
      seed_map: one of :data:`SEED_MAPS`: ``"paper"`` (the gradient map of
        §3.1), ``"flip-shift"`` (averaged over flips and 4-pixel shifts) or
        ``"smoothgrad"`` (16 noisy copies, 15% noise).
      rule: the ReLU backward rule, ``"gradient"`` for the paper's map.
      batch_size: images per jitted call.
      seed: the noise seed of SmoothGrad.

    Returns:
      A function of float ``[B, H, W, 3]`` raw images and int ``[B]`` classes that
      returns float32 ``[B, H, W]`` maps.
    """
    import jax
    import jax.numpy as jnp

    from saliency_jax import attribution

    if seed_map not in SEED_MAPS:
        raise ValueError(f"seed_map must be one of {SEED_MAPS}, got {seed_map!r}")
    method = {"paper": attribution.gradient, "flip-shift": attribution.flip_shift_average,
              "smoothgrad": attribution.smoothgrad}[seed_map]

    def compute(params, images, classes):
        attributions = method(classifier.logits_fn, params, images, classes, key=jax.random.key(seed), rule=rule)
        return attribution.attribution_map(attributions)

    compute = jax.jit(compute)

    def maps(images, classes):
        return np.asarray(compute(classifier.params, jnp.asarray(images, jnp.float32), jnp.asarray(classes, jnp.int32)))

    return _batched(maps, batch_size)


def seed_map_explainer(classifier, seed_map: str = "paper", *, batch_size: int = 8, seed: int = 0):
    """``explain(images, classes or None) -> (maps, classes)``: maps of given (or top-1) classes.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier`.
      seed_map: one of :data:`SEED_MAPS`.
      batch_size: images per jitted call.
      seed: the noise seed of SmoothGrad.
    """
    maps_fn = saliency_fn(classifier, seed_map, batch_size=batch_size, seed=seed)

    def explain(images, classes):
        if classes is None:
            classes = top_classes(classifier, images, 1, batch_size=batch_size)[:, 0]
        classes = np.asarray(classes, np.int64)
        return maps_fn(images, classes), classes

    return explain


def top_classes(classifier, images, k: int = 5, *, batch_size: int = 8) -> np.ndarray:
    """The ``k`` highest-scoring classes of each image, best first.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier`.
      images: float ``[B, H, W, 3]`` raw images.
      k: classes per image.
      batch_size: images per jitted call.

    Returns:
      int64 ``[B, k]``.
    """
    import jax

    from saliency_jax.scores import top_k

    best = jax.jit(functools.partial(top_k, classifier.logits_fn, k=k))
    images = np.asarray(images, np.float32)
    out = [np.asarray(best(classifier.params, images[i : i + batch_size]).classes)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, k), np.int64)


def scale_box(box, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """A box ``x0, y0, x1, y1`` (exclusive ends) in an ``[h, w]`` image, in ``[H, W]`` pixels.

    Starts round down and ends round up, so the scaled box covers the pixels the
    original one covered.
    """
    box = np.asarray(box, np.float64)
    sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    x0, y0, x1, y1 = box[..., 0] * sx, box[..., 1] * sy, box[..., 2] * sx, box[..., 3] * sy
    return np.stack(
        [np.floor(x0), np.floor(y0), np.minimum(np.ceil(x1), to_shape[1]), np.minimum(np.ceil(y1), to_shape[0])],
        axis=-1,
    ).astype(np.int64)


def make_predictor(classifier, config=None, *, seed_map: str = "paper", top_k: int = 5, batch_size: int = 8):
    """``image -> Prediction``: the paper's protocol of one GraphCut box per top-k class (§3.2).

    The image is resized to the model's square input; the model's ``top_k``
    classes are explained with the chosen seed map, each map seeds one GraphCut
    run, and the boxes are scaled back to the image's pixels. The top-1 map,
    resized to the image, comes along for the pointing game.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier`.
      config: a :class:`~saliency_jax.localisation.GraphCutConfig` (default settings if ``None``).
      seed_map: one of :data:`SEED_MAPS`.
      top_k: classes (and boxes) per image, at most 5 for ILSVRC.
      batch_size: images per jitted call.

    Returns:
      A function of a uint8 ``[H, W, 3]`` image returning a
      :class:`~saliency_jax.evaluation.tfds_eval.Prediction`.
    """
    from saliency_jax import io
    from saliency_jax.evaluation.tfds_eval import Prediction
    from saliency_jax.localisation import GraphCutConfig, localise_classes

    config = GraphCutConfig() if config is None else config
    maps_fn = saliency_fn(classifier, seed_map, batch_size=batch_size)
    size = classifier.image_size

    def predict(image):
        image = np.asarray(image)
        work = io.resize_image(image, size)
        classes = top_classes(classifier, work[None], top_k, batch_size=batch_size)[0]
        maps = maps_fn(np.repeat(work[None], len(classes), axis=0), classes)
        found = localise_classes(work, maps, classes, config)
        boxes = scale_box(found.boxes, (size, size), image.shape[:2])
        return Prediction(classes, boxes, io.resize_map(maps[0], *image.shape[:2]))

    return predict

"""Saliency maps and top classes of a JAX classifier, as numpy map functions.

The glue between a :class:`~saliency_jax.types.Classifier` and the numpy side
(the seed-map choices of :mod:`saliency_jax.evaluation.seed_maps`, the GraphCut
pipeline): jitted once, called on numpy batches.
"""

from __future__ import annotations

import functools

import numpy as np

from saliency_jax.evaluation.seed_maps import MapFn, batched


def saliency_fn(classifier, *, rule: str = "gradient", batch_size: int = 8) -> MapFn:
    """``(images, classes) -> maps``: the paper's map (§3.1) of a classifier, in numpy.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier`.
      rule: the ReLU backward rule, ``"gradient"`` for the paper's map.
      batch_size: images per jitted call.

    Returns:
      A function of float ``[B, H, W, 3]`` raw images and int ``[B]`` classes that
      returns float32 ``[B, H, W]`` maps.
    """
    import jax
    import jax.numpy as jnp

    from saliency_jax.saliency import saliency_map

    compute = jax.jit(functools.partial(saliency_map, classifier.logits_fn, rule=rule))

    def maps(images, classes):
        return np.asarray(compute(classifier.params, jnp.asarray(images, jnp.float32), jnp.asarray(classes, jnp.int32)))

    return batched(maps, batch_size)


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
    import jax.numpy as jnp

    logits_fn = jax.jit(classifier.logits_fn)
    images = np.asarray(images, np.float32)
    out = []
    for start in range(0, len(images), batch_size):
        logits = np.asarray(logits_fn(classifier.params, jnp.asarray(images[start : start + batch_size])))
        out.append(np.argsort(-logits, axis=-1, kind="stable")[:, :k])
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
      seed_map: one of :data:`~saliency_jax.evaluation.seed_maps.SEED_MAPS`.
      top_k: classes (and boxes) per image, at most 5 for ILSVRC.
      batch_size: images per jitted call.

    Returns:
      A function of a uint8 ``[H, W, 3]`` image returning a
      :class:`~saliency_jax.evaluation.tfds_eval.Prediction`.
    """
    from saliency_jax import io
    from saliency_jax.evaluation.seed_maps import seed_map_fn
    from saliency_jax.evaluation.tfds_eval import Prediction
    from saliency_jax.localisation import GraphCutConfig, localise_classes

    config = GraphCutConfig() if config is None else config
    maps_fn = seed_map_fn(seed_map, saliency_fn(classifier, batch_size=batch_size))
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

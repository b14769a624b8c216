"""A JAX classifier's top classes and localisation predictions, in numpy.

The glue between a :class:`~saliency_jax.types.Classifier` and the numpy side
(the GraphCut pipeline, the dataset evaluations): jitted calls on numpy batches
of bounded size. The seed maps themselves are named in
:mod:`saliency_jax.evaluation.localisation_variants`.
"""

from __future__ import annotations

import functools

import numpy as np

from saliency_jax import _checks
from saliency_jax._batching import filled_chunks


@functools.lru_cache(maxsize=8)
def _jitted_top_k(logits_fn, k: int):
    """One jitted ``top_k`` per model and ``k``: later calls with the same shapes reuse its compilation."""
    import jax

    from saliency_jax.scores import top_k

    return jax.jit(functools.partial(top_k, logits_fn, k=k))


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
    batch_size = _checks.check_int(batch_size, "batch_size", 1)
    k = _checks.check_int(k, "k", 1, len(classifier.class_names))
    images = np.asarray(images, np.float32)
    if images.ndim == 4 and len(images) == 0:
        return np.zeros((0, k), np.int64)
    # Checked here, on the host: inside the jitted call a NaN image would get plausible classes.
    _checks.check_images(images)
    best = _jitted_top_k(classifier.logits_fn, k)
    out = [np.asarray(best(classifier.params, images[rows]).classes)[:kept]
           for rows, kept in filled_chunks(len(images), batch_size)]
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, k), np.int64)


def scale_box(box, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """A box ``x0, y0, x1, y1`` (exclusive ends) in an ``[h, w]`` image, in ``[H, W]`` pixels.

    Starts round down and ends round up, so the scaled box covers the pixels the
    original one covered; the result is clipped to the ``[H, W]`` image.
    """
    from saliency_jax.evaluation.metrics import _as_boxes

    sizes = []
    for name, shape in (("from_shape", from_shape), ("to_shape", to_shape)):
        if np.shape(shape) != (2,):
            raise ValueError(f"{name} must be (height, width), got {shape!r}")
        sizes.append([_checks.check_int(v, f"{name}[{i}]", 1) for i, v in enumerate(shape)])
    (h, w), (to_h, to_w) = sizes
    box = _as_boxes(box, "box")
    # Multiply before dividing: an exact product over the size is exact when the
    # result is a whole number, so floor and ceil do not step past it
    # (7 * (61 / 7) is 60.99999999999999).
    x0, y0, x1, y1 = box[..., 0] * to_w / w, box[..., 1] * to_h / h, box[..., 2] * to_w / w, box[..., 3] * to_h / h
    return np.stack(
        [np.clip(np.floor(x0), 0, to_w), np.clip(np.floor(y0), 0, to_h),
         np.clip(np.ceil(x1), 0, to_w), np.clip(np.ceil(y1), 0, to_h)],
        axis=-1,
    ).astype(np.int64)


def make_predictor(classifier, *, variant: str = "paper", top_k: int = 5, batch_size: int = 8):
    """``image -> Prediction``: the paper's protocol of one GraphCut box per top-k class (§3.2).

    The image is resized to the model's square input; the model's ``top_k``
    classes are explained with the chosen variant's seed map, each map seeds one
    GraphCut run on the photo at its own resolution
    (:func:`~saliency_jax.localisation.localise_photo`), so the boxes are in the
    image's pixels. The top-1 map, resized to the image, comes along for the
    pointing game.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier`.
      variant: a name of :data:`~saliency_jax.evaluation.localisation_variants.VARIANTS`
        (``"paper"``: the gradient map and the paper's GraphCut).
      top_k: classes (and boxes) per image, at most 5 for ILSVRC.
      batch_size: images per jitted call.

    Returns:
      A function of a uint8 ``[H, W, 3]`` image returning a
      :class:`~saliency_jax.evaluation.tfds_eval.Prediction`.
    """
    from saliency_jax import io
    from saliency_jax.evaluation.localisation_variants import VARIANTS, variant_maps
    from saliency_jax.evaluation.tfds_eval import Prediction
    from saliency_jax.localisation import localise_photo

    # Checked now, not at the first image.
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")
    top_k = _checks.check_int(top_k, "top_k", 1)
    batch_size = _checks.check_int(batch_size, "batch_size", 1)
    size = classifier.image_size

    def predict(image):
        image = np.asarray(image)
        work = io.resize_image(image, size)
        classes = top_classes(classifier, work[None], top_k, batch_size=batch_size)[0]
        maps, config = variant_maps(classifier, np.repeat(work[None], len(classes), axis=0), classes, variant,
                                    batch_size=batch_size)
        boxes = np.stack([localise_photo(image, m, config).box for m in maps])
        return Prediction(classes, boxes, io.resize_map(maps[0], *image.shape[:2]))

    return predict

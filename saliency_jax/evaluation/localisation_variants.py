"""Named localisation variants: a seed map of a classifier plus a GraphCut setting.

A *variant* is what ``--seed-map NAME`` selects: which map of the requested class
seeds the localisation (the paper's gradient map, SmoothGrad, Grad-CAM,
Integrated Gradients, products of them, each optionally contrasted against the
image's other likely classes, or the multi-scale crop map of
:func:`crop_gradcam_maps`) and which :class:`~saliency_jax.localisation.GraphCutConfig`
segments the image with it. ``paper`` is always the paper (§3.2): the plain
gradient map and ``GraphCutConfig()``.

    maps, config = variant_maps(classifier, images, classes, "paper")
    found = [localise_photo(photo, m, config) for photo, m in zip(photos, maps)]

The maps are numpy ``[B, H, W]`` at the model's input resolution; the GraphCut
(numpy only) takes them from there.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from saliency_jax import _checks
from saliency_jax._batching import filled_chunks
from saliency_jax.localisation import GraphCutConfig

# The maps a variant may be seeded with. ``+contrast``: the class score is the
# target's logit minus the mean logit of the image's four other highest-scoring classes.
# ``crops``: :func:`crop_gradcam_maps`, Grad-CAM of zoomed crops weighted by the
# class's probability in each.
BASE_MAPS = ("gradient", "smoothgrad", "gradcam", "ig", "gradcam*smoothgrad", "crops")

class Variant(NamedTuple):
    """A named choice of seed map and segmentation.

    Attributes:
      seed_map: one of :data:`BASE_MAPS`, optionally with ``"+contrast"``.
      config: the segmentation settings.
      description: one line for ``--help`` and the README.
    """

    seed_map: str
    config: GraphCutConfig
    description: str


SEGMENTATIONS = {
    "paper": (GraphCutConfig(), "seeds estimate the colour models only (the paper)"),
    "hard": (GraphCutConfig(hard_seeds="both"), "seeds are also hard constraints (GrabCut's strokes)"),
    "iterated": (GraphCutConfig(iterations=5), "colour models re-estimated from the cut, 5 rounds (GrabCut)"),
    "prior": (GraphCutConfig(saliency_weight=4.0), "saliency prior (weight 4 nats) in the unary term"),
    "prior+iterated": (
        GraphCutConfig(saliency_weight=4.0, iterations=5),
        "saliency prior and 5 rounds of colour re-estimation",
    ),
}

VARIANTS: dict[str, Variant] = {
    "paper": Variant("gradient", GraphCutConfig(), "the paper (§3.2): gradient map, seeds estimate the colour models"),
    "paper-hard": Variant("gradient", GraphCutConfig(hard_seeds="both"),
                          "gradient map, seeds also hard constraints (GrabCut's convention)"),
    "smoothgrad": Variant("smoothgrad", GraphCutConfig(), "SmoothGrad map (16 noisy copies), paper segmentation"),
    "gradcam": Variant("gradcam", GraphCutConfig(), "Grad-CAM map at the last feature layer, paper segmentation"),
    "ig": Variant("ig", GraphCutConfig(), "Integrated Gradients map (black baseline, 16 steps), paper segmentation"),
    "gradcam-smoothgrad": Variant(
        "gradcam*smoothgrad",
        GraphCutConfig(background_quantile=0.8, component="salient"),
        "Grad-CAM x SmoothGrad map; background model from the least salient 80%; the most salient component",
    ),
    "crops": Variant(
        "crops",
        GraphCutConfig(background_quantile=0.8, component="salient", support=0.05),
        "multi-scale crop map (Grad-CAM of 51 zoomed crops, each weighted by the class's softmax "
        "probability in it); background model from the least salient 80%; no foreground where the map is "
        "below 5% of its range; the most salient component (best mean box IoU on the multi-object scenes)",
    ),
}
# The best mean box IoU on the generated multi-object scenes (tuned on scene seed
# 1; on the held-out seed 2, 49 targets: crops 0.80 mean box IoU, 88% at IoU >= 0.5;
# gradcam-smoothgrad 0.61, 61%; paper 0.44, 39%).
DEFAULT_VARIANT = "crops"


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (maps are non-negative), so products weigh both alike."""
    maps = np.asarray(maps, np.float64)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    return (maps / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)


@functools.lru_cache(maxsize=8)  # one wrapper per model, so that _jitted's cache finds it again
def _weighted_logits_fn(logits_fn):
    """A one-output model whose score is ``sum_k w_k S_k``: ``params`` becomes ``(params, w [1, K])``."""

    def fn(params_and_weights, images):
        params, weights = params_and_weights
        return (logits_fn(params, images) * weights).sum(axis=-1, keepdims=True)

    return fn


@functools.lru_cache(maxsize=16)
def _jitted(name: str, logits_fn, layer, size: int, batch_size: int):
    import jax

    from saliency_jax import attribution as attr

    if name == "gradient":
        fn = functools.partial(attr.gradient, logits_fn, batch_size=batch_size)
    elif name == "smoothgrad":
        fn = functools.partial(attr.smoothgrad, logits_fn, batch_size=batch_size, num_samples=16,
                               reduction="max_abs")
    elif name == "ig":
        fn = functools.partial(attr.integrated_gradients, logits_fn, batch_size=batch_size, steps=16, baseline=0.0)
    elif name == "gradcam":
        fn = functools.partial(attr.gradcam, logits_fn, batch_size=batch_size, layer=layer)
    else:
        raise ValueError(f"seed map must be one of {BASE_MAPS}, got {name!r}")

    def maps(params, images, classes, key):
        out = fn(params, images, classes, key=key)
        return attr.attribution_map(out, size=(size, size) if out.ndim == 3 else None)

    return jax.jit(maps)


@functools.lru_cache(maxsize=8)
def _jitted_crops(logits_fn, layer, grid: tuple, batch_size: int):
    import jax

    from saliency_jax import attribution as attr

    return jax.jit(functools.partial(attr.crop_gradcam, logits_fn, layer=layer, grid=grid, batch_size=batch_size))


def crop_gradcam_maps(classifier, images, classes, *, grid=None, batch_size: int = 16) -> np.ndarray:
    """:func:`saliency_jax.attribution.crop_gradcam` of a classifier at its ``feature_layer``, in numpy.

    Every crop of :func:`~saliency_jax.attribution.crop_boxes` is resized to the
    model's input and classified; its Grad-CAM of the class, divided by its
    maximum and multiplied by the class's softmax probability in the crop, is
    resized back onto the crop's pixels; a pixel's value is the largest over the
    crops that contain it. One image per compiled call.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier` with a ``feature_layer``.
      images: float ``[B, S, S, 3]`` raw images at the model's input size.
      classes: int ``[B]``.
      grid: ``(fraction, steps)`` pairs (default
        :data:`~saliency_jax.attribution.CROP_GRID`, 51 crops).
      batch_size: crops per model call.

    Returns:
      float32 ``[B, S, S]`` in ``[0, 1]``.
    """
    import jax.numpy as jnp

    from saliency_jax import attribution as attr

    images, classes = _check_request(classifier, images, classes)
    layer = getattr(classifier, "feature_layer", None)
    if not layer:
        raise ValueError("classifier must name a feature_layer for the crop maps, got None")
    grid = attr.CROP_GRID if grid is None else tuple(tuple(pair) for pair in grid)
    compute = _jitted_crops(classifier.logits_fn, layer, grid, batch_size)
    classes = classes.astype(np.int32)
    out = np.zeros(images.shape[:3], np.float32)
    for i, (image, label) in enumerate(zip(images, classes)):
        out[i] = np.asarray(compute(classifier.params, jnp.asarray(image[None]), jnp.asarray(label[None])))[0]
    return out


def _base_maps(classifier, images, classes, name, *, key, batch_size, contrast: np.ndarray | None):
    """One base map for every image, optionally of the contrast score (a row of weights per image)."""
    import jax.numpy as jnp

    from saliency_jax.saliency import default_images_per_pass

    size = images.shape[1]
    layer = getattr(classifier, "feature_layer", None)
    if name == "crops":  # never with a contrast: seed_maps refuses "crops+contrast"
        # Crops per model call: on a single CPU device one pass of the model (two rows), so that
        # the scan over crops pads at most one row and compiles the model once; a chunk of 16 with
        # passes of two inside took 1.2-1.3 times as long on EfficientNet-Lite0 (13 of its 64 rows
        # padding). Elsewhere (one pass per call), at least 16.
        per_call = min(max(batch_size, 16), default_images_per_pass())
        return crop_gradcam_maps(classifier, images, classes, batch_size=per_call)
    if name == "gradcam*smoothgrad":
        cam = _base_maps(classifier, images, classes, "gradcam", key=key, batch_size=batch_size, contrast=contrast)
        smooth = _base_maps(classifier, images, classes, "smoothgrad", key=key, batch_size=batch_size,
                            contrast=contrast)
        return _normalise(cam) * _normalise(smooth)
    # Every call gets the same key: SmoothGrad draws the same noise for every image of a call,
    # so an image's map does not depend on its batch, its position or batch_size.
    out = []
    if contrast is None:
        compute = _jitted(name, classifier.logits_fn, layer, size, batch_size)
        for rows, kept in filled_chunks(len(images), batch_size):
            out.append(np.asarray(compute(classifier.params, jnp.asarray(images[rows]), jnp.asarray(classes[rows]),
                                          key))[:kept])
        return np.concatenate(out)
    compute = _jitted(name, _weighted_logits_fn(classifier.logits_fn), layer, size, batch_size)
    for i in range(len(images)):  # one image at a time: its weights broadcast over any expansion
        weights = jnp.asarray(contrast[i : i + 1], jnp.float32)
        out.append(np.asarray(compute((classifier.params, weights), jnp.asarray(images[i : i + 1]),
                                      jnp.zeros((1,), jnp.int32), key)))
    return np.concatenate(out)


def _check_request(classifier, images, classes) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``[B, S, S, C]`` finite images at the classifier's input size and int ``[B]`` class ids of it,
    else ``ValueError``."""
    images = np.asarray(images, np.float32)
    _checks.check_images(images)
    size = getattr(classifier, "image_size", None)
    if images.shape[1] != images.shape[2] or (size is not None and images.shape[1] != size):
        wanted = f"{size} x {size}" if size is not None else "square"
        raise ValueError(f"images must be [B, S, S, C] at the model's input size ({wanted}; resize them first), got "
                         f"shape {images.shape}")
    ids = _checks.class_ids(classes)  # refuses floats and ids beyond int32
    _checks.check_classes(ids, len(classifier.class_names), len(images))
    return images, np.broadcast_to(np.asarray(ids), (len(images),)).copy()


def contrast_weights(classifier, images: np.ndarray, classes: np.ndarray, *, others: int = 4,
                     batch_size: int = 8) -> np.ndarray:
    """Score weights ``[B, K]`` of the class contrast ``S_c - mean(S_o)``.

    ``o`` ranges over the image's ``others`` highest-scoring classes other than
    ``c`` (the other likely objects of a scene), ``1 <= others < K``.
    """
    from saliency_jax.evaluation.model_maps import top_classes

    images, classes = _check_request(classifier, images, classes)
    others = _checks.check_int(others, "others", 1, len(classifier.class_names) - 1)
    top = top_classes(classifier, images, others + 1, batch_size=batch_size)
    num_classes = len(classifier.class_names)
    weights = np.zeros((len(images), num_classes), np.float32)
    for i, (row, c) in enumerate(zip(top, classes)):
        rest = [int(k) for k in row if k != c][:others]
        weights[i, rest] = -1.0 / len(rest)
        weights[i, int(c)] = 1.0
    return weights


def seed_maps(
    classifier,
    images,
    classes,
    seed_map: str,
    *,
    key=None,
    batch_size: int = 8,
) -> np.ndarray:
    """The named seed map of each image's class, in numpy.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier` (e.g. the embedded
        EfficientNet-Lite0).
      images: float ``[B, S, S, 3]`` raw images at the model's input size.
      classes: int ``[B]``, the class to localise in each image.
      seed_map: one of :data:`BASE_MAPS`, optionally followed by ``"+contrast"``
        (an image whose contrast map is constant gets the plain map).
      key: a jax PRNG key for SmoothGrad's noise (``None``: ``PRNGKey(0)``).
      batch_size: images per jitted call.

    Returns:
      float32 ``[B, S, S]``, non-negative.
    """
    import jax

    images, classes = _check_request(classifier, images, classes)
    base, _, suffix = seed_map.partition("+") if isinstance(seed_map, str) else (None, "", "")
    if base not in BASE_MAPS or suffix not in ("", "contrast") or seed_map.endswith("+"):
        raise ValueError(f"seed_map must be one of {BASE_MAPS}, optionally with '+contrast', got {seed_map!r}")
    if seed_map == "crops+contrast":  # refused before the contrast's model pass
        raise ValueError("seed_map 'crops' has no '+contrast' form (its softmax already contrasts the classes)")
    _checks.check_int(batch_size, "batch_size", 1)
    key = jax.random.PRNGKey(0) if key is None else _checks.check_key(key, "the seed maps")
    if not suffix:
        return _base_maps(classifier, images, classes, base, key=key, batch_size=batch_size, contrast=None)
    contrast = contrast_weights(classifier, images, classes, batch_size=batch_size)
    maps = _base_maps(classifier, images, classes, base, key=key, batch_size=batch_size, contrast=contrast)
    flat = maps.reshape(len(maps), -1)
    constant = flat.max(axis=1) == flat.min(axis=1)
    if constant.any():
        # A rectified map (Grad-CAM) of a contrast that is negative everywhere is all
        # zero: nothing favours the class over the others; use the plain map there.
        maps[constant] = _base_maps(classifier, images[constant], classes[constant], base, key=key,
                                    batch_size=batch_size, contrast=None)
    return maps


def variant_maps(
    classifier,
    images,
    classes,
    variant: str = DEFAULT_VARIANT,
    *,
    key=None,
    batch_size: int = 8,
) -> tuple[np.ndarray, GraphCutConfig]:
    """``(classifier, images, classes, variant name) -> (maps, config)``: what the CLI runs.

    Args:
      classifier: a :class:`~saliency_jax.types.Classifier`.
      images: float ``[B, S, S, 3]`` raw images at the model's input size.
      classes: int ``[B]`` classes to localise.
      variant: a name from :data:`VARIANTS`.
      key: PRNG key for the noisy methods.
      batch_size: images per jitted call.

    Returns:
      ``(maps, config)``: float32 ``[B, S, S]`` seed maps and the
      :class:`~saliency_jax.localisation.GraphCutConfig` to localise them with
      (``localise_photo(photo, maps[i], config)``).
    """
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")
    chosen = VARIANTS[variant]
    return seed_maps(classifier, images, classes, chosen.seed_map, key=key, batch_size=batch_size), chosen.config


def variant_help() -> str:
    """One line per variant, for ``--help``."""
    return "\n".join(f"{name}: {v.description}" for name, v in VARIANTS.items())


def with_config(variant: Variant, **changes) -> Variant:
    """A copy of ``variant`` with its config's fields changed."""
    return variant._replace(config=dataclasses.replace(variant.config, **changes))


def names(variants: Sequence[str] | None = None) -> tuple[str, ...]:
    """The variant names (all, or the ones given after checking them)."""
    if variants is None:
        return tuple(VARIANTS)
    for name in variants:
        if name not in VARIANTS:
            raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {name!r}")
    return tuple(variants)

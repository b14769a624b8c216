"""Localisation metrics: box IoU, ILSVRC accuracy and top-5 error, the pointing game.

Boxes are ``x0, y0, x1, y1`` in pixels with exclusive ends (``x1 - x0`` is the
width), as :func:`saliency_jax.localisation.bounding_box` returns them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from saliency_jax import _checks

# Pixel coordinates beyond 2**53 are not whole numbers in float64, and the areas of
# boxes that large would overflow it (an IoU of inf / inf).
MAX_COORDINATE = float(2**53)


def _as_boxes(boxes, name: str) -> np.ndarray:
    try:
        complex_values = np.iscomplexobj(boxes)
        array = None if complex_values else np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be real numbers of shape [..., 4] (x0, y0, x1, y1), got {type(boxes).__name__} "
            f"that is not a numeric array"
        ) from None
    if complex_values:  # a cast to float64 would drop the imaginary part with only a warning
        raise ValueError(f"{name} must be real numbers of shape [..., 4] (x0, y0, x1, y1), got complex numbers")
    if array.ndim == 0 or array.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [..., 4] (x0, y0, x1, y1), got shape {np.shape(boxes)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    if array.size and float(np.abs(array).max()) > MAX_COORDINATE:
        raise ValueError(
            f"{name} must have coordinates within +-2**53 pixels, got values up to {float(np.abs(array).max()):g}"
        )
    if (array[..., 2] < array[..., 0]).any() or (array[..., 3] < array[..., 1]).any():
        raise ValueError(f"{name} must have x1 >= x0 and y1 >= y0 (x0, y0, x1, y1 order)")
    return array


def _as_mask(mask, name: str) -> np.ndarray:
    """A mask as bool (non-zero is the object), refusing NaN, which ``bool`` would count as object."""
    try:
        array = np.asarray(mask)
    except (ValueError, TypeError):  # a ragged nest of sequences, e.g. masks of different shapes
        raise ValueError(
            f"{name} must be a boolean (or 0/1) array, got a ragged sequence (rows of different "
            f"lengths, or masks of different shapes)"
        ) from None
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.number)) or np.iscomplexobj(array):
        raise ValueError(f"{name} must be a boolean (or 0/1) mask, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values (a mask is boolean)")
    return array.astype(bool)


def _check_threshold(threshold) -> float:
    """The IoU a hit needs, in ``(0, 1]``: at 0 every box, even a disjoint one, would hit."""
    return _checks.check_number(threshold, "threshold", low=0.0, high=1.0, open_low=True)


def box_area(boxes) -> np.ndarray:
    """Areas ``(x1 - x0) * (y1 - y0)`` of ``[..., 4]`` boxes, as ``[...]``."""
    boxes = _as_boxes(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """Intersection over union of boxes, broadcasting their leading axes.

    For all pairs of two sets use ``box_iou(a[:, None], b[None])``.

    Args:
      boxes_a: ``[..., 4]``, ``x0, y0, x1, y1`` with exclusive ends.
      boxes_b: ``[..., 4]``, broadcastable against ``boxes_a``.

    Returns:
      float64 ``[...]`` in ``[0, 1]``; 0 where both boxes are empty.
    """
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    try:
        np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    except ValueError:
        raise ValueError(
            f"boxes_a and boxes_b must have broadcastable leading axes, got shapes {a.shape} and {b.shape} "
            f"(for all pairs use box_iou(boxes_a[:, None], boxes_b[None]))"
        ) from None
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    union = box_area(a) + box_area(b) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def mask_iou(mask_a, mask_b) -> float:
    """Intersection over union of two boolean ``[H, W]`` masks (0 when both are empty)."""
    a, b = _as_mask(mask_a, "mask_a"), _as_mask(mask_b, "mask_b")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mask_a and mask_b must be [H, W] masks, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"mask_a and mask_b must have the same shape, got {a.shape} and {b.shape}")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _ground_truth_list(ground_truth, count: int, name: str) -> list[np.ndarray]:
    """Per-image ``[M_i, 4]`` arrays from ``[N, 4]``, ``[N, M, 4]`` or a list of ``[M_i, 4]``."""
    if isinstance(ground_truth, np.ndarray) and ground_truth.ndim == 2:
        ground_truth = ground_truth[:, None]
    if (isinstance(ground_truth, (str, bytes)) or not hasattr(ground_truth, "__iter__")
            or getattr(ground_truth, "ndim", 1) == 0):
        raise ValueError(f"{name} must hold one entry of boxes per image ({count}), got {type(ground_truth).__name__}")
    items = []
    for g in ground_truth:
        if np.size(g) % 4:
            raise ValueError(f"{name} must hold [M, 4] boxes per image (x0, y0, x1, y1), got shape {np.shape(g)}")
        items.append(_as_boxes(np.reshape(g, (-1, 4)) if np.size(g) else np.zeros((0, 4)), name))
    if len(items) != count:
        raise ValueError(f"{name} must hold one entry per image ({count}), got {len(items)}")
    return items


def localisation_hits(pred_boxes, gt_boxes, threshold: float = 0.5) -> np.ndarray:
    """Whether each image's box overlaps one of its objects by IoU ``>= threshold``.

    Args:
      pred_boxes: ``[N, 4]``, one box per image.
      gt_boxes: the objects of each image: ``[N, 4]``, or a length-``N`` sequence
        of ``[M_i, 4]`` (an image with no objects is a miss).
      threshold: the IoU needed, ILSVRC's 0.5.

    Returns:
      bool ``[N]``.
    """
    threshold = _check_threshold(threshold)
    pred = _as_boxes(pred_boxes, "pred_boxes")
    if pred.ndim != 2:
        raise ValueError(f"pred_boxes must have shape [N, 4], got shape {pred.shape}")
    truth = _ground_truth_list(gt_boxes, len(pred), "gt_boxes")
    return np.array(
        [bool(len(g)) and bool((box_iou(p[None], g) >= threshold).any()) for p, g in zip(pred, truth)], dtype=bool
    )


def localisation_accuracy(pred_boxes, gt_boxes, threshold: float = 0.5) -> float:
    """Fraction of images whose box has IoU ``>= threshold`` with one of their objects.

    The ILSVRC criterion with ``threshold = 0.5``; see :func:`localisation_hits`.
    ``nan`` for no images.
    """
    hits = localisation_hits(pred_boxes, gt_boxes, threshold)
    return float(hits.mean()) if hits.size else float("nan")


def top5_localisation_error(
    pred_classes,
    pred_boxes,
    gt_classes: Sequence,
    gt_boxes: Sequence,
    threshold: float = 0.5,
) -> float:
    """The ILSVRC localisation error with up to 5 guesses per image (paper §3.2).

    An image counts as localised if one of its guesses names the class of one of
    its objects and overlaps that object by IoU ``>= threshold``; the error is the
    fraction of images not localised.

    Args:
      pred_classes: int ``[N, K]`` (``K <= 5`` guesses per image, best first).
      pred_boxes: ``[N, K, 4]``, one box per guess.
      gt_classes: length-``N`` sequence of int ``[M_i]`` (or ``[N]`` ints, one
        object class per image, as ILSVRC's single-label validation set).
      gt_boxes: length-``N`` sequence of ``[M_i, 4]`` (or ``[N, 4]``).
      threshold: IoU needed, 0.5.

    Returns:
      The error in ``[0, 1]``; ``nan`` for no images. An image without boxes is
      not localised.
    """
    threshold = _check_threshold(threshold)
    classes = np.asarray(pred_classes)
    if classes.size and not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"pred_classes must be integer class ids, got dtype {classes.dtype}")
    boxes = _as_boxes(pred_boxes, "pred_boxes")
    if classes.ndim != 2 or boxes.shape != classes.shape + (4,):
        raise ValueError(
            f"pred_classes must be [N, K] and pred_boxes [N, K, 4], got {classes.shape} and {boxes.shape}"
        )
    if classes.shape[1] > 5:
        raise ValueError(f"the ILSVRC protocol allows at most 5 guesses per image, got {classes.shape[1]}")
    truth_boxes = _ground_truth_list(gt_boxes, len(classes), "gt_boxes")
    if (isinstance(gt_classes, (str, bytes)) or not hasattr(gt_classes, "__iter__")
            or getattr(gt_classes, "ndim", 1) == 0):
        raise ValueError(
            f"gt_classes must hold one entry of class ids per image ({len(classes)}), got {gt_classes!r}"
        )
    truth_classes = []
    for c in gt_classes:
        try:
            truth_classes.append(np.atleast_1d(np.asarray(c)).reshape(-1))
        except (ValueError, TypeError):  # a ragged nest of sequences
            raise ValueError(f"gt_classes must hold int [M_i] class ids per image, got {c!r}") from None
    for c in truth_classes:
        # Class ids of another kind (WordNet ids as strings, floats) never equal an integer guess.
        if c.size and not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"gt_classes must be integer class ids (as pred_classes), got dtype {c.dtype}")
    if len(truth_classes) != len(classes):
        raise ValueError(f"gt_classes must hold one entry per image ({len(classes)}), got {len(truth_classes)}")
    errors = []
    for guesses, guess_boxes, t_classes, t_boxes in zip(classes, boxes, truth_classes, truth_boxes):
        if len(t_classes) == 1 and len(t_boxes) != 1:
            t_classes = np.repeat(t_classes, len(t_boxes))  # one label for all of the image's boxes (or none)
        if len(t_classes) != len(t_boxes):
            raise ValueError(
                f"gt_classes and gt_boxes disagree: {len(t_classes)} classes for {len(t_boxes)} boxes"
            )
        overlaps = box_iou(guess_boxes[:, None], t_boxes[None]) >= threshold  # [K, M]
        same_class = guesses[:, None] == t_classes[None]
        errors.append(not bool((overlaps & same_class).any()))
    return float(np.mean(errors)) if errors else float("nan")


def _as_map(saliency, name: str) -> np.ndarray:
    """A finite, non-empty real ``[H, W]`` map as float64, else ``ValueError`` naming ``name``."""
    try:
        saliency = np.asarray(saliency)
    except (ValueError, TypeError):  # a ragged nest of sequences
        raise ValueError(f"{name} must be a real [H, W] map, got a ragged sequence") from None
    if not (np.issubdtype(saliency.dtype, np.floating) or np.issubdtype(saliency.dtype, np.integer)
            or saliency.dtype == np.bool_):
        raise ValueError(f"{name} must hold real numbers, got dtype {saliency.dtype}")
    if saliency.ndim != 2:
        raise ValueError(f"{name} must have shape [H, W], got shape {saliency.shape}")
    if saliency.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {saliency.shape}")
    saliency = saliency.astype(np.float64)
    if not np.isfinite(saliency).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return saliency


def saliency_peak(saliency) -> np.ndarray:
    """The ``(y, x)`` of a map's maximum (the first in row-major order on ties)."""
    saliency = _as_map(saliency, "saliency")
    return np.array(np.unravel_index(int(np.argmax(saliency)), saliency.shape))


def pointing_hits(saliency_maps, *, masks=None, boxes=None, tolerance: float = 15.0) -> np.ndarray:
    """The pointing game (Zhang et al., 2016): does each map's maximum hit the object?

    A hit is a maximum on the object or less than ``tolerance`` pixels
    (Euclidean) from one of its pixels: TorchRay's rule, ``d**2 < tolerance**2``
    (a peak exactly 15 px away misses); on ties the first maximum in row-major
    order is the one that points.
    Give the objects as ``masks`` or as ``boxes``, not both. A box covers the
    map's pixels inside it: a box with no pixel in the map (empty, or outside the
    map) is no object, as its mask would be empty.

    Args:
      saliency_maps: ``N`` maps ``[H, W]`` (an ``[N, H, W]`` array or a list).
      masks: ``N`` bool object masks, each the shape of its map.
      boxes: ``[N, 4]``, or a length-``N`` list of ``[M_i, 4]`` (exclusive ends):
        a hit on any of an image's boxes counts.
      tolerance: pixels of slack around the object, the game's 15 (0: on the
        object only).

    Returns:
      bool ``[N]``; an image without objects is a miss.
    """
    if not isinstance(saliency_maps, (list, tuple)) and np.ndim(saliency_maps) == 2:
        raise ValueError(
            f"saliency_maps must be N maps [N, H, W] (or a list of [H, W]), got one map of shape "
            f"{np.shape(saliency_maps)} (use saliency[None])"
        )
    if (masks is None) == (boxes is None):
        raise ValueError("pass the objects as exactly one of masks= or boxes=")
    maps = [_as_map(saliency, f"saliency_maps[{i}]") for i, saliency in enumerate(saliency_maps)]
    tolerance = _checks.check_number(tolerance, "tolerance", low=0.0)
    hits = []
    if masks is not None:
        if isinstance(masks, (str, bytes)) or not hasattr(masks, "__iter__"):
            raise ValueError(f"masks must hold one mask per map ({len(maps)}), got {type(masks).__name__}")
        masks = list(masks)  # any iterable, a generator too
        if len(masks) != len(maps):
            raise ValueError(f"masks must hold one mask per map ({len(maps)}), got {len(masks)}")
        for saliency, mask in zip(maps, masks):
            mask = _as_mask(mask, "masks")
            if mask.shape != np.shape(saliency):
                raise ValueError(f"masks must match the maps' shape {np.shape(saliency)}, got {mask.shape}")
            y, x = saliency_peak(saliency)
            # Distance from the peak to the nearest object pixel.
            hits.append(bool(mask.any()) and _near(ndimage.distance_transform_edt(~mask)[y, x], tolerance))
        return np.array(hits, dtype=bool)
    for saliency, object_boxes in zip(maps, _ground_truth_list(boxes, len(maps), "boxes")):
        y, x = saliency_peak(saliency)
        height, width = np.shape(saliency)
        # The box's pixels in the map; a box with none (empty, or outside) is no object.
        object_boxes = np.clip(object_boxes, 0, [width, height, width, height])
        inside = (object_boxes[:, 2] > object_boxes[:, 0]) & (object_boxes[:, 3] > object_boxes[:, 1])
        object_boxes = object_boxes[inside]
        # Distance from pixel (x, y) to the nearest pixel of each box, columns x0 .. x1 - 1.
        dx = np.maximum(np.maximum(object_boxes[:, 0] - x, x - (object_boxes[:, 2] - 1)), 0)
        dy = np.maximum(np.maximum(object_boxes[:, 1] - y, y - (object_boxes[:, 3] - 1)), 0)
        hits.append(bool(len(object_boxes)) and bool(_near(np.hypot(dx, dy), tolerance).any()))
    return np.array(hits, dtype=bool)


def _near(distance, tolerance: float):
    """On the object, or closer than ``tolerance`` (strictly, as TorchRay)."""
    return (distance == 0) | (distance < tolerance)


def pointing_accuracy(saliency_maps, *, masks=None, boxes=None, tolerance: float = 15.0) -> float:
    """Fraction of hits in the pointing game; see :func:`pointing_hits`. ``nan`` for no maps."""
    hits = pointing_hits(saliency_maps, masks=masks, boxes=boxes, tolerance=tolerance)
    return float(hits.mean()) if hits.size else float("nan")

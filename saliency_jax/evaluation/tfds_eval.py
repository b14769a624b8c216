"""Localisation on real benchmarks through TFDS: PASCAL VOC 2007 and ImageNet 2012 validation.

Both read prepared TFDS datasets with ``tfds.data_source`` (random access, no
TensorFlow needed; prepare them with ``file_format="array_record"``), falling back
to ``tfds.load`` when TensorFlow is installed. Nothing here downloads: a dataset
that is not prepared raises.

* ``voc/2007``: every object's box and class (20 VOC classes). The classes are not
  ImageNet's, so an ImageNet model is scored class-agnostically: its top-1 box
  is correct if it overlaps any object by IoU >= 0.5 (CorLoc), and its map's
  maximum is scored in the pointing game.
* ``imagenet2012``: TFDS holds the validation images and labels but not their
  boxes; give the ILSVRC 2012 validation box annotations (the folder of
  ``ILSVRC2012_val_*.xml`` files, or the ``LOC_val_solution.csv`` table) and they
  are joined on the file name. Scored with the ILSVRC top-5 localisation error
  (paper §3.2) and top-1 localisation accuracy (the top-1 class is the label and
  its box has IoU >= 0.5 with a box of the label, as in the CAM paper).

Boxes come out as ``x0, y0, x1, y1`` int pixels with exclusive ends.
"""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from saliency_jax import _checks
from saliency_jax.evaluation import metrics
from saliency_jax.training.input_pipeline import load_source


class LocalisationExample(NamedTuple):
    """One image with its objects.

    Attributes:
      image: uint8 ``[H, W, 3]``.
      boxes: int64 ``[M, 4]``, ``x0, y0, x1, y1``, exclusive ends.
      labels: int64 ``[M]``, each box's class in the dataset's label space.
      name: the image's file name.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    name: str


class Prediction(NamedTuple):
    """A model's guesses for one image.

    Attributes:
      classes: int ``[K]``, best first (``K <= 5``).
      boxes: ``[K, 4]`` in the image's pixels, one per class.
      saliency: ``[H, W]`` map of the top-1 class at the image's size, or
        ``None`` to skip the pointing game.
    """

    classes: np.ndarray
    boxes: np.ndarray
    saliency: np.ndarray | None = None


class RealScores(NamedTuple):
    """Scores on a real benchmark.

    Attributes:
      num_images: images scored.
      top1_accuracy: top-1 localisation accuracy. With classes (ImageNet): the
        fraction whose top-1 class is the label and whose top-1 box has IoU >= 0.5
        with a box of the label (1 - the top-1 localisation error). Class-agnostic
        (VOC, CorLoc): the fraction whose top-1 box has IoU >= 0.5 with any object.
      top5_error: ILSVRC top-5 localisation error (``nan`` when class-agnostic).
      pointing: pointing-game accuracy of the top-1 maps (``nan`` without maps).
    """

    num_images: int
    top1_accuracy: float
    top5_error: float
    pointing: float


def _check_limit(limit) -> int | None:
    return None if limit is None else _checks.check_int(limit, "limit", 0)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _take(source, limit: int | None) -> Iterator:
    count = len(source) if limit is None else min(limit, len(source))
    for index in range(count):
        yield source[index]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def normalised_to_pixels(bbox: np.ndarray, height: int, width: int, *, one_based: bool = False) -> np.ndarray:
    """TFDS ``BBoxFeature`` boxes to pixel boxes.

    Args:
      bbox: float ``[M, 4]``, ``ymin, xmin, ymax, xmax`` as fractions of the size.
      height: the image's height.
      width: the image's width.
      one_based: the fractions were made from 1-based inclusive pixel indices
        (VOC's annotation files): subtract 1 from the start.

    Returns:
      int64 ``[M, 4]``, ``x0, y0, x1, y1`` with exclusive ends, clipped to the image.
    """
    height = _checks.check_int(height, "height", 1)
    width = _checks.check_int(width, "width", 1)
    try:
        bbox = np.asarray(bbox, np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"bbox must be real numbers [M, 4] (ymin, xmin, ymax, xmax), got {type(bbox).__name__}"
        ) from None
    if bbox.size % 4 or (bbox.ndim and bbox.shape[-1] != 4):
        raise ValueError(f"bbox must have shape [M, 4] (ymin, xmin, ymax, xmax), got shape {bbox.shape}")
    if not np.isfinite(bbox).all():
        raise ValueError("bbox contains NaN or infinite coordinates")
    bbox = bbox.reshape(-1, 4)
    # Pixel coordinates given by mistake, or a flipped box, would clip to a plausible edge box.
    if bbox.size and (bbox.min() < 0.0 or bbox.max() > 1.0):
        raise ValueError(
            "bbox must be fractions of the image's size in [0, 1] (ymin, xmin, ymax, xmax), got values from "
            f"{bbox.min():g} to {bbox.max():g} (pixel coordinates? divide by the height and width)"
        )
    inverted = (bbox[:, 2] < bbox[:, 0]) | (bbox[:, 3] < bbox[:, 1])
    if inverted.any():
        row = int(np.argmax(inverted))
        raise ValueError(
            f"bbox must have ymin <= ymax and xmin <= xmax in every box, got {bbox[row].tolist()} "
            f"(box {row}; TFDS order is ymin, xmin, ymax, xmax)"
        )
    ymin, xmin, ymax, xmax = (bbox[:, i] for i in range(4))
    shift = 1 if one_based else 0
    x0 = np.clip(np.round(xmin * width) - shift, 0, width)
    y0 = np.clip(np.round(ymin * height) - shift, 0, height)
    x1 = np.clip(np.round(xmax * width), 0, width)
    y1 = np.clip(np.round(ymax * height), 0, height)
    return np.stack([x0, y0, np.maximum(x1, x0), np.maximum(y1, y0)], axis=-1).astype(np.int64)


def voc_examples(
    split: str = "test",
    *,
    data_dir: str | None = None,
    limit: int | None = None,
    include_difficult: bool = False,
) -> Iterator[LocalisationExample]:
    """PASCAL VOC 2007 images with their objects' boxes, from TFDS ``voc/2007``.

    Args:
      split: ``"test"``, ``"validation"`` or ``"train"``.
      data_dir: TFDS data folder (TFDS's default if ``None``).
      limit: the most images to read.
      include_difficult: also score images whose objects are all marked
        difficult. Either way every object, difficult or not, is a target: a box
        or a peak on a difficult object is a hit, as in TorchRay's pointing game
        (VOC's own evaluation ignores such matches rather than counting a miss).

    Yields:
      :class:`LocalisationExample` with VOC class ids; without
      ``include_difficult``, images whose objects are all difficult are skipped.
    """
    limit = _check_limit(limit)
    include_difficult = _check_bool(include_difficult, "include_difficult")
    for example in _take(load_source("voc/2007", split, data_dir), limit):
        image = np.asarray(example["image"])
        objects = example["objects"]
        bbox = np.asarray(objects["bbox"]).reshape(-1, 4)
        labels = np.asarray(objects["label"]).reshape(-1)
        difficult = np.asarray(objects.get("is_difficult", np.zeros(len(labels), bool))).reshape(-1)
        if not (len(bbox) == len(labels) == len(difficult)):
            raise ValueError(
                f"voc/2007 example {_text(example.get('image/filename', '?'))!r} has {len(bbox)} boxes, "
                f"{len(labels)} labels and {len(difficult)} difficulty flags"
            )
        all_difficult = bool(difficult.astype(bool).all())
        if not len(labels) or (all_difficult and not include_difficult):
            continue
        boxes = normalised_to_pixels(bbox, image.shape[0], image.shape[1], one_based=True)
        yield LocalisationExample(image, boxes, labels.astype(np.int64), _text(example.get("image/filename", "")))


def _xml_boxes(file: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """The boxes and WordNet ids of one ILSVRC annotation file."""
    try:
        root = ElementTree.parse(file).getroot()
        boxes, wnids = [], []
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            coords = [float(box.find(tag).text) for tag in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append([coords[0], coords[1], coords[2] + 1, coords[3] + 1])
            wnids.append(obj.find("name").text.strip())
    except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
        raise ValueError(
            f"annotations: {file!r} is not an ILSVRC annotation (objects with a name and a bndbox of "
            f"xmin, ymin, xmax, ymax): {error}"
        ) from None
    return _annotation_boxes(boxes, file), tuple(wnids)


def _annotation_boxes(boxes, where: str) -> np.ndarray:
    array = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not np.isfinite(array).all() or (array[:, 2:] < array[:, :2]).any():
        raise ValueError(f"annotations: {where!r} has a box that is not finite with xmin <= xmax and ymin <= ymax")
    return array.astype(np.int64)


def read_imagenet_boxes(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, tuple[str, ...]]]:
    """ILSVRC 2012 validation boxes, keyed by image stem (``ILSVRC2012_val_00000001``).

    Args:
      path: a folder of the ILSVRC annotation XML files (searched recursively), or
        the ``LOC_val_solution.csv`` table (``ImageId,PredictionString`` with
        ``wnid x0 y0 x1 y1`` repeated).

    Returns:
      ``{stem: (boxes int64 [M, 4], wnids)}``. The annotations' ``xmax``/``ymax`` are
      inclusive pixel indices, so ``x1 = xmax + 1``.
    """
    path = os.fspath(path)
    found: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
    if os.path.isdir(path):
        for folder, _, files in os.walk(path):
            for file in sorted(files):
                if file.endswith(".xml"):
                    found[os.path.splitext(file)[0]] = _xml_boxes(os.path.join(folder, file))
        if not found:
            raise ValueError(f"annotations: no .xml files under {path!r}")
        return found
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotations: no such file or folder {path!r}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
            raise ValueError(
                f"annotations: {path!r} must be a table with the columns ImageId,PredictionString, "
                f"got columns {reader.fieldnames}"
            )
        for row in reader:
            fields = (row["PredictionString"] or "").split()
            if len(fields) % 5:
                raise ValueError(f"annotations: {row['ImageId']!r} has a PredictionString not in groups of 5")
            wnids = tuple(fields[0::5])
            try:
                coords = np.asarray([[float(v) for v in fields[i + 1 : i + 5]] for i in range(0, len(fields), 5)])
            except ValueError:
                raise ValueError(
                    f"annotations: {row['ImageId']!r} has a PredictionString whose groups are not "
                    f"'wnid x0 y0 x1 y1' with numbers"
                ) from None
            coords = coords.reshape(-1, 4)
            coords[:, 2:] += 1
            found[row["ImageId"]] = (_annotation_boxes(coords, row["ImageId"]), wnids)
    return found


def imagenet_examples(
    annotations: str | os.PathLike | dict,
    split: str = "validation",
    *,
    data_dir: str | None = None,
    limit: int | None = None,
) -> Iterator[LocalisationExample]:
    """ImageNet 2012 validation images (TFDS ``imagenet2012``) with their boxes.

    Args:
      annotations: a path for :func:`read_imagenet_boxes`, or its result.
      split: the TFDS split, ``"validation"``.
      data_dir: TFDS data folder.
      limit: the most images to read.

    Yields:
      :class:`LocalisationExample` with ImageNet class ids (TFDS's label order);
      images without annotations are skipped.
    """
    import tensorflow_datasets as tfds

    limit = _check_limit(limit)
    boxes = annotations if isinstance(annotations, dict) else read_imagenet_boxes(annotations)
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    wnids = builder.info.features["label"].names
    class_of = {wnid: i for i, wnid in enumerate(wnids)}
    for example in _take(load_source("imagenet2012", split, data_dir), limit):
        name = _text(example["file_name"])
        stem = os.path.splitext(os.path.basename(name))[0]
        if stem not in boxes:
            continue
        image = np.asarray(example["image"])
        these, their_wnids = boxes[stem]
        unknown = [w for w in their_wnids if w not in class_of]
        if unknown:
            raise ValueError(f"annotations: {stem!r} names unknown ImageNet classes {unknown}")
        height, width = image.shape[:2]
        clipped = np.clip(these, 0, [width, height, width, height])
        labels = np.asarray([class_of[w] for w in their_wnids], np.int64)
        yield LocalisationExample(image, clipped, labels, name)


def evaluate(
    examples: Iterable[LocalisationExample],
    predict: Callable[[np.ndarray], Prediction],
    *,
    class_agnostic: bool,
    tolerance: float = 15.0,
) -> RealScores:
    """Scores a predictor on real examples.

    Args:
      examples: from :func:`voc_examples` or :func:`imagenet_examples`.
      predict: ``image -> Prediction`` (e.g. the model's top-5 classes, one GraphCut
        box per class, and the top-1 map).
      class_agnostic: score boxes against every object whatever its class (VOC
        with an ImageNet model); otherwise the ILSVRC protocol with classes.
      tolerance: the pointing game's slack in pixels.

    Returns:
      :class:`RealScores`.

    Raises:
      ValueError: for no examples (a split, limit or annotation join that left
        nothing to score), an example that is not a :class:`LocalisationExample`,
        or a prediction that is not ``K >= 1`` classes ``[K]`` with boxes
        ``[K, 4]`` and a map at the image's size.
    """
    class_agnostic = _check_bool(class_agnostic, "class_agnostic")
    tolerance = _checks.check_number(tolerance, "tolerance", low=0.0)
    top1_hits, top5_misses, points = [], [], []
    for index, example in enumerate(examples):
        if not isinstance(example, LocalisationExample):
            raise ValueError(
                f"examples must yield LocalisationExample (image, boxes, labels, name), got "
                f"{type(example).__name__} at position {index}"
            )
        example = _checked_example(example, index)
        guess = predict(example.image)
        if not (hasattr(guess, "classes") and hasattr(guess, "boxes") and hasattr(guess, "saliency")):
            raise ValueError(f"predict must return a Prediction (classes, boxes, saliency), got {type(guess).__name__}")
        classes, boxes = _prediction_arrays(guess)
        if class_agnostic:
            targets = example.boxes
        elif len(example.labels):
            targets = example.boxes[example.labels == example.labels[0]]  # the image's label
        else:
            targets = example.boxes[:0]  # no objects: nothing to hit
        if not class_agnostic:
            top5_misses.append(
                metrics.top5_localisation_error(classes[None, :5], boxes[None, :5], [example.labels], [example.boxes])
            )
        box_hit = bool(metrics.localisation_hits(boxes[:1], [targets])[0])
        top1_hits.append(box_hit if class_agnostic else box_hit and len(targets) > 0
                         and int(classes[0]) == int(example.labels[0]))
        if guess.saliency is not None:
            if np.shape(guess.saliency) != np.shape(example.image)[:2]:
                raise ValueError(
                    f"predict must return a saliency map at the image's size {np.shape(example.image)[:2]}, "
                    f"got shape {np.shape(guess.saliency)} (resize the map to the image)"
                )
            # The same objects as the top-1 box: the image's label's, or any with class_agnostic.
            points.append(bool(metrics.pointing_hits([guess.saliency], boxes=[targets], tolerance=tolerance)[0]))
    count = len(top1_hits)
    if not count:
        raise ValueError("examples must hold at least one image to score, got none")
    return RealScores(
        num_images=count,
        top1_accuracy=float(np.mean(top1_hits)),
        top5_error=float(np.mean(top5_misses)) if top5_misses else float("nan"),
        pointing=float(np.mean(points)) if points else float("nan"),
    )


def _checked_example(example: LocalisationExample, index: int) -> LocalisationExample:
    """``example`` with ``[M, 4]`` boxes clipped to its ``[H, W, 3]`` image and ``[M]`` integer labels."""
    where = f"example {index} ({example.name!r})"
    image = np.asarray(example.image)
    if image.ndim != 3 or image.shape[2] != 3 or not min(image.shape[:2]):
        raise ValueError(f"{where}: image must be [H, W, 3] with H, W >= 1, got shape {image.shape}")
    try:
        boxes = np.asarray(example.boxes, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: boxes must be real numbers [M, 4] (x0, y0, x1, y1), got "
                         f"{type(example.boxes).__name__}") from None
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{where}: boxes must have shape [M, 4] (x0, y0, x1, y1), got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{where}: boxes must be finite, got {boxes.tolist()}")
    labels = np.asarray(example.labels)
    if labels.ndim != 1 or len(labels) != len(boxes):
        raise ValueError(f"{where}: labels must have shape [M], one per box ({len(boxes)}), got shape "
                         f"{labels.shape}")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integer class ids, got dtype {labels.dtype}")
    height, width = image.shape[:2]
    kept = np.asarray(example.boxes).reshape(boxes.shape)  # integer boxes stay integer
    if not np.issubdtype(kept.dtype, np.integer):
        kept = boxes
    clipped = np.clip(kept, 0, np.array([width, height, width, height], kept.dtype))
    return example._replace(image=image, boxes=clipped, labels=labels.astype(np.int64))


def _prediction_arrays(guess) -> tuple[np.ndarray, np.ndarray]:
    """A prediction's classes ``[K]`` and boxes ``[K, 4]``, refusing any other shape.

    Reshaping would silently pair classes with other boxes: ``[4, 2]`` for two
    classes holds the same eight numbers as ``[2, 4]``, but not the same boxes.
    """
    if guess.classes is None:
        raise ValueError("predict's classes must be int [K] with K >= 1 (best first), got None")
    classes = np.asarray(guess.classes)
    if classes.ndim != 1 or not len(classes):
        raise ValueError(f"predict's classes must have shape [K] with K >= 1 (best first), got shape {classes.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"predict's classes must be integer class ids, got dtype {classes.dtype}")
    count = len(classes)
    if guess.boxes is None:
        raise ValueError(f"predict's boxes must be [{count}, 4] (x0, y0, x1, y1), one per class, got None")
    try:
        boxes = np.asarray(guess.boxes, np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"predict's boxes must be real numbers [{count}, 4] (x0, y0, x1, y1), one per class, got "
            f"{type(guess.boxes).__name__}"
        ) from None
    if boxes.shape != (count, 4):
        raise ValueError(
            f"predict's boxes must have shape [K, 4] (x0, y0, x1, y1), one per class: [{count}, 4] for "
            f"{count} class{'es' if count != 1 else ''}, got shape {boxes.shape}"
        )
    return classes, np.asarray(guess.boxes)


def format_scores(rows: Sequence[tuple[str, str, RealScores]]) -> str:
    """A Markdown table of ``(dataset, seed map, scores)`` rows."""
    def number(value: float) -> str:
        return "-" if np.isnan(value) else f"{value:.3f}"

    lines = [
        "| dataset | seed map | images | top-1 loc. acc. | top-5 loc. error | pointing game |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, seed_map, s in rows:
        lines.append(
            f"| {dataset} | {seed_map} | {s.num_images} | {number(s.top1_accuracy)} | "
            f"{number(s.top5_error)} | {number(s.pointing)} |"
        )
    return "\n".join(lines)

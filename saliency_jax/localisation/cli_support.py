"""What ``saliency-jax localise IMAGE... [--class C] [--out DIR]`` does, as a function.

For each input ``<stem>`` it writes, atomically (a temporary file in ``DIR``
renamed into place):

* ``DIR/<stem>_mask.png``: the object mask, 0/255 uint8 at the input's size;
* ``DIR/<stem>_box.json``: ``{"box": [x0, y0, x1, y1], "class": c}`` in the input's
  pixels, ``x1``/``y1`` exclusive;
* ``DIR/<stem>_localisation.png``: the paper's Figure 3 panels (image, saliency
  map, seeds, GraphCut mask, box).

The map and the GraphCut run at the model's resolution (the input resized to a
square); the mask is scaled back to the input with nearest-neighbour sampling
and the box is taken from the scaled mask. Importing this module does not import
JAX; only the default model (loaded when no ``explain`` function is given) does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from saliency_jax.localisation.components import bounding_box
from saliency_jax.localisation.config import GraphCutConfig
from saliency_jax.localisation.pipeline import Localisation, localise_many
from saliency_jax.localisation.visualise import PANEL_TITLES, box_panel, localisation_panels

# (images float32 [B, S, S, 3] on 0-255, classes int [B] or None) -> (maps [B, S, S], classes [B])
ExplainFn = Callable[[np.ndarray, "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]


class LocalisationOutputs(NamedTuple):
    """The files written for one input."""

    mask: str
    box: str
    figure: str


def localisation_outputs(out_dir: str | os.PathLike, stem: str) -> LocalisationOutputs:
    """The three output paths of input ``stem`` in ``out_dir``."""
    out_dir = os.fspath(out_dir)
    return LocalisationOutputs(
        mask=os.path.join(out_dir, f"{stem}_mask.png"),
        box=os.path.join(out_dir, f"{stem}_box.json"),
        figure=os.path.join(out_dir, f"{stem}_localisation.png"),
    )


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A bool mask resized to ``[height, width]`` by nearest-neighbour sampling."""
    mask = np.asarray(mask, bool)
    if mask.shape == (height, width):
        return mask.copy()
    small = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(small.resize((width, height), Image.NEAREST)) > 127


def write_localisation(
    out_dir: str | os.PathLike,
    stem: str,
    image: np.ndarray,
    work_image: np.ndarray,
    saliency: np.ndarray,
    found: Localisation,
    class_id: int,
    *,
    title: str = "",
) -> LocalisationOutputs:
    """Writes the mask, box and figure of one input.

    Args:
      out_dir: output folder (created if needed).
      stem: the input's name.
      image: the input, uint8 ``[H, W, 3]``.
      work_image: the image the pipeline ran on, ``[h, w, 3]``.
      saliency: its ``[h, w]`` map.
      found: the pipeline's result on ``work_image``.
      class_id: the class the map explains.
      title: the figure's title.

    Returns:
      :class:`LocalisationOutputs`.
    """
    from saliency_jax import figures, io

    paths = localisation_outputs(out_dir, stem)
    height, width = np.shape(image)[:2]
    mask = resize_mask(found.mask, height, width)
    box = bounding_box(mask)
    io.save_png(paths.mask, mask.astype(np.uint8) * 255)
    io.save_json(paths.box, {"box": [int(v) for v in box], "class": int(class_id)})
    panels = localisation_panels(work_image, saliency, found)
    panels[-1] = box_panel(image, box)  # the box in the input's own pixels
    figure = figures.image_grid(panels, list(PANEL_TITLES), columns=len(panels))
    if title:
        figure.suptitle(title, fontsize=9)
    io.save_figure(paths.figure, figure)
    return paths


def default_explain(seed_map: str = "paper", *, batch_size: int = 8) -> tuple[ExplainFn, int, tuple[str, ...]]:
    """The embedded EfficientNet-Lite0's maps: ``(explain, image_size, class_names)``.

    Loads the model (and JAX). ``explain(images, classes)`` returns the chosen
    seed map (see :func:`saliency_jax.evaluation.seed_maps.seed_map_fn`) of each
    image's given class, or of its top-1 class when ``classes`` is ``None``.
    """
    from saliency_jax.evaluation.model_maps import saliency_fn, top_classes
    from saliency_jax.evaluation.seed_maps import seed_map_fn
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    model = load_efficientnet_lite0()
    maps_fn = seed_map_fn(seed_map, saliency_fn(model, batch_size=batch_size))

    def explain(images, classes):
        if classes is None:
            classes = top_classes(model, images, 1, batch_size=batch_size)[:, 0]
        classes = np.asarray(classes, np.int64)
        return maps_fn(images, classes), classes

    return explain, model.image_size, tuple(model.class_names)


def localise_command(
    images: Sequence[str | os.PathLike],
    *,
    class_id: int | None = None,
    out: str | os.PathLike = "outputs",
    config: GraphCutConfig = GraphCutConfig(),
    seed_map: str = "paper",
    processes: int = 1,
    explain: ExplainFn | None = None,
    image_size: int = 224,
    class_names: Sequence[str] | None = None,
    progress: bool = False,
) -> list[LocalisationOutputs]:
    """Localises the object of ``class_id`` (default: each image's top-1) in each input.

    Reads every input before any work, so a bad file fails early; two inputs
    with the same stem are an error (their outputs would collide).

    Args:
      images: paths (or ``bundled:NAME`` for a photo that ships with
        scikit-image/scikit-learn).
      class_id: ImageNet class id to explain, or ``None`` for each image's top-1.
      out: output folder.
      config: GraphCut settings.
      seed_map: ``"paper"``, ``"flip-shift"`` or ``"smoothgrad"`` (used by the
        default model only).
      processes: GraphCut worker processes (1 = no pool).
      explain: ``(images, classes or None) -> (maps, classes)`` on float32
        ``[B, image_size, image_size, 3]`` images; default: the embedded
        EfficientNet-Lite0 with ``seed_map``.
      image_size: the square side ``explain`` takes (the default model's 224).
      class_names: names for the figure titles (the default model's if ``None``).
      progress: show progress bars.

    Returns:
      One :class:`LocalisationOutputs` per input, in order.
    """
    from saliency_jax import io

    stems = [io.image_stem(p) for p in images]
    if not stems:
        raise ValueError("images must name at least one image")
    if len(set(stems)) != len(stems):
        raise ValueError("images: two inputs share a file stem, so their outputs would collide")
    photos = [io.load_image(p) for p in images]
    if explain is None:
        explain, image_size, default_names = default_explain(seed_map)
        class_names = default_names if class_names is None else class_names
    work = np.stack([io.resize_image(photo, image_size) for photo in photos])
    classes = None if class_id is None else np.full(len(work), int(class_id), np.int64)
    maps, classes = explain(work, classes)
    maps = np.asarray(maps, np.float32)
    found = localise_many(work, maps, config, processes=processes, progress=progress)
    written = []
    for stem, photo, image, saliency, result, c in zip(stems, photos, work, maps, found, classes):
        title = f"{stem}: class {int(c)}" + (f" ({class_names[int(c)]})" if class_names is not None else "")
        written.append(write_localisation(out, stem, photo, image, saliency, result, int(c), title=title))
    return written

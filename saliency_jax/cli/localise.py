"""``saliency-jax localise IMAGE... [--class C] [--seed-map NAME] [--out DIR]`` (paper §3.2).

For each input ``<stem>`` it writes, atomically:

* ``<stem>_mask.png``: the object mask, 0/255 uint8 at the input's size;
* ``<stem>_box.json``: ``{"box": [x0, y0, x1, y1], "class": c, "method": m}`` in the
  input's pixels, ``x1``/``y1`` exclusive, plus the settings that made it;
* ``<stem>_localisation.png``: the paper's Figure 3 panels (image, saliency map,
  seeds, GraphCut mask, box).

An input that cannot be localised (a 1x1 image, a map with one value) is
reported by name; the others are still written, and the command exits with
status 1 at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import NamedTuple

import numpy as np
from PIL import Image

from saliency_jax.cli import _common

COMMAND = "localise"


class LocalisationOutputs(NamedTuple):
    """The files written for one input."""

    mask: str
    box: str
    figure: str


def outputs(out: str, stem: str) -> LocalisationOutputs:
    """The three output paths of input ``stem`` in ``out``."""
    return LocalisationOutputs(os.path.join(out, f"{stem}_mask.png"), os.path.join(out, f"{stem}_box.json"),
                               os.path.join(out, f"{stem}_localisation.png"))


def add_parser(subparsers) -> argparse.ArgumentParser:
    from saliency_jax.evaluation.model_maps import SEED_MAPS

    p = subparsers.add_parser(COMMAND, help="weakly supervised localisation with GraphCut (paper §3.2)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or bundled:NAME")
    p.add_argument("--class", dest="class_", metavar="C", default=None,
                   help="ImageNet class id, WordNet id or name to localise (default: each image's top-1)")
    p.add_argument("--seed-map", choices=SEED_MAPS, default="paper",
                   help="the map that seeds GraphCut: paper = the plain gradient map (§3.1); flip-shift = "
                        "averaged over flips and shifts; smoothgrad = SmoothGrad (16 samples, 15%% noise)")
    p.add_argument("--pairwise-weight", type=float, default=None, help="GraphCut smoothness weight")
    p.add_argument("--processes", type=_common.positive_int, default=1, help="GraphCut worker processes")
    _common.add_common_options(p, batch_size=8, batch_help="images per compiled batch")
    _common.add_image_options(p)
    p.set_defaults(run=run)
    return p


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A bool mask resized to ``[height, width]`` by nearest-neighbour sampling."""
    mask = np.asarray(mask, bool)
    if mask.shape == (height, width):
        return mask.copy()
    small = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(small.resize((width, height), Image.NEAREST)) > 127


def _localise_each(work, maps, config, processes, progress):
    """One result (or the ``ValueError`` that refused it) per image."""
    from saliency_jax.localisation import localise, localise_many

    if processes > 1:
        try:
            return localise_many(work, maps, config, processes=processes, progress=progress)
        except ValueError:
            pass  # find which images failed, one at a time
    found = []
    for image, saliency in zip(work, maps):
        try:
            found.append(localise(image, saliency, config))
        except ValueError as error:
            found.append(error)
    return found


def run(args: argparse.Namespace, classifier=None) -> int:
    from saliency_jax import figures, io
    from saliency_jax.evaluation.model_maps import seed_map_explainer
    from saliency_jax.localisation import GraphCutConfig, bounding_box

    config = GraphCutConfig()
    if args.pairwise_weight is not None:
        config = dataclasses.replace(config, pairwise_weight=args.pairwise_weight)
    stems = _common.input_stems(args.images)
    out = _common.prepare_out_dir(args.out)
    # Read every input before loading the model: a bad file fails before any work.
    read = {p: io.load_image(p, max_pixels=args.max_pixels) for p in args.images}
    if classifier is None:
        classifier = _common.load_classifier(args.model)
    forced = None if args.class_ is None else _common.resolve_class(args.class_, classifier.class_names)
    settings = {"model": args.model, "method": args.seed_map, "class": forced,
                "graphcut": dataclasses.asdict(config)}
    todo = []
    for path, stem in zip(args.images, stems):
        files = outputs(out, stem)
        record = _common.claim_outputs(files.box, COMMAND, _common.source_name(path))
        if not (args.resume and _common.up_to_date(record, settings, [files.mask, files.figure])):
            todo.append((path, stem))
    photos = [read[p] for p, _ in todo]
    failed = []
    if todo:
        explain = seed_map_explainer(classifier, args.seed_map, batch_size=args.batch_size, seed=args.seed)
        work = np.stack([io.resize_image(photo, classifier.image_size) for photo in photos])
        classes = None if forced is None else np.full(len(work), forced, np.int64)
        maps, classes = explain(work, classes)
        maps = np.asarray(maps, np.float32)
        progress = _common.progress_enabled(args) is not True
        found = _localise_each(work, maps, config, args.processes, progress and args.processes > 1)
        for (path, stem), photo, image, saliency, result, c in zip(todo, photos, work, maps, found, classes):
            if isinstance(result, Exception):
                failed.append(path)
                print(f"saliency-jax {COMMAND}: {path}: cannot localise: {result}", file=sys.stderr)
                continue
            files = outputs(out, stem)
            height, width = photo.shape[:2]
            mask = resize_mask(result.mask, height, width)
            box = bounding_box(mask)
            panels = figures.localisation_panels(image, saliency, result)
            panels[-1] = figures.box_panel(photo, box)  # the box in the input's own pixels
            figure = figures.image_grid(panels, list(figures.PANEL_TITLES), columns=len(panels))
            figure.suptitle(f"{stem}: class {int(c)} ({classifier.class_names[int(c)]})", fontsize=9)
            io.save_png(files.mask, mask.astype(np.uint8) * 255)
            io.save_figure(files.figure, figure)
            io.save_json(files.box, {"box": [int(v) for v in box], "class": int(c), "method": args.seed_map,
                                     "command": COMMAND, "input": _common.source_name(path),
                                     "settings": settings})
    written = len(todo) - len(failed)
    skipped = len(args.images) - len(todo)
    print(f"wrote {written} localisation(s) to {args.out}/" + (f" ({skipped} already there)" if skipped else ""))
    if failed:
        print(f"saliency-jax {COMMAND}: could not localise {len(failed)} image(s): {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0

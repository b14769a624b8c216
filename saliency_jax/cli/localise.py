"""``saliency-jax localise IMAGE... [--class C] [--seed-map NAME] [--out DIR]`` (paper §3.2).

``--seed-map`` names a variant (:data:`saliency_jax.evaluation.localisation_variants.VARIANTS`):
the map that seeds the GraphCut and the GraphCut's settings. ``paper`` is exactly
the paper; the default is the variant with the best mean box IoU on the
generated multi-object scenes. The map is computed at the model's input size
and the GraphCut runs on the photo itself (longest side at most ``--max-side``).
For each input ``<stem>`` it writes, atomically:

* ``<stem>_mask.png``: the object mask, 0/255 uint8 at the input's size;
* ``<stem>_box.json``: ``{"box": [x0, y0, x1, y1], "class": c, "method": m, "from_seeds": f}``
  in the input's pixels, ``x1``/``y1`` exclusive, plus the settings that made it;
  ``from_seeds`` is true when the GraphCut kept no foreground and the box is
  that of the largest group of foreground seeds (which the paper does not give);
* ``<stem>_localisation.png``: the paper's Figure 3 panels (image, saliency map,
  seeds, GraphCut mask, box).

An input that cannot be localised (a 1x1 image, a map with one value) is
reported by name, as is one that cannot be read or written; the others are
still written, and the command exits with status 1 at the end. Inputs are read a
batch at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import NamedTuple

import numpy as np

from saliency_jax import _batching
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
    from saliency_jax.evaluation.localisation_variants import DEFAULT_VARIANT, VARIANTS

    p = subparsers.add_parser(COMMAND, help="weakly supervised localisation with GraphCut (paper §3.2)",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="seed maps (--seed-map):\n" + "\n".join(
                                  f"  {name}: {v.description}" for name, v in VARIANTS.items()))
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or bundled:NAME")
    p.add_argument("--class", dest="class_", metavar="C", default=None,
                   help="ImageNet class id, WordNet id or name to localise (default: each image's top-1)")
    p.add_argument("--seed-map", choices=tuple(VARIANTS), default=DEFAULT_VARIANT, metavar="NAME",
                   help=f"the map that seeds GraphCut and the segmentation settings, one of {', '.join(VARIANTS)} "
                        f"(default: {DEFAULT_VARIANT}, the best on the generated multi-object scenes; "
                        "paper = exactly the paper; see below)")
    p.add_argument("--pairwise-weight", type=float, default=None, help="GraphCut smoothness weight")
    p.add_argument("--max-side", type=_common.plain_int, default=512, metavar="PX",
                   help="the GraphCut runs on the photo reduced to this longest side (default: 512; 0: never reduce)")
    p.add_argument("--processes", type=_common.positive_int, default=1, help="GraphCut worker processes")
    _common.add_common_options(p, batch_size=8, batch_help=_common.IMAGE_BATCH_HELP)
    _common.add_image_options(p)
    p.set_defaults(run=run)
    return p


def _localise_each(photos, maps, config, processes):
    """One result (or the ``ValueError`` that refused it) per photo, at the photo's resolution."""
    from saliency_jax.localisation import localise_photo

    def one(job):
        photo, saliency = job
        try:
            return localise_photo(photo, saliency, config)
        except ValueError as error:
            return error

    if processes > 1:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(processes) as pool:  # max-flow and numpy release the GIL
            return list(pool.map(one, zip(photos, maps)))
    return [one(job) for job in zip(photos, maps)]


def run(args: argparse.Namespace, classifier=None) -> int:
    import jax

    from saliency_jax import figures, io
    from saliency_jax.evaluation.localisation_variants import VARIANTS, variant_maps
    from saliency_jax.evaluation.model_maps import top_classes

    config = VARIANTS[args.seed_map].config
    try:
        changes = {"max_side": args.max_side}
        if args.pairwise_weight is not None:
            changes["pairwise_weight"] = args.pairwise_weight
        config = dataclasses.replace(config, **changes)
    except ValueError as e:
        raise _common.CommandError(f"--pairwise-weight/--max-side: {e}") from None
    out = _common.prepare_out_dir(args.out, args.images)
    # Headers only, before the model loads: a missing or refused file is named before any work.
    inputs, failed = _common.check_inputs(COMMAND, args.images, args.max_pixels)
    unread = len(failed)  # inputs that cannot be read: from their headers, then when decoded
    records = {}
    for item in inputs:
        files = outputs(out, item.stem)
        records[item.path] = _common.check_outputs(files.box, (files.mask, files.figure), COMMAND, item.source,
                                                   args.images)
    if classifier is None:
        classifier = _common.load_classifier(args.model)
    forced = None if args.class_ is None else _common.resolve_class(args.class_, classifier.class_names)
    settings = {"model": args.model, "method": args.seed_map, "class": forced, "seed": args.seed,
                "graphcut": dataclasses.asdict(config)}
    todo = [item for item in inputs
            if not (args.resume and _common.up_to_date(records[item.path], settings, item.identity, out))]
    unlocalised, written = [], 0
    key = jax.random.key(args.seed)
    rows = _batching.rows_per_call(len(todo), args.batch_size)  # every batch this size: one compilation
    for start in range(0, len(todo), rows):
        chunk, photos = [], []
        for item in todo[start:start + rows]:  # read a batch at a time: memory stays flat
            try:
                photos.append(_common.load_input(item, args.max_pixels))
                chunk.append(item)
            except (OSError, ValueError) as e:
                _common.report(COMMAND, str(e))
                failed.append(item.path)
                unread += 1
        if not chunk:
            continue
        work = _batching.pad_rows(np.stack([io.resize_image(photo, classifier.image_size) for photo in photos]), rows)
        if forced is None:
            classes = top_classes(classifier, work, 1, batch_size=args.batch_size)[:, 0]
        else:
            classes = np.full(len(work), forced, np.int64)
        maps, _ = variant_maps(classifier, work, classes, args.seed_map, key=key, batch_size=args.batch_size)
        maps, classes = maps[:len(chunk)], classes[:len(chunk)]  # the padding's rows dropped
        found = _localise_each(photos, maps, config, args.processes)
        for item, photo, saliency, result, c in zip(chunk, photos, maps, found, classes):
            if isinstance(result, Exception):
                unlocalised.append(item.path)
                _common.report(COMMAND, f"{item.path!r}: cannot localise: {result}")
                continue
            files = outputs(out, item.stem)
            panels = figures.localisation_panels(photo, io.resize_map(saliency, *photo.shape[:2]), result)
            figure = figures.image_grid(panels, figures.localisation_titles(result), columns=len(panels))
            figures.title_above(figure, _common.printable(
                f"{item.stem}: class {int(c)} ({classifier.class_names[int(c)]}), {args.seed_map}"))
            try:
                _common.write_outputs(files.box, {
                    "box": [int(v) for v in result.box], "class": int(c), "method": args.seed_map,
                    "from_seeds": bool(result.from_seeds),
                    "command": COMMAND, "input": item.source, "identity": item.identity, "settings": settings,
                }, [(files.mask, lambda p: io.save_png(p, result.mask.astype(np.uint8) * 255)),
                    (files.figure, lambda p: io.save_figure(p, figure))])
                written += 1
            except _common.OutputError as e:
                _common.report(COMMAND, str(e))
                failed.append(item.path)
    skipped = len(inputs) - len(todo)
    _common.say(f"wrote {written} localisation(s) to {args.out}/" + (f" ({skipped} already there)" if skipped else ""))
    if unlocalised:
        _common.report(COMMAND, f"could not localise {len(unlocalised)} image(s): {', '.join(map(repr, unlocalised))}")
    if failed:
        _common.report(COMMAND, f"could not read or write {len(failed)} image(s): {', '.join(map(repr, failed))}")
    if unread == len(args.images):
        return 2  # no input could be read at all (README: a refusal)
    return 1 if unlocalised or failed else 0


if __name__ == "__main__":  # python -m saliency_jax.cli.<module> ...: this subcommand of saliency-jax
    import sys

    from saliency_jax.cli import main

    sys.exit(main([COMMAND, *sys.argv[1:]]))

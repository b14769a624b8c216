"""``saliency-jax saliency IMAGE... [--class C] [--rule R] [--out DIR]``: saliency maps (paper §3).

For each input ``<stem>`` it writes, atomically:

* ``<stem>_saliency.npy``: float32 ``[S, S]`` (``S`` the model's input size, 224
  for Lite0), non-negative: ``max_c |dS_c/dI|`` in score units per raw 0-255 pixel;
* ``<stem>_saliency.png``: the photo beside its map;
* ``<stem>.json``: ``{"class": c, "top5": [[id, name, p], ...], "method": ...}``
  plus the settings that made the files (what ``--resume`` compares).
"""

from __future__ import annotations

import argparse
import functools
import os

import numpy as np

from saliency_jax.backprop_rules import RULES
from saliency_jax.cli import _common

COMMAND = "saliency"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(COMMAND, help="image-specific class saliency maps (paper §3)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or bundled:NAME for a photo that ships with scikit-image/scikit-learn")
    p.add_argument("--class", dest="class_", metavar="C", default=None,
                   help="ImageNet class id, WordNet id or name to explain (default: each image's top-1)")
    p.add_argument("--rule", choices=RULES, default="gradient", help="ReLU backward rule (paper §4)")
    _common.add_common_options(p, batch_size=8, batch_help="images per compiled batch")
    p.set_defaults(run=run)
    return p


def outputs(out: str, stem: str) -> tuple[str, str, str]:
    """The three files written for one input: map (.npy), figure (.png), record (.json)."""
    return (os.path.join(out, f"{stem}_saliency.npy"), os.path.join(out, f"{stem}_saliency.png"),
            os.path.join(out, f"{stem}.json"))


def run(args: argparse.Namespace, classifier=None) -> int:
    import jax
    from tqdm import tqdm

    from saliency_jax import figures, io
    from saliency_jax.saliency import input_gradients, saliency_from_gradients
    from saliency_jax.scores import top_k_of_logits

    stems = _common.input_stems(args.images)
    out = _common.prepare_out_dir(args.out)
    if classifier is None:
        classifier = _common.load_classifier(args.model)
    forced = None if args.class_ is None else _common.resolve_class(args.class_, classifier.class_names)
    settings = {"model": args.model, "method": "gradient", "rule": args.rule, "class": forced}
    todo = []
    for path, stem in zip(args.images, stems):
        files = outputs(out, stem)
        record = _common.claim_outputs(files[2], COMMAND, _common.source_name(path))
        if not (args.resume and _common.up_to_date(record, settings, files[:2])):
            todo.append((path, stem))
    # Read every input first: a bad file fails before any work is done.
    photos = {p: io.load_image(p) for p, _ in todo}

    @functools.partial(jax.jit, static_argnames="rule")
    def explain(params, images, classes, rule):
        result = input_gradients(classifier.logits_fn, params, images, classes, rule=rule)
        best = top_k_of_logits(result.logits, k=5)
        return saliency_from_gradients(result.gradients), result.classes, best.classes, best.probabilities

    with tqdm(total=len(todo), desc=COMMAND, unit="image", disable=_common.progress_enabled(args)) as bar:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            batch = np.stack([io.resize_image(photos[p], classifier.image_size) for p, _ in chunk])
            classes = None if forced is None else np.full(len(chunk), forced, np.int32)
            maps, classes, top_c, top_p = jax.device_get(explain(classifier.params, batch, classes, args.rule))
            for k, (path, stem) in enumerate(chunk):
                npy, png, js = outputs(out, stem)
                c = int(classes[k])
                io.save_npy(npy, np.asarray(maps[k], np.float32))
                title = f"{stem}: {classifier.class_names[c].split(',')[0]} ({args.rule})"
                io.save_figure(png, figures.saliency_figure(batch[k], maps[k], title))
                top5 = [[int(i), classifier.class_names[int(i)], round(float(q), 6)]
                        for i, q in zip(top_c[k], top_p[k])]
                io.save_json(js, {"class": c, "top5": top5, "method": settings["method"], "rule": args.rule,
                                  "command": COMMAND, "input": _common.source_name(path), "settings": settings})
                bar.update(1)
    skipped = len(args.images) - len(todo)
    print(f"wrote {len(todo)} saliency map(s) to {args.out}/" + (f" ({skipped} already there)" if skipped else ""))
    return 0

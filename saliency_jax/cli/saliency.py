"""``saliency-jax saliency IMAGE... [--method M] [--class C] [--rule R] [--out DIR]``: saliency maps.

The default method is the paper's gradient map (§3, §3.1); ``--method`` picks any
of the attribution family (:data:`saliency_jax.attribution.METHODS`). For each
input ``<stem>`` it writes, atomically:

* ``<stem>_saliency.npy``: float32 ``[S, S]`` (``S`` the model's input size, 224
  for Lite0), non-negative: ``max_c |attribution|`` for pixel methods (for the
  gradient-based ones in score units per raw 0-255 pixel), and for Grad-CAM the
  ReLU'd map resized bilinearly (half-pixel centres) to ``S x S``;
* ``<stem>_saliency.png``: the photo beside its map;
* ``<stem>.json``: ``{"class": c, "top5": [[id, name, p], ...], "method": m,
  "settings": {...}}``: the settings are what ``--resume`` compares.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from saliency_jax.backprop_rules import RULES
from saliency_jax.cli import _common

COMMAND = "saliency"

METHOD_NAMES = {
    "gradient": "the paper's gradient map (§3)",
    "gradient-x-input": "gradient times input",
    "smoothgrad": "gradient averaged over noisy copies (15% noise)",
    "squaregrad": "squared gradient averaged over noisy copies",
    "vargrad": "variance of the gradient over noisy copies",
    "flip-shift": "gradient averaged over flips and 4-pixel shifts",
    "integrated-gradients": "Integrated Gradients from a black image",
    "blur-ig": "Integrated Gradients along a blur path",
    "gradcam": "Grad-CAM at a layer, resized to the input",
    "gradcam++": "Grad-CAM++ at a layer, resized to the input",
    "crop-gradcam": "Grad-CAM of 51 zoomed crops, each weighted by the class's probability in it",
    "occlusion": "score drop under a sliding black patch",
    "rise": "RISE: class probability under random masks",
}
_NOISE = ("smoothgrad", "squaregrad", "vargrad")


def method_settings(args: argparse.Namespace, classifier) -> dict:
    """The settings of ``--method`` that its function takes, from the options given.

    Raises :class:`~saliency_jax.cli._common.CommandError` for an option the
    method does not use (``--rule guided`` with Grad-CAM, say).
    """
    from saliency_jax.attribution import METHODS, default_layer

    method = METHODS[args.method]
    settings: dict = {}
    if method.uses_rule or method.wraps:
        settings["rule"] = args.rule
    elif args.rule != "gradient":
        raise _common.CommandError(f"--rule: {args.method} has no ReLU backward rule; drop --rule")
    if args.method in ("integrated-gradients", "blur-ig"):
        if args.ig_steps < 2:
            raise _common.CommandError(f"--ig-steps: integrated gradients need at least 2 steps, got {args.ig_steps}")
        settings["steps"] = args.ig_steps
    if args.method in _NOISE:
        settings["num_samples"] = 16 if args.samples is None else args.samples
    if args.method == "rise":
        settings["num_masks"] = 2000 if args.samples is None else args.samples
    if method.output == "layer":
        settings["layer"] = args.layer or default_layer(classifier)
    elif args.layer is not None:
        raise _common.CommandError(f"--layer: {args.method} works on the input pixels, not a layer")
    if args.method == "occlusion":
        if max(args.patch, args.stride) > classifier.image_size:
            raise _common.CommandError(f"--patch/--stride: at most the input size {classifier.image_size}")
        settings.update(patch=args.patch, stride=args.stride)
    return settings


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(COMMAND, help="image-specific class saliency maps (paper §3)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or bundled:NAME for a photo that ships with scikit-image/scikit-learn")
    p.add_argument("--class", dest="class_", metavar="C", default=None,
                   help="ImageNet class id, WordNet id or name to explain (default: each image's top-1)")
    p.add_argument("--method", choices=tuple(METHOD_NAMES), default="gradient",
                   help="attribution method (default: gradient, the paper's map): " + "; ".join(
                       f"{name} = {text}" for name, text in METHOD_NAMES.items()).replace("%", "%%"))
    p.add_argument("--rule", choices=RULES, default="gradient",
                   help="ReLU backward rule of the gradient-based methods (paper §4)")
    p.add_argument("--ig-steps", type=_common.positive_int, default=32, metavar="N",
                   help="integration steps of integrated-gradients and blur-ig (default: 32)")
    p.add_argument("--samples", type=_common.positive_int, default=None, metavar="N",
                   help="noise samples of smoothgrad/squaregrad/vargrad (default: 16) or RISE masks (default: 2000)")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="layer of gradcam/gradcam++/crop-gradcam (default: the model's last feature map)")
    p.add_argument("--patch", type=_common.positive_int, default=16, metavar="P",
                   help="occlusion patch side in pixels (default: 16)")
    p.add_argument("--stride", type=_common.positive_int, default=8, metavar="S",
                   help="occlusion stride in pixels (default: 8)")
    _common.add_common_options(p, batch_size=8, batch_help="images per compiled batch")
    _common.add_image_options(p)
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
    from saliency_jax.attribution import METHODS, attribution_map
    from saliency_jax.scores import top_k_of_logits

    stems = _common.input_stems(args.images)
    out = _common.prepare_out_dir(args.out)
    # Read every input before loading the model: a bad file fails before any work.
    photos = {p: io.load_image(p, max_pixels=args.max_pixels) for p in args.images}
    if classifier is None:
        classifier = _common.load_classifier(args.model)
    forced = None if args.class_ is None else _common.resolve_class(args.class_, classifier.class_names)
    method = METHODS[args.method]
    settings = method_settings(args, classifier)
    record_settings = {"model": args.model, "method": args.method, "class": forced, **settings,
                       **({"seed": args.seed} if method.needs_key else {})}
    todo = []
    for path, stem in zip(args.images, stems):
        files = outputs(out, stem)
        record = _common.claim_outputs(files[2], COMMAND, _common.source_name(path))
        if not (args.resume and _common.up_to_date(record, record_settings, files[:2])):
            todo.append((path, stem))
    size = classifier.image_size
    key = jax.random.key(args.seed)

    @jax.jit
    def explain(params, images, classes, key):
        best = top_k_of_logits(classifier.logits_fn(params, images), k=5)
        classes = best.classes[:, 0] if classes is None else classes
        attributions = method.fn(classifier.logits_fn, params, images, classes, key=key, **settings)
        maps = attribution_map(attributions, size=size)
        return maps, classes, best.classes, best.probabilities

    with tqdm(total=len(todo), desc=COMMAND, unit="image", disable=_common.progress_enabled(args)) as bar:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            batch = np.stack([io.resize_image(photos[p], size) for p, _ in chunk])
            classes = None if forced is None else np.full(len(chunk), forced, np.int32)
            maps, classes, top_c, top_p = jax.device_get(explain(classifier.params, batch, classes, key))
            for k, (path, stem) in enumerate(chunk):
                npy, png, js = outputs(out, stem)
                c = int(classes[k])
                io.save_npy(npy, np.maximum(np.asarray(maps[k], np.float32), 0.0))
                title = f"{stem}: {classifier.class_names[c].split(',')[0]} ({args.method})"
                io.save_figure(png, figures.saliency_figure(batch[k], maps[k], title))
                top5 = [[int(i), classifier.class_names[int(i)], round(float(q), 6)]
                        for i, q in zip(top_c[k], top_p[k])]
                io.save_json(js, {"class": c, "top5": top5, "method": args.method, "command": COMMAND,
                                  "input": _common.source_name(path), "settings": record_settings})
                bar.update(1)
    skipped = len(args.images) - len(todo)
    print(f"wrote {len(todo)} saliency map(s) to {args.out}/" + (f" ({skipped} already there)" if skipped else ""))
    return 0

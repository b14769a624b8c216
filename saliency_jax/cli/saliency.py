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

from saliency_jax import _batching
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
    "guided-ig": "Guided Integrated Gradients from a black image: the features of smallest gradient move first",
    "gradient-shap": "GradientSHAP: gradients at random points between a black image and the image, times the difference",
    "gradcam": "Grad-CAM at a layer, resized to the input",
    "gradcam++": "Grad-CAM++ at a layer, resized to the input",
    "guided-gradcam": "guided back-propagation times the Grad-CAM map, resized to the input",
    "crop-gradcam": "Grad-CAM of 51 zoomed crops, each weighted by the class's probability in it",
    "occlusion": "score drop under a sliding black patch",
    "kernel-shap": "KernelSHAP: Shapley values of an 8 x 8 grid of cells, each missing cell black",
    "rise": "RISE: class probability under random masks",
}
_NOISE = ("smoothgrad", "squaregrad", "vargrad", "gradient-shap")
_IG = ("integrated-gradients", "blur-ig", "guided-ig")
# The options that only some methods take, with those methods; given to another, each is refused.
_METHOD_OPTIONS = {
    "--ig-steps": ("ig_steps", _IG),
    "--samples": ("samples", _NOISE + ("kernel-shap", "rise")),
    "--patch": ("patch", ("occlusion",)),
    "--stride": ("stride", ("occlusion",)),
}
IG_STEPS, PATCH, STRIDE = 32, 16, 8  # the defaults of --ig-steps, --patch and --stride
KERNEL_SHAP_MIN_SAMPLES = 65  # the default grid's 64 cells plus one
# Methods whose map comes with the logits of its own forward pass (the top 5 need no second pass).
_ONE_PASS = ("gradient", "gradient-x-input")


def check_options(args: argparse.Namespace) -> None:
    """Refuses, before the model loads, an option ``--method`` does not take or a count below its minimum."""
    from saliency_jax.attribution import METHODS

    method = METHODS[args.method]
    if args.method == "guided-gradcam" and args.rule != "gradient":
        raise _common.CommandError("--rule: guided-gradcam always back-propagates with the guided rule; drop --rule")
    if not (method.uses_rule or method.wraps) and args.rule != "gradient":
        raise _common.CommandError(f"--rule: {args.method} has no ReLU backward rule; drop --rule")
    if not method.needs_layer and args.layer is not None:
        raise _common.CommandError(f"--layer: {args.method} works on the input pixels, not a layer")
    for option, (field, methods) in _METHOD_OPTIONS.items():
        if getattr(args, field) is not None and args.method not in methods:
            raise _common.CommandError(f"{option}: {args.method} does not take it (only {', '.join(methods)}); "
                                       f"drop {option}")
    if args.method in ("integrated-gradients", "blur-ig") and args.ig_steps is not None and args.ig_steps < 2:
        raise _common.CommandError(f"--ig-steps: integrated gradients need at least 2 steps, got {args.ig_steps}")
    if args.method == "kernel-shap" and args.samples is not None and args.samples < KERNEL_SHAP_MIN_SAMPLES:
        raise _common.CommandError(f"--samples: kernel-shap needs at least {KERNEL_SHAP_MIN_SAMPLES} draws (the 64 "
                                   f"cells plus one), got {args.samples}")
    if args.method == "vargrad" and args.samples is not None and args.samples < 2:
        raise _common.CommandError(f"--samples: vargrad (a variance) needs at least 2 noise samples, got {args.samples}")


def method_settings(args: argparse.Namespace, classifier) -> dict:
    """The settings of ``--method`` that its function takes, from the options given.

    Raises :class:`~saliency_jax.cli._common.CommandError` for an option the
    method does not use (``--rule guided`` with Grad-CAM, say; :func:`check_options`)
    or a value the model does not allow (an unknown ``--layer``, a patch larger
    than its input).
    """
    from saliency_jax.attribution import METHODS, default_layer

    method = METHODS[args.method]
    settings: dict = {}
    check_options(args)
    if method.uses_rule or method.wraps:
        settings["rule"] = args.rule
    if args.method in _IG:
        settings["steps"] = IG_STEPS if args.ig_steps is None else args.ig_steps
    if args.method in _NOISE:
        settings["num_samples"] = 16 if args.samples is None else args.samples
    if args.method == "kernel-shap":
        settings["num_samples"] = 1024 if args.samples is None else args.samples
    if args.method == "rise":
        settings["num_masks"] = 2000 if args.samples is None else args.samples
    if method.needs_layer:
        settings["layer"] = args.layer or default_layer(classifier)
        if args.layer is not None:
            _check_layer(classifier, args.layer)
    if args.method == "occlusion":
        patch = PATCH if args.patch is None else args.patch
        stride = STRIDE if args.stride is None else args.stride
        if max(patch, stride) > classifier.image_size:
            raise _common.CommandError(f"--patch/--stride: at most the input size {classifier.image_size}")
        settings.update(patch=patch, stride=stride)
    return settings


def _check_layer(classifier, layer: str) -> None:
    """Refuses, naming ``--layer``, a layer that is not a feature map ``[B, h, w, k]`` of the model."""
    from saliency_jax.reconstruction import list_layers

    image = np.zeros((1, classifier.image_size, classifier.image_size, 3), np.float32)
    maps = [entry.name for entry in list_layers(classifier.logits_fn, classifier.params, image)
            if entry.name and len(entry.shape) == 4]
    if layer.strip("/") not in maps:
        raise _common.CommandError(f"--layer: {layer!r} is not a feature map of the model; "
                                   f"its feature maps are {', '.join(maps)}")


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
    p.add_argument("--ig-steps", type=_common.bounded_int(_common.MAX_IG_STEPS), default=None, metavar="N",
                   help="integration steps of integrated-gradients, blur-ig and guided-ig, "
                        f"at most {_common.MAX_IG_STEPS:,} (default: {IG_STEPS})")
    p.add_argument("--samples", type=_common.bounded_int(_common.MAX_SAMPLES), default=None, metavar="N",
                   help="noise samples of smoothgrad/squaregrad/vargrad, draws of gradient-shap (default: 16), "
                        "coalitions of kernel-shap (default: 1024) or RISE masks (default: 2000), "
                        f"at most {_common.MAX_SAMPLES:,}")
    p.add_argument("--layer", default=None, metavar="NAME",
                   help="layer of gradcam/gradcam++/guided-gradcam/crop-gradcam (default: the model's last feature map)")
    p.add_argument("--patch", type=_common.positive_int, default=None, metavar="P",
                   help=f"occlusion patch side in pixels (default: {PATCH})")
    p.add_argument("--stride", type=_common.positive_int, default=None, metavar="S",
                   help=f"occlusion stride in pixels (default: {STRIDE})")
    _common.add_common_options(p, batch_size=8, batch_help=_common.IMAGE_BATCH_HELP)
    _common.add_image_options(p)
    p.set_defaults(run=run)
    return p


def outputs(out: str, stem: str) -> tuple[str, str, str]:
    """The three files written for one input: map (.npy), figure (.png), record (.json)."""
    return (os.path.join(out, f"{stem}_saliency.npy"), os.path.join(out, f"{stem}_saliency.png"),
            os.path.join(out, f"{stem}.json"))


def run(args: argparse.Namespace, classifier=None) -> int:
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from saliency_jax import figures, io
    from saliency_jax.attribution import METHODS, attribution_map
    from saliency_jax.saliency import input_gradients
    from saliency_jax.scores import top_k_of_logits

    check_options(args)
    out = _common.prepare_out_dir(args.out, args.images)
    # Headers only, before the model loads: a missing or refused file is named before any work.
    inputs, failed = _common.check_inputs(COMMAND, args.images, args.max_pixels)
    unread = len(failed)  # inputs that cannot be read: from their headers, then when decoded
    records = {}
    for item in inputs:
        npy, png, js = outputs(out, item.stem)
        records[item.path] = _common.check_outputs(js, (npy, png), COMMAND, item.source, args.images)
    if classifier is None:
        classifier = _common.load_classifier(args.model)
    forced = None if args.class_ is None else _common.resolve_class(args.class_, classifier.class_names)
    method = METHODS[args.method]
    settings = method_settings(args, classifier)
    record_settings = {"model": args.model, "method": args.method, "class": forced, **settings,
                       **({"seed": args.seed} if method.needs_key else {})}
    todo = [item for item in inputs
            if not (args.resume and _common.up_to_date(records[item.path], record_settings, item.identity, out))]
    size = classifier.image_size
    key = jax.random.key(args.seed)

    @jax.jit
    def explain(params, images, classes, key):
        if args.method in _ONE_PASS:
            # The gradient's own forward pass gives the top 5: one pass of the model, not two.
            found = input_gradients(classifier.logits_fn, params, images, classes, rule=settings["rule"])
            best, classes = top_k_of_logits(found.logits, k=5), found.classes
            attributions = found.gradients
            if args.method == "gradient-x-input":
                attributions = jnp.asarray(images, jnp.float32) * attributions
        else:
            best = top_k_of_logits(classifier.logits_fn(params, images), k=5)
            classes = best.classes[:, 0] if classes is None else classes
            attributions = method.fn(classifier.logits_fn, params, images, classes, key=key, **settings)
        maps = attribution_map(attributions, size=size)
        return maps, classes, best.classes, best.probabilities

    written = 0
    rows = _batching.rows_per_call(len(todo), args.batch_size)  # every batch this size: one compilation
    with tqdm(total=len(todo), desc=COMMAND, unit="image", disable=_common.progress_enabled(args)) as bar:
        for start in range(0, len(todo), rows):
            chunk, batch = [], []
            for item in todo[start:start + rows]:  # read a batch at a time: memory stays flat
                try:
                    batch.append(io.resize_image(_common.load_input(item, args.max_pixels), size))
                    chunk.append(item)
                except (OSError, ValueError) as e:
                    _common.report(COMMAND, str(e))
                    failed.append(item.path)
                    unread += 1
                    bar.update(1)
            if not chunk:
                continue
            batch = _batching.pad_rows(np.stack(batch), rows)  # the padding's outputs are not read
            classes = None if forced is None else np.full(rows, forced, np.int32)
            maps, classes, top_c, top_p = jax.device_get(explain(classifier.params, batch, classes, key))
            for k, item in enumerate(chunk):
                npy, png, js = outputs(out, item.stem)
                c = int(classes[k])
                title = _common.printable(f"{item.stem}: {classifier.class_names[c].split(',')[0]} ({args.method})")
                top5 = [[int(i), classifier.class_names[int(i)], round(float(q), 6)]
                        for i, q in zip(top_c[k], top_p[k])]
                saliency = np.maximum(np.asarray(maps[k], np.float32), 0.0)
                try:
                    _common.write_outputs(js, {
                        "class": c, "top5": top5, "method": args.method, "command": COMMAND, "input": item.source,
                        "identity": item.identity, "settings": record_settings,
                    }, [(npy, lambda p: io.save_npy(p, saliency)),
                        (png, lambda p: io.save_figure(p, figures.saliency_figure(batch[k], maps[k], title)))])
                    written += 1
                except _common.OutputError as e:
                    _common.report(COMMAND, str(e))
                    failed.append(item.path)
                bar.update(1)
    skipped = len(inputs) - len(todo)
    _common.say(f"wrote {written} saliency map(s) to {args.out}/" + (f" ({skipped} already there)" if skipped else ""))
    if failed:
        _common.report(COMMAND, f"could not make {len(failed)} saliency map(s): {', '.join(map(repr, failed))}")
        return 2 if unread == len(args.images) else 1
    return 0


if __name__ == "__main__":  # python -m saliency_jax.cli.<module> ...: this subcommand of saliency-jax
    import sys

    from saliency_jax.cli import main

    sys.exit(main([COMMAND, *sys.argv[1:]]))

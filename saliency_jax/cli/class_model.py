"""``saliency-jax class-model CLASS... [--mode paper|regularised] [--steps N] [--out DIR]`` (paper §2).

``CLASS`` is an ImageNet id (``278``), a WordNet id (``n02119789``) or a name
(``"kit fox"``). For each class the command writes, atomically:

* ``DIR/class_<id>.png``: the RGB image for display (mean image added, clipped
  to 0-255, rounded to uint8), at the model's input size;
* ``DIR/class_<id>.npy``: the same image as float32 ``[S, S, 3]`` on the raw
  0-255 scale, unrounded: feeding it to the model reproduces the reported score;
* ``DIR/class_<id>.json``: the class, its score and posterior, and the settings.

An ascent that diverges (NaN or infinite pixels) is reported by class and not
written; the command then exits with status 1.

The ascent runs as jitted chunks of steps with a progress bar over the chunks;
the classes are optimised together, ``--batch-size`` at a time.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from saliency_jax.cli import _common

COMMAND = "class-model"
MODES = ("paper", "regularised")
OBJECTIVES = ("score", "softmax", "log_softmax")
MAX_STEP_WEIGHT = 1e6  # saliency_jax.class_model.MAX_STEP_WEIGHT, named here without importing JAX


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        COMMAND,
        help="generate class model images (paper §2)",
        description=(
            "Generate an image that the model scores highly for each CLASS, by gradient ascent "
            "on the unnormalised class score with an L2 penalty (paper §2)."
        ),
    )
    parser.add_argument("classes", nargs="+", metavar="CLASS",
                        help="ImageNet class id, WordNet id or name, e.g. 278, n02119789 or 'kit fox'")
    parser.add_argument("--mode", choices=MODES, default="paper",
                        help="paper: L2 only, exactly §2; regularised: Fourier parametrisation, jitter, "
                             "rescale, TV, blur, clipping")
    parser.add_argument("--steps", type=_common.positive_int, default=None,
                        help=f"optimiser steps, at most {_common.MAX_STEPS} (default: the mode's)")
    parser.add_argument("--learning-rate", type=_common.finite_float(0.0, strict=True, maximum=MAX_STEP_WEIGHT),
                        default=None, help="Adam step size, > 0 and at most 1e6 (default: the mode's)")
    parser.add_argument("--l2-weight", type=_common.finite_float(0.0, strict=False, maximum=MAX_STEP_WEIGHT),
                        default=None, help="the paper's lambda, >= 0 and at most 1e6 (default: the mode's)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="score", help="what to maximise (default: score)")
    parser.add_argument("--chunk", type=_common.positive_int, default=10,
                        help="steps per jitted chunk / progress update (default: 10)")
    _common.add_common_options(parser, batch_size=16, batch_help="classes optimised together")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, classifier=None) -> int:
    import jax
    from tqdm import tqdm

    from saliency_jax import io
    from saliency_jax.class_model import classifier_class_models, mode_defaults

    steps = mode_defaults(args.mode).steps if args.steps is None else args.steps
    if steps > _common.MAX_STEPS:
        raise _common.CommandError(f"--steps: at most {_common.MAX_STEPS} steps, got {steps}")
    out = _common.prepare_out_dir(args.out)
    if classifier is None:
        classifier = _common.load_classifier(args.model)
    class_ids = []
    for name in args.classes:
        cid = _common.resolve_class(name, classifier.class_names, "CLASS")
        if cid not in class_ids:
            class_ids.append(cid)
    settings = {"model": args.model, "mode": args.mode, "steps": steps, "learning_rate": args.learning_rate,
                "l2_weight": args.l2_weight, "objective": args.objective, "seed": args.seed}
    todo = []
    for cid in class_ids:
        stem = os.path.join(out, f"class_{cid}")
        record = _common.check_outputs(stem + ".json", (stem + ".npy", stem + ".png"), COMMAND, str(cid), ())
        if not (args.resume and _common.up_to_date(record, settings, str(cid), out)):
            todo.append(cid)
    failed = []
    if todo:
        overrides = {k: v for k, v in (("learning_rate", args.learning_rate), ("l2_weight", args.l2_weight))
                     if v is not None}
        try:
            bar = tqdm(total=steps * len(todo), desc=f"class-model ({args.mode})", unit="step",
                       disable=_common.progress_enabled(args), file=sys.stderr)
            with bar:
                result = classifier_class_models(
                    classifier, np.asarray(todo, np.int32), key=jax.random.key(args.seed), steps=steps,
                    mode=args.mode, batch_size=args.batch_size, chunk=args.chunk, objective=args.objective,
                    on_chunk=lambda n, history: bar.update(n * history.scores.shape[1]), **overrides,
                )
        except ValueError as e:  # the library's bounds on the options, named as the options
            message = str(e)
            for name, option in (("learning_rate", "--learning-rate"), ("l2_weight", "--l2-weight")):
                if message.startswith(name):
                    raise _common.CommandError(f"{option}: {message}") from None
            raise
        logits = np.asarray(result.logits, np.float64)
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        for i, (cid, image) in enumerate(zip(np.asarray(result.classes).tolist(), np.asarray(result.images))):
            stem = os.path.join(out, f"class_{cid}")
            image = np.asarray(image, np.float32)
            score = float(result.scores[i])
            if not (np.isfinite(image).all() and np.isfinite(logits[i]).all() and np.isfinite(score)):
                _common.report(COMMAND, f"class_{cid}: the ascent diverged (NaN or infinite pixels or scores); "
                                        "not written: lower --learning-rate or --l2-weight")
                failed.append(f"class_{cid}")
                continue
            top = int(logits[i].argmax())
            try:
                _common.write_outputs(stem + ".json", {
                    "command": COMMAND, "input": str(cid), "identity": str(cid), "settings": settings, "class": cid,
                    "score": score, "probability": float(probabilities[i, cid]), "top1": top,
                }, [(stem + ".npy", lambda p: io.save_npy(p, image)),
                    (stem + ".png", lambda p: io.save_png(p, np.clip(np.round(image), 0, 255).astype(np.uint8)))])
            except _common.OutputError as e:
                _common.report(COMMAND, str(e))
                failed.append(f"class_{cid}")
                continue
            _common.say(f"class_{cid}\t{classifier.class_names[cid].split(',')[0]}\tscore {score:.3f}"
                        f"\tP {probabilities[i, cid]:.3f}\ttop-1 {top} ({classifier.class_names[top].split(',')[0]})")
    skipped = len(class_ids) - len(todo)
    _common.say(f"wrote {len(todo) - len(failed)} class model(s) to {args.out}/"
                + (f" ({skipped} already there)" if skipped else ""))
    if failed:
        _common.report(COMMAND, f"could not make {len(failed)} class model(s): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":  # python -m saliency_jax.cli.<module> ...: this subcommand of saliency-jax
    from saliency_jax.cli import main

    sys.exit(main([COMMAND, *sys.argv[1:]]))

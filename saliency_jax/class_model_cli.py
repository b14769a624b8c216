"""The ``saliency-jax class-model`` command: class model images for ImageNet classes (§2).

``saliency-jax class-model CLASS... [--mode paper|regularised] [--steps N] [--out DIR]``

``CLASS`` is an ImageNet id (``278``), a WordNet id or a name (``"kit fox"``). For
each class the command writes, atomically:

* ``DIR/class_<id>.png``: the 224x224 RGB image for display (mean image added,
  clipped to 0-255, rounded to uint8);
* ``DIR/class_<id>.npy``: the same image as float32 ``[224, 224, 3]`` on the raw
  0-255 scale, unrounded: feeding it to the model reproduces the reported score.

The ascent runs as jitted chunks of steps (one ``lax.scan`` each) with a progress
bar over the chunks; the classes are optimised together, in batches.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

MODES = ("paper", "regularised")
OBJECTIVES = ("score", "softmax", "log_softmax")


def add_class_model_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``class-model`` subcommand to an ``argparse`` subparsers object.

    The subparser's defaults include ``handler=run_class_model_command``.
    """
    parser = subparsers.add_parser(
        "class-model",
        help="generate class model images (paper §2)",
        description=(
            "Generate an image that the model scores highly for each CLASS, by gradient ascent "
            "on the unnormalised class score with an L2 penalty (paper §2); writes "
            "DIR/class_<id>.png (display) and DIR/class_<id>.npy (float32 raw 0-255)."
        ),
    )
    parser.add_argument("classes", nargs="+", metavar="CLASS", help="ImageNet class id or name, e.g. 278 or 'kit fox'")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="paper",
        help="paper: L2 only, exactly §2; regularised: Fourier parametrisation, jitter, rescale, TV, blur, clipping",
    )
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the mode's)")
    parser.add_argument("--out", default="class_models", metavar="DIR", help="output folder (default: class_models)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default: 0)")
    parser.add_argument("--learning-rate", type=float, default=None, help="Adam step size (default: the mode's)")
    parser.add_argument("--l2-weight", type=float, default=None, help="the paper's lambda (default: the mode's)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="score", help="what to maximise (default: score)")
    parser.add_argument("--chunk", type=int, default=10, help="steps per jitted chunk / progress update (default: 10)")
    parser.add_argument("--batch-size", type=int, default=16, help="classes optimised together (default: 16)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_class_model_command)
    return parser


def run_with_progress(ascent, params, state, steps: int, *, chunk: int = 10, progress: bool = True, desc: str = ""):
    """Runs ``steps`` updates of a :class:`~saliency_jax.class_model.ClassModelAscent` in jitted chunks.

    Each chunk is one ``lax.scan`` of at most ``chunk`` steps (at most two sizes are
    compiled); a ``tqdm`` bar advances per chunk.

    Returns:
      ``(state, history)`` with the histories of all chunks concatenated.
    """
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    from saliency_jax.class_model import ClassModelHistory, check_steps

    check_steps(steps)
    check_steps(chunk, "chunk")
    run = jax.jit(ascent.run, static_argnums=2)
    histories = []
    with tqdm(total=steps, desc=desc, unit="step", disable=not progress, file=sys.stderr) as bar:
        done = 0
        while done < steps:
            n = min(chunk, steps - done)
            state, history = run(params, state, n)
            jax.block_until_ready(history)
            histories.append(history)
            done += n
            bar.update(n)
            bar.set_postfix(score=f"{float(jnp.median(history.scores[-1])):.2f}")
    history = ClassModelHistory(*(jnp.concatenate(parts) for parts in zip(*histories)))
    return state, history


def class_models_for(
    classifier,
    class_ids: list[int],
    *,
    mode: str,
    steps: int | None,
    seed: int = 0,
    learning_rate: float | None = None,
    l2_weight: float | None = None,
    objective: str = "score",
    chunk: int = 10,
    batch_size: int = 16,
    progress: bool = True,
):
    """Class model images of a :class:`~saliency_jax.types.Classifier`, in batches with progress.

    Returns:
      A :class:`~saliency_jax.class_model.ClassModelResult` over all ``class_ids``
      (histories concatenated along the class axis).
    """
    import jax
    import jax.numpy as jnp

    from saliency_jax.class_model import ClassModelHistory, ClassModelResult, check_steps, class_model_ascent
    from saliency_jax.class_model import classifier_settings, mode_defaults

    steps = mode_defaults(mode).steps if steps is None else steps
    check_steps(steps)
    check_steps(batch_size, "batch_size")
    ascent = class_model_ascent(
        classifier.logits_fn,
        mode=mode,
        learning_rate=learning_rate,
        l2_weight=l2_weight,
        objective=objective,
        **classifier_settings(classifier)._asdict(),
    )
    finish = jax.jit(ascent.finish)
    key = jax.random.key(seed)
    results = []
    for start in range(0, len(class_ids), batch_size):
        batch = np.asarray(class_ids[start : start + batch_size], np.int32)
        state = ascent.init(classifier.params, batch, key)
        desc = f"{mode} {start + 1}-{start + len(batch)}/{len(class_ids)}"
        state, history = run_with_progress(
            ascent, classifier.params, state, steps, chunk=chunk, progress=progress, desc=desc
        )
        results.append(finish(classifier.params, state, history))
    if len(results) == 1:
        return results[0]
    joined = [jnp.concatenate(parts) for parts in zip(*(r[:4] for r in results))]
    history = ClassModelHistory(*(jnp.concatenate(parts, axis=1) for parts in zip(*(r.history for r in results))))
    return ClassModelResult(*joined, history)


def write_class_models(out_dir: str, result) -> list[str]:
    """Writes ``class_<id>.png`` and ``class_<id>.npy`` for every image of a result.

    Returns:
      The paths written.
    """
    from saliency_jax import io

    paths = []
    images = np.asarray(result.images, np.float32)
    for cid, image in zip(np.asarray(result.classes).tolist(), images):
        stem = os.path.join(out_dir, f"class_{cid}")
        io.save_npy(stem + ".npy", image)
        io.save_png(stem + ".png", np.clip(np.round(image), 0, 255).astype(np.uint8))
        paths += [stem + ".png", stem + ".npy"]
    return paths


def resolve_classes(names: list[str], class_names=None) -> list[int]:
    """ImageNet ids of the ``CLASS`` arguments, duplicates removed, order kept."""
    from saliency_jax.models.imagenet import class_id

    ids = []
    for name in names:
        cid = class_id(name, class_names)
        if cid not in ids:
            ids.append(cid)
    return ids


def run_class_model_command(args: argparse.Namespace, classifier: Any = None) -> int:
    """Runs ``saliency-jax class-model`` from parsed arguments.

    Args:
      args: the namespace from :func:`add_class_model_parser`'s parser.
      classifier: the model; EfficientNet-Lite0 with ImageNet weights if ``None``.

    Returns:
      The exit status, 0.

    Raises:
      ValueError: an unknown class, or bad settings (the message names the argument).
    """
    from saliency_jax.class_model import check_steps

    if args.steps is not None:
        check_steps(args.steps, "--steps")
    check_steps(args.chunk, "--chunk")
    check_steps(args.batch_size, "--batch-size")
    class_ids = resolve_classes(args.classes)
    if classifier is None:
        from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

        classifier = load_efficientnet_lite0()
    result = class_models_for(
        classifier,
        class_ids,
        mode=args.mode,
        steps=args.steps,
        seed=args.seed,
        learning_rate=args.learning_rate,
        l2_weight=args.l2_weight,
        objective=args.objective,
        chunk=args.chunk,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    write_class_models(args.out, result)
    logits = np.asarray(result.logits)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    for i, cid in enumerate(np.asarray(result.classes).tolist()):
        top = int(logits[i].argmax())
        print(
            f"class_{cid}\t{classifier.class_names[cid].split(',')[0]}\tscore {float(result.scores[i]):.3f}"
            f"\tP {probabilities[i, cid]:.3f}\ttop-1 {top} ({classifier.class_names[top].split(',')[0]})"
        )
    print(f"wrote {2 * len(class_ids)} files to {args.out}")
    return 0

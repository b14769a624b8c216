"""Sweep of class model settings on EfficientNet-Lite0: how the defaults were chosen.

The paper (§2) gives no lambda, step size or step count. For each mode this runs a
small grid of (learning rate, lambda) on a batch of classes spread over ImageNet,
checkpointing every few steps, and reports for each setting and checkpoint:

* ``top1``: the fraction of class images the model classifies as their class
  (the saved image: mean added, clipped to 0-255);
* ``robust``: the fraction still top-1 after a random shift of 8 pixels and a
  10% rescale (up or down), i.e. the image is not a fragile adversarial pattern;
* ``score``: the median ``S_c`` of the saved images;
* ``out``: the fraction of pixels that clipping to 0-255 changed (paper mode
  only clips at the end, so a large value means the optimum left the valid box).

The settings vary one factor at a time around a centre (see ``Config``); the
chosen defaults and the reasons are in :mod:`saliency_jax.class_model`.

Run ``python experiments/sweep_class_model.py --mode paper`` (or ``regularised``);
``--colour`` instead prints the natural-image colour covariance that
:mod:`saliency_jax.parametrization` uses, estimated from the bundled photos.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time

import numpy as np

import arguments  # a sibling script

FLOAT32_MAX = float(np.finfo(np.float32).max)  # the ascent runs in float32
NUM_CLASSES = 1000  # EfficientNet-Lite0's ImageNet classes


@dataclasses.dataclass(frozen=True)
class Config:
    # Classes spread over ImageNet's id range (animals, objects, food, scenes); the
    # tests use ten others, so the defaults are not tuned on what they check.
    classes: tuple[int, ...] = (1, 130, 292, 409, 620, 859)
    # (learning rate, lambda) settings per mode: one factor at a time around a centre.
    paper: tuple[tuple[float, float], ...] = ((0.05, 1e-3), (0.02, 1e-3), (0.1, 1e-3), (0.05, 1e-4), (0.05, 1e-2))
    regularised: tuple[tuple[float, float], ...] = (
        (0.01, 1e-3), (0.005, 1e-3), (0.025, 1e-3), (0.05, 1e-3), (0.1, 1e-4), (0.05, 1e-4), (0.01, 1e-4)
    )
    checkpoints: dict = dataclasses.field(
        default_factory=lambda: {"paper": (10, 20, 50), "regularised": (50, 100, 200)}
    )
    seed: int = 0
    shift: int = 8
    rescale: float = 0.1


def robustness_views(images, seed: int, shift: int, rescale: float):
    """Each raw image randomly shifted by ``shift`` pixels and rescaled by ``1 +- rescale``."""
    import jax
    import jax.numpy as jnp

    from saliency_jax.regularizers import rescale as rescale_image
    from saliency_jax.regularizers import translate

    rng = np.random.default_rng(seed)
    shifts = jnp.asarray(rng.choice([-shift, shift], size=(len(images), 2)))
    factors = jnp.asarray(1.0 + rescale * rng.choice([-1.0, 1.0], size=len(images)), jnp.float32)

    def one(image, d, factor):
        return rescale_image(translate(image, d[0], d[1], max_shift=shift) - 127.0, factor) + 127.0

    return jax.jit(jax.vmap(one))(jnp.asarray(images), shifts, factors)


def sweep(mode: str, config: Config, settings_grid=None, checkpoints=None) -> list[dict]:
    import jax

    from saliency_jax.class_model import class_model_ascent, classifier_settings
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    classifier = load_efficientnet_lite0()
    settings = classifier_settings(classifier)._asdict()
    predict = jax.jit(lambda params, x: classifier.logits_fn(params, x).argmax(-1))
    classes = np.asarray(config.classes, np.int32)
    key = jax.random.key(config.seed)
    rows = []
    for lr, l2 in settings_grid or getattr(config, mode):
        ascent = class_model_ascent(classifier.logits_fn, mode=mode, learning_rate=lr, l2_weight=l2, **settings)
        run = jax.jit(ascent.run, static_argnums=2)
        finish = jax.jit(ascent.finish)
        state = ascent.init(classifier.params, classes, key=key)
        done, start = 0, time.perf_counter()
        for checkpoint in checkpoints or config.checkpoints[mode]:
            state, history = run(classifier.params, state, checkpoint - done)
            done = checkpoint
            result = finish(classifier.params, state, history)
            out = 0.0  # the regularised mode clips every step
            if mode == "paper":  # pixels are the variables
                raw = settings["pixel_mean"] + settings["pixel_scale"] * np.asarray(state.variables)
                out = float(np.mean((raw < 0) | (raw > 255)))
            top1 = np.asarray(result.logits).argmax(-1) == classes
            views = robustness_views(result.images, config.seed, config.shift, config.rescale)
            moved = np.asarray(predict(classifier.params, views)) == classes
            row = dict(
                mode=mode, learning_rate=lr, l2_weight=l2, steps=checkpoint,
                top1=float(top1.mean()), robust=float((top1 & moved).mean()),
                score=float(np.median(np.asarray(result.scores))), out=out,
                seconds=round(time.perf_counter() - start, 1),
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def colour_covariance() -> np.ndarray:
    """Mean per-photo RGB covariance (0-1 pixels) of the photos bundled with the I/O module."""
    from saliency_jax.io import BUNDLED_PHOTOS, bundled_photo

    covs = [np.cov(bundled_photo(n).reshape(-1, 3).T / 255.0) for n in BUNDLED_PHOTOS]
    return np.mean(covs, axis=0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("paper", "regularised"), default="paper")
    parser.add_argument("--colour", action="store_true", help="print the colour covariance and exit")
    parser.add_argument("--classes", type=arguments.integer(0, NUM_CLASSES), nargs="+", help="override the class ids")
    parser.add_argument("--learning-rates", type=arguments.number(0, strict=True, high=FLOAT32_MAX), nargs="+")
    parser.add_argument("--l2-weights", type=arguments.number(0, high=FLOAT32_MAX), nargs="+")
    parser.add_argument("--checkpoints", type=arguments.integer(1, 2**31), nargs="+",
                        help="step counts at which to score, increasing")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.checkpoints and any(b <= a for a, b in zip(args.checkpoints, args.checkpoints[1:])):
        # Each checkpoint runs the steps since the previous one: a smaller one would run a negative count.
        parser.error(f"argument --checkpoints: must be increasing, got {' '.join(map(str, args.checkpoints))}")
    if args.colour:
        np.set_printoptions(precision=4, suppress=True)
        print(colour_covariance())
        return
    config = Config() if not args.classes else Config(classes=tuple(args.classes))
    grid = None
    if args.learning_rates or args.l2_weights:
        centre = getattr(config, args.mode)[0]
        grid = list(itertools.product(args.learning_rates or [centre[0]], args.l2_weights or [centre[1]]))
    rows = sweep(args.mode, config, grid, tuple(args.checkpoints) if args.checkpoints else None)
    if args.out:
        from saliency_jax.io import save_json

        save_json(args.out, rows)


if __name__ == "__main__":
    main()

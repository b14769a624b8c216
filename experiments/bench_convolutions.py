"""The ConvNet on CPU with XLA's own convolutions (``cpu_convolution_options``) against the default.

XLA's CPU backend hands dense convolutions to the YNNPACK library by default.
:func:`saliency_jax.models.cpu_convolution_options` keeps YNNPACK's matrix products and
reductions and leaves the convolutions to XLA. For each model (the scaled ConvNet of
``reproduce_small.py`` and the paper's ConvNet) this script compiles three calls twice, with the
default options and with those: the training loop's step (loss, gradients, Adam update; dropout
on), the saliency map, and the forward pass. After checking that both give the same gradients,
maps, logits and training metrics, the two take turns, their order alternating round after
round, with a pause before each sample; it prints per call the medians and the median (and IQR)
of the per-round ratio options / default::

    python experiments/bench_convolutions.py [--models scaled paper] [--rounds 10] [--batch B] [--json F]
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from interleaved import interleaved_times, ratio_summary  # a sibling script

from saliency_jax.io import save_json
from saliency_jax.models import cpu_convolution_options, paper_convnet, scaled_convnet
from saliency_jax.saliency import saliency_map
from saliency_jax.training import TrainConfig
from saliency_jax.training.steps import create_train_state, make_optimizer, train_step

VARIANTS = ("default", "options")
CASES = ("train", "map", "forward")
#: model -> (image side, training batch, map and forward batch, classes)
SHAPES = {"scaled": (64, 32, 32, 6), "paper": (224, 8, 8, 1000)}


def _model(name: str, num_classes: int):
    if name == "scaled":
        return scaled_convnet(num_classes, dropout_rate=0.1)
    return paper_convnet(num_classes)


def _calls(name: str, size: int, train_batch: int, batch: int, num_classes: int, options: dict) -> dict:
    model = _model(name, num_classes)
    tx = make_optimizer(TrainConfig(dataset="-", optimizer="adam", learning_rate=1e-3, weight_decay=1e-4,
                                   warmup_steps=10, num_train_steps=100))
    state = create_train_state(model, tx, jax.random.key(0), (size, size, 3))
    rng = np.random.default_rng(0)
    train_images = jnp.asarray(rng.integers(0, 256, (train_batch, size, size, 3), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, num_classes, train_batch).astype(np.int32))
    images = jnp.asarray(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    classes = jnp.asarray(rng.integers(0, num_classes, batch).astype(np.int32))
    apply = functools.partial(model.apply, train=False)
    calls = {}
    for variant, opts in zip(VARIANTS, ({}, options)):
        jit = functools.partial(jax.jit, compiler_options=opts)
        step = jit(functools.partial(train_step, model=model, tx=tx))
        calls["train", variant] = functools.partial(step, state, train_images, labels, jax.random.key(1))
        calls["map", variant] = functools.partial(jit(functools.partial(saliency_map, apply)), state.params, images,
                                                  classes)
        calls["forward", variant] = functools.partial(jit(apply), state.params, images)
        gradients = jit(jax.grad(functools.partial(_loss, model)))
        calls["gradients", variant] = functools.partial(gradients, state.params, train_images, labels)
    return calls


def _loss(model, params, images, labels):
    logits = model.apply(params, images.astype(jnp.float32), train=True, rngs={"dropout": jax.random.key(1)})
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _check_same(outputs: dict) -> None:
    """Both compilations give the same logits, training metrics, gradients and maps, to float rounding.

    Logits and metrics are compared element by element. The max-pools send each window's
    gradient to its first maximum, so a window whose largest inputs are within rounding of each
    other can send it elsewhere in the other compilation; gradients and maps are compared by the
    norm of their difference (at most 1% of their own; a few such windows in the paper's ConvNet
    give 0.1%). The weights after the step are not compared: Adam's first update divides each
    gradient by its own size, so a gradient within rounding of zero can move its weight either way.
    """
    exact = {"forward": [outputs["forward", v] for v in VARIANTS],
             "train metrics": [outputs["train", v][1] for v in VARIANTS]}
    for case, (a, b) in exact.items():
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            x, y = np.asarray(x), np.asarray(y)
            np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5 * (float(np.abs(x).max()) or 1.0), err_msg=case)
    for case in ("gradients", "map"):
        for x, y in zip(*(jax.tree.leaves(outputs[case, v]) for v in VARIANTS)):
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            difference = np.linalg.norm(y - x) / max(np.linalg.norm(x), 1e-30)
            if not difference <= 1e-2:
                raise AssertionError(f"{case}: the two compilations differ by {difference:.2e} of the norm")


def run(name: str, rounds: int, *, size: int | None = None, batch: int | None = None, pause: float = 0.3) -> dict:
    side, train_batch, map_batch, num_classes = SHAPES[name]
    side = side if size is None else size
    train_batch, batch = (train_batch, map_batch) if batch is None else (batch, batch)
    options = cpu_convolution_options()
    calls = _calls(name, side, train_batch, batch, num_classes, options)
    _check_same({key: jax.block_until_ready(call()) for key, call in calls.items()})  # also compiles
    calls = {key: call for key, call in calls.items() if key[0] in CASES}
    repeats = {"train": 5, "map": 3, "forward": 5}
    times = interleaved_times(calls, CASES, VARIANTS, repeats, rounds, pause)
    result = {"model": name, "rounds": rounds, "size": side, "train_batch": train_batch, "batch": batch,
              "backend": jax.default_backend(), "options": options, "cases": {}}
    for case in CASES:
        default, with_options = times[case, "default"], times[case, "options"]
        result["cases"][case] = {"default_ms": float(np.median(default)), "options_ms": float(np.median(with_options)),
                                 **ratio_summary(with_options, default)}
    return result


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(SHAPES), default=["scaled", "paper"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--size", type=int, help="image side instead of the model's (64 scaled, 224 paper)")
    parser.add_argument("--batch", type=int, help="images per call instead of the model's (32 scaled, 8 paper)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or (args.batch is not None and args.batch < 1) or (args.size is not None and args.size < 1):
        parser.error("--rounds, --batch and --size must be >= 1")
    if args.size is not None:
        for name in args.models:  # the network's own check of the image side (too small for its pools)
            try:
                jax.eval_shape(_model(name, SHAPES[name][3]).init, jax.random.key(0),
                               jax.ShapeDtypeStruct((1, args.size, args.size, 3), jnp.float32))
            except ValueError as error:
                parser.error(f"--size: {error} (the {name} ConvNet)")
    results = []
    for name in args.models:
        result = run(name, args.rounds, size=args.size, batch=args.batch)
        results.append(result)
        print(f"{name} ConvNet, {result['size']} x {result['size']}, training batch {result['train_batch']}, "
              f"map and forward batch {result['batch']}, {args.rounds} rounds, {result['backend']}, "
              f"options {result['options'] or 'none (not the CPU, or not accepted)'}")
        for case, row in result["cases"].items():
            lo, hi = row["ratio_iqr"]
            print(f"  {case:8s} default {row['default_ms']:9.2f} ms  options {row['options_ms']:9.2f} ms  "
                  f"ratio {row['ratio']:.3f} [{lo:.3f}, {hi:.3f}]")
    if args.json:
        save_json(args.json, {"results": results})
    return results


if __name__ == "__main__":
    main()

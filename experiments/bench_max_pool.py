"""The ConvNet's max pooling on CPU: strided slices with a custom VJP against ``lax.reduce_window``.

Builds the scaled ConvNet of ``reproduce_small.py`` twice, ``pool_impl="strided"`` and
``pool_impl="xla"`` (same parameters), and times three jitted calls of each on one batch of random
images: the training loss with its parameter gradients (dropout on), the saliency map, and the
forward pass. The two versions take turns, their order alternating round after round, with a pause
before each sample, and the script prints per call the medians and the median (and IQR) of the
per-round ratio strided / reduce_window, after checking that both give the same gradients::

    python experiments/bench_max_pool.py [--rounds 12] [--batch 32] [--size 64] [--json F]
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
from saliency_jax.models import scaled_convnet
from saliency_jax.saliency import saliency_map

IMPLS = ("xla", "strided")
CASES = ("train", "map", "forward")


def _calls(batch: int, size: int, num_classes: int = 6):
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, num_classes, batch))
    params = scaled_convnet(num_classes, dropout_rate=0.1).init(jax.random.key(0), images[:1])
    calls = {}
    for impl in IMPLS:
        model = scaled_convnet(num_classes, dropout_rate=0.1).clone(pool_impl=impl)

        def loss(p, x, y, model=model):
            logits = model.apply(p, x, train=True, rngs={"dropout": jax.random.key(1)})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        calls["train", impl] = functools.partial(jax.jit(jax.value_and_grad(loss)), params, images, labels)
        calls["map", impl] = functools.partial(jax.jit(functools.partial(saliency_map, model.apply)), params, images)
        calls["forward", impl] = functools.partial(jax.jit(model.apply), params, images)
    return calls


def run(rounds: int, batch: int, size: int, pause: float = 0.3) -> dict:
    calls = _calls(batch, size)
    outputs = {key: jax.block_until_ready(call()) for key, call in calls.items()}  # compiles
    for case in CASES:
        a, b = (jax.tree.leaves(outputs[case, impl]) for impl in IMPLS)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6 * float(np.abs(y).max()), err_msg=case)
    repeats = {"train": 5, "map": 5, "forward": 10}
    times = interleaved_times(calls, CASES, IMPLS, repeats, rounds, pause)
    result = {"rounds": rounds, "batch": batch, "size": size, "backend": jax.default_backend(), "cases": {}}
    for case in CASES:
        strided, xla = times[case, "strided"], times[case, "xla"]
        result["cases"][case] = {"strided_ms": float(np.median(strided)), "reduce_window_ms": float(np.median(xla)),
                                 **ratio_summary(strided, xla)}
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="image side (the scaled ConvNet needs at least 64)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.batch < 1 or args.size < 1:
        parser.error("--rounds, --batch and --size must be >= 1")
    try:  # the network's own check of the image side (too small for its pools), computing nothing
        jax.eval_shape(scaled_convnet(6).init, jax.random.key(0),
                       jax.ShapeDtypeStruct((1, args.size, args.size, 3), jnp.float32))
    except ValueError as error:
        parser.error(f"--size: {error}")
    result = run(args.rounds, args.batch, args.size)
    print(f"batch {args.batch}, {args.size} x {args.size}, {args.rounds} rounds, {result['backend']}")
    for case, row in result["cases"].items():
        lo, hi = row["ratio_iqr"]
        print(f"  {case:8s} strided {row['strided_ms']:8.2f} ms  reduce_window {row['reduce_window_ms']:8.2f} ms  "
              f"ratio {row['ratio']:.3f} [{lo:.3f}, {hi:.3f}]")
    if args.json:
        save_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

"""Sweep of the GraphCut settings the paper leaves open: how paper mode's defaults were chosen.

The paper (§3.2) fixes the seeds (the 95% and 30% quantiles of the map), the
colour mixtures, the GraphCut and the largest component, but not the number of
Gaussians per mixture, the weight of the contrast term or the neighbourhood.
This runs paper mode (the paper's gradient map of the embedded EfficientNet-Lite0,
the model's top-1 class) on the hard-pasted single-object composites of
:func:`saliency_jax.evaluation.benchmark.make_benchmark` (42 per seed: every
object on every texture once) for every setting in the grid, and prints the mean
box IoU per seed, its mean over the seeds, how many seeds the setting beats the
reference on, and the mean box IoU per background.

    python experiments/sweep_graphcut.py                      # the grid, seeds 1-6
    python experiments/sweep_graphcut.py --seeds 1 --components 5 --weights 50

Maps are cached in ``--maps-cache`` (an ``.npz``), so a second sweep costs only the cuts.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os

import numpy as np

import arguments  # a sibling script


def benchmark_maps(seed: int, num_images: int, cache: str | None):
    """The benchmark of ``seed`` and its paper maps (gradient, top-1 class)."""
    from saliency_jax.evaluation import benchmark as bench

    data = bench.make_benchmark(num_images, size=224, seed=seed)
    key = f"seed{seed}_n{num_images}"
    stored = {}
    if cache and os.path.exists(cache):
        with np.load(cache) as f:
            stored = {k: f[k] for k in f.files}
    if key not in stored:
        from saliency_jax.evaluation.localisation_variants import seed_maps
        from saliency_jax.evaluation.model_maps import top_classes
        from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

        model = load_efficientnet_lite0()
        classes = top_classes(model, data.images.astype(np.float32), 1)[:, 0]
        stored[key] = seed_maps(model, data.images, classes, "gradient", batch_size=8)
        if cache:
            from saliency_jax import io

            with io.atomic_path(cache) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **stored)
    return data, stored[key]


def box_ious(data, maps, config, processes: int | None) -> np.ndarray:
    """Per-image box IoU of paper mode with ``config`` against the exact boxes."""
    from saliency_jax.evaluation.metrics import box_iou
    from saliency_jax.localisation import localise_many

    found = localise_many(data.images, maps, config, processes=processes)
    return box_iou(np.array([r.box for r in found], np.float64), data.boxes.astype(np.float64))


def reference_setting(text: str) -> tuple[int, float]:
    """An ``argparse`` type: ``components,weight``."""
    try:
        components, weight = text.split(",")
        return arguments.number_list(int, 1)(components)[0], arguments.number_list(float, 0)(weight)[0]
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"must be components,weight (an integer >= 1 and a finite number >= 0), got {text!r}") from None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=arguments.number_list(int, 0), default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--images", type=arguments.integer(1), default=42, help="composites per seed")
    parser.add_argument("--components", type=arguments.number_list(int, 1), default=[2, 3, 4, 5, 8],
                        help="Gaussians per colour mixture")
    parser.add_argument("--weights", type=arguments.number_list(float, 0), default=[25.0, 50.0, 100.0],
                        help="pairwise (contrast term) weights")
    parser.add_argument("--reference", type=reference_setting, default=(5, 50.0),
                        help="components,weight that the others are compared with")
    parser.add_argument("--processes", type=arguments.integer(1), default=None)
    parser.add_argument("--maps-cache", default=None)
    parser.add_argument("--out", default=None, help="JSON of the results")
    args = parser.parse_args(argv)

    from saliency_jax.localisation import GraphCutConfig

    seeds = args.seeds
    grid = list(itertools.product(args.components, args.weights))
    reference = args.reference
    if reference not in grid:
        grid.append(reference)
    per_seed = {setting: [] for setting in grid}
    per_background = {setting: {} for setting in grid}
    for seed in seeds:
        data, maps = benchmark_maps(seed, args.images, args.maps_cache)
        for setting in grid:
            config = dataclasses.replace(GraphCutConfig(), num_components=setting[0], pairwise_weight=setting[1])
            ious = box_ious(data, maps, config, args.processes)
            per_seed[setting].append(float(ious.mean()))
            for name, iou in zip(data.backgrounds, ious):
                per_background[setting].setdefault(name, []).append(float(iou))
            print(f"seed {seed}  components {setting[0]}  weight {setting[1]:g}: "
                  f"mean box IoU {ious.mean():.3f}, {np.mean(ious >= 0.5):.0%} at IoU >= 0.5", flush=True)

    base = np.array(per_seed[reference])
    names = sorted({n for s in grid for n in per_background[s]})
    print(f"\n| components | weight | {' | '.join(f'seed {s}' for s in seeds)} | mean | better than "
          f"{reference[0]}, {reference[1]:g} | {' | '.join(names)} |")
    print("|" + "---|" * (4 + len(seeds) + len(names)))
    rows = []
    for setting in sorted(grid, key=lambda s: -np.mean(per_seed[s])):
        values = np.array(per_seed[setting])
        wins = int(np.sum(values > base))
        by_background = [float(np.mean(per_background[setting][n])) for n in names]
        print(f"| {setting[0]} | {setting[1]:g} | {' | '.join(f'{v:.3f}' for v in values)} | {values.mean():.3f} | "
              f"{wins} of {len(seeds)} | {' | '.join(f'{v:.2f}' for v in by_background)} |")
        rows.append({"components": setting[0], "weight": setting[1], "per_seed": values.tolist(),
                     "mean": float(values.mean()), "wins": wins, "backgrounds": dict(zip(names, by_background))})
    result = {"seeds": seeds, "images": args.images, "reference": list(reference), "rows": rows}
    if args.out:
        from saliency_jax import io

        io.save_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

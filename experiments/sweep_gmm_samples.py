"""How much a localisation depends on the colour mixtures' random draw, by the seed pixels they fit.

Each colour model is fitted on at most ``max_gmm_samples`` seed pixels drawn at
random (``GraphCutConfig.seed``), and EM starts from a random k-means++ draw. This
localises the generated multi-object scenes of ``eval_localisation.py`` (each
target given its class) with each named variant and each sample count, once per
mixture seed, and prints the mean box IoU per mixture seed, their mean, the
fraction at IoU >= 0.5 and the spread of each target's box IoU over the mixture
seeds (its standard deviation, averaged over the targets).

    python experiments/sweep_gmm_samples.py                         # scene seed 2, 500 / 2000 / all
    python experiments/sweep_gmm_samples.py --scene-seed 1 --samples 500,0 --variants paper

Maps are cached in ``--maps-cache`` (shared with ``eval_localisation.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

import arguments  # a sibling script


def scene_maps(scene_seed: int, num_scenes: int, seed_maps: tuple[str, ...], cache: str | None):
    """The multi-object scenes of ``scene_seed`` and their maps, as ``eval_localisation.py`` makes them."""
    from eval_localisation import Config, compute_maps  # a sibling script

    from saliency_jax.evaluation import benchmark as bench

    config = Config(num_scenes=num_scenes, seed=scene_seed, seed_maps=seed_maps)
    data = bench.make_scenes(num_scenes, size=config.image_size, seed=scene_seed)
    tag = f"set0_n{len(data.images)}_s{config.image_size}_seed{scene_seed}"
    return data, compute_maps(config, "multi-object scenes", data.images, data.classes, cache, tag)


def box_ious(data, maps, config) -> np.ndarray:
    """Each target's box IoU with ``config``."""
    from saliency_jax.evaluation.metrics import box_iou
    from saliency_jax.localisation import localise

    boxes = np.array([localise(image, m, config).box for image, m in zip(data.images, maps)], np.float64)
    return box_iou(boxes, data.boxes.astype(np.float64))


def main(argv=None) -> dict:
    from saliency_jax.evaluation.localisation_variants import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene-seed", type=arguments.seed, default=2)
    parser.add_argument("--scenes", type=arguments.integer(1), default=20, help="multi-object scenes")
    parser.add_argument("--samples", type=arguments.number_list(int, 0), default=[500, 2000, 0],
                        help="max_gmm_samples values (0: every seed pixel)")
    parser.add_argument("--mixture-seeds", type=arguments.integer(2), default=5,
                        help="GraphCutConfig.seed 0 .. N-1")
    parser.add_argument("--variants", type=arguments.names(VARIANTS), default=("paper", "crops"))
    parser.add_argument("--maps-cache", default="outputs/localisation_maps.npz")
    parser.add_argument("--out", default=None, help="JSON of the results")
    args = parser.parse_args(argv)

    samples = list(dict.fromkeys(args.samples))
    variants = list(dict.fromkeys(args.variants))
    seed_maps = tuple(dict.fromkeys(VARIANTS[v].seed_map for v in variants))
    data, maps = scene_maps(args.scene_seed, args.scenes, seed_maps, args.maps_cache or None)
    print(f"\n{len(data.images)} targets, scene seed {args.scene_seed}, mixture seeds 0-{args.mixture_seeds - 1}\n")
    print("| variant | max_gmm_samples | mean box IoU per mixture seed | mean | IoU >= 0.5 | spread per target | "
          "s per localisation |")
    print("|---|---:|---|---:|---:|---:|---:|")
    rows = []
    for name in variants:
        variant = VARIANTS[name]
        for count in samples:
            start = time.perf_counter()
            ious = np.stack([
                box_ious(data, maps[variant.seed_map],
                         dataclasses.replace(variant.config, max_gmm_samples=count, seed=mixture_seed))
                for mixture_seed in range(args.mixture_seeds)
            ])
            seconds = (time.perf_counter() - start) / ious.size
            row = {"variant": name, "max_gmm_samples": count, "per_mixture_seed": ious.mean(axis=1).tolist(),
                   "mean": float(ious.mean()), "accuracy": float(np.mean(ious >= 0.5)),
                   "spread": float(ious.std(axis=0).mean()), "seconds": seconds}
            rows.append(row)
            print(f"| {name} | {count or 'all'} | {' '.join(f'{v:.3f}' for v in row['per_mixture_seed'])} | "
                  f"{row['mean']:.3f} | {row['accuracy']:.0%} | {row['spread']:.3f} | {seconds:.3f} |", flush=True)
    result = {"scene_seed": args.scene_seed, "targets": len(data.images), "mixture_seeds": args.mixture_seeds,
              "rows": rows}
    if args.out:
        from saliency_jax import io

        io.save_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

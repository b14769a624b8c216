"""Weakly supervised localisation (paper §3.2): the evaluation table.

On the generated benchmark (real objects pasted onto real textures, exact masks
and boxes; no download) this scores, for each choice of seed map of
EfficientNet-Lite0's top-1 class,

* ``graphcut``: the paper's pipeline (quantile seeds, colour GMMs, GraphCut,
  largest component), with the default settings (hard background seeds);
* ``graphcut, soft background``: the same, the background seeds only fitting
  the background colour model;
* ``cv2.grabCut``: OpenCV's GrabCut (5 iterations) from the same seeds, when
  OpenCV is importable;
* ``threshold box`` (and its largest part): the box around the map's top 5%;

beside the map-free baselines (centre box, whole image). Columns: mean box IoU,
localisation accuracy at IoU >= 0.5 (ILSVRC), mean mask IoU, the pointing game,
seconds per image. Seed maps: ``paper`` (the plain gradient map, §3.1),
``flip-shift`` (averaged over flips and 4-pixel shifts) and ``smoothgrad``.

With ``--voc`` / ``--imagenet-annotations`` it also scores the prepared TFDS
datasets ``voc/2007`` (class-agnostic top-1 box) and ``imagenet2012`` validation
(top-5 localisation error, one box per top-5 class as in the paper).

    python experiments/eval_localisation.py                 # the benchmark table
    python experiments/eval_localisation.py --simulated     # no model: simulated maps
    python experiments/eval_localisation.py --voc --imagenet-annotations LOC_val_solution.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
      num_images: benchmark images (42 = every object on every texture once).
      image_size: their side, the model's input.
      seed: benchmark seed (and SmoothGrad's noise seed).
      seed_maps: the seed map choices to compare.
      processes: GraphCut pool size (``None``: one per CPU).
      real_limit: images read from each real benchmark.
      batch_size: images per jitted saliency call.
    """

    num_images: int = 42
    image_size: int = 224
    seed: int = 0
    seed_maps: tuple[str, ...] = ("paper", "flip-shift", "smoothgrad")
    processes: int | None = None
    real_limit: int = 500
    batch_size: int = 8


def compute_maps(config: Config, images: np.ndarray, cache: str | None) -> dict[str, np.ndarray]:
    """Each seed map of the model's top-1 class, cached in ``cache`` (an ``.npz``)."""
    key = f"n{config.num_images}_s{config.image_size}_seed{config.seed}"
    stored = {}
    if cache and os.path.exists(cache):
        with np.load(cache) as data:
            stored = {k: data[k] for k in data.files}
    wanted = {name: f"{key}_{name}" for name in config.seed_maps}
    if all(k in stored for k in wanted.values()):
        return {name: stored[k] for name, k in wanted.items()}

    from saliency_jax.evaluation.model_maps import saliency_fn, top_classes
    from saliency_jax.evaluation.seed_maps import seed_map_fn
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    model = load_efficientnet_lite0()
    x = images.astype(np.float32)
    classes = top_classes(model, x, 1, batch_size=config.batch_size)[:, 0]
    plain = saliency_fn(model, batch_size=config.batch_size)
    for name, k in wanted.items():
        if k not in stored:
            start = time.perf_counter()
            stored[k] = seed_map_fn(name, plain, seed=config.seed)(x, classes)
            print(f"{name} maps: {time.perf_counter() - start:.1f} s")
    if cache:
        from saliency_jax import io

        with io.atomic_path(cache) as tmp:
            np.savez_compressed(tmp, **stored)
    return {name: stored[k] for name, k in wanted.items()}


def grabcut_localiser(images, maps, iterations: int = 5):
    """``cv2.grabCut`` from the paper's quantile seeds, as localise-like results."""
    import cv2

    from saliency_jax.localisation import bounding_box, largest_component, quantile_seeds

    class Found:
        def __init__(self, mask):
            self.mask, self.box = mask, bounding_box(mask)

    out = []
    for image, saliency in zip(images, maps):
        seeds = quantile_seeds(saliency)
        mask = np.full(saliency.shape, cv2.GC_PR_BGD, np.uint8)
        mask[seeds.foreground] = cv2.GC_FGD
        mask[seeds.background] = cv2.GC_BGD
        cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, None, np.zeros((1, 65)), np.zeros((1, 65)),
                    iterations, cv2.GC_INIT_WITH_MASK)
        out.append(Found(largest_component((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))))
    return out


def benchmark_table(config: Config, maps_by_name: dict[str, np.ndarray], data) -> str:
    from saliency_jax.evaluation import benchmark as bench
    from saliency_jax.localisation import GraphCutConfig, localise_many

    localisers = {
        "graphcut": functools.partial(localise_many, config=GraphCutConfig(), processes=config.processes),
        "graphcut, soft background": functools.partial(
            localise_many, config=GraphCutConfig(hard_background_seeds=False), processes=config.processes
        ),
    }
    try:
        import cv2

        cv2.setNumThreads(1)
        localisers["cv2.grabCut (5 it.)"] = grabcut_localiser
    except ImportError:
        print("OpenCV is not importable: no cv2.grabCut rows")
    rows = []
    for name, maps in maps_by_name.items():
        rows += bench.map_rows(data, maps, name, localisers)
    rows += bench.baseline_rows(data)
    # Best first: the table is read top-down.
    rows.sort(key=lambda r: -r.box_iou)
    return bench.format_table(rows)


def real_tables(config: Config, args) -> str:
    from saliency_jax.evaluation import tfds_eval
    from saliency_jax.evaluation.model_maps import make_predictor
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    model = load_efficientnet_lite0()
    rows = []
    for seed_map in config.seed_maps:
        if args.voc:
            examples = tfds_eval.voc_examples(args.voc_split, data_dir=args.data_dir, limit=config.real_limit)
            predict = make_predictor(model, seed_map=seed_map, top_k=1, batch_size=config.batch_size)
            scores = tfds_eval.evaluate(examples, predict, class_agnostic=True)
            rows.append((f"voc/2007 {args.voc_split}", seed_map, scores))
        if args.imagenet_annotations:
            examples = tfds_eval.imagenet_examples(args.imagenet_annotations, data_dir=args.data_dir,
                                                   limit=config.real_limit)
            predict = make_predictor(model, seed_map=seed_map, top_k=5, batch_size=config.batch_size)
            rows.append(("imagenet2012 validation", seed_map,
                         tfds_eval.evaluate(examples, predict, class_agnostic=False)))
    return tfds_eval.format_scores(rows)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=Config.num_images)
    parser.add_argument("--seed-maps", default=",".join(Config.seed_maps),
                        help="comma-separated: paper, flip-shift, smoothgrad")
    parser.add_argument("--simulated", action="store_true", help="simulated speckled maps instead of the model's")
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--maps-cache", default="outputs/localisation_maps.npz")
    parser.add_argument("--voc", action="store_true", help="also score TFDS voc/2007 (prepared)")
    parser.add_argument("--voc-split", default="test")
    parser.add_argument("--imagenet-annotations", default=None,
                        help="ILSVRC2012 validation boxes (XML folder or LOC_val_solution.csv)")
    parser.add_argument("--real-limit", type=int, default=Config.real_limit)
    parser.add_argument("--data-dir", default=None, help="TFDS data folder")
    parser.add_argument("--out", default="outputs/eval_localisation.md")
    args = parser.parse_args(argv)
    config = Config(num_images=args.images, seed_maps=tuple(s for s in args.seed_maps.split(",") if s),
                    processes=args.processes, real_limit=args.real_limit)

    from saliency_jax import io
    from saliency_jax.evaluation import benchmark as bench

    data = bench.make_benchmark(config.num_images, size=config.image_size, seed=config.seed)
    if args.simulated:
        maps_by_name = {"simulated": bench.simulated_saliency(data.masks, seed=config.seed)}
    else:
        maps_by_name = compute_maps(config, data.images, args.maps_cache)
    text = (
        f"## Localisation on the generated benchmark ({len(data.images)} images, "
        f"{config.image_size}x{config.image_size})\n\n" + benchmark_table(config, maps_by_name, data) + "\n"
    )
    if args.voc or args.imagenet_annotations:
        text += "\n## Real benchmarks (TFDS)\n\n" + real_tables(config, args) + "\n"
    print(text)
    io.save_json(os.path.splitext(args.out)[0] + ".json", {"config": dataclasses.asdict(config), "table": text})
    with io.atomic_path(args.out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return text


if __name__ == "__main__":
    main()

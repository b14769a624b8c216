"""Weakly supervised localisation (paper §3.2 and beyond): one table of every seed map and segmentation.

On generated scenes with exact ground truth (no download; see
``saliency_jax.evaluation.benchmark``):

* **multi-object scenes**: two or three objects of different ImageNet classes,
  cut from the bundled photos with feathered, non-rectangular edges, on real
  photo and texture backgrounds; every object is a target, localised given its
  class (the class EfficientNet-Lite0 gives the object alone);
* **single-object composites**: the same objects one at a time (given their
  class), and the older hard-pasted composites (model's top-1 class).

For every seed map of the embedded EfficientNet-Lite0 (``gradient`` = the
paper's map, SmoothGrad, Grad-CAM, Integrated Gradients, the product Grad-CAM x
SmoothGrad, ``+contrast``: the class score minus the mean of the image's
other top classes, and ``crops``: Grad-CAM of 51 zoomed crops at three scales,
each weighted by the class's softmax probability in the crop) and every
segmentation variant (``paper``: seeds only estimate
the colour models; ``hard``: seeds also hard constraints; ``iterated``: GrabCut's
colour re-estimation; ``prior``: a saliency term in the unary; ``salient``: the
component with the most saliency instead of the largest; ``support5``: no
foreground where the map is below 5% of its range; combinations), it
prints mean box IoU, the fraction with IoU >= 0.5, mean mask IoU and the
pointing game, beside the centre-box and whole-image baselines and
``cv2.grabCut`` (when OpenCV is importable).

    python experiments/eval_localisation.py                       # report set (seed 2)
    python experiments/eval_localisation.py --seed 1 --scenes 20  # tuning set
    python experiments/eval_localisation.py --simulated           # no model: simulated maps
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time

import numpy as np

import arguments  # a sibling script

SEED_MAPS = (
    "gradient", "smoothgrad", "gradcam", "ig", "gradcam*smoothgrad",
    "gradient+contrast", "smoothgrad+contrast", "gradcam+contrast", "gradcam*smoothgrad+contrast", "crops",
)


def segmentations() -> dict:
    """The segmentation variants compared, by name."""
    from saliency_jax.localisation import GraphCutConfig

    return {
        "paper": GraphCutConfig(),
        "hard": GraphCutConfig(hard_seeds="both"),
        "iterated": GraphCutConfig(iterations=5),
        "prior": GraphCutConfig(saliency_weight=4.0),
        "salient": GraphCutConfig(component="salient"),
        "prior+salient": GraphCutConfig(saliency_weight=4.0, component="salient"),
        "prior+iterated+salient": GraphCutConfig(saliency_weight=4.0, iterations=5, component="salient"),
        "salient+bg80": GraphCutConfig(background_quantile=0.8, component="salient"),
        "salient+bg80+support5": GraphCutConfig(background_quantile=0.8, component="salient", support=0.05),
    }


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
      num_scenes: multi-object scenes (2-3 targets each; 20 scenes ~ 50 targets).
      num_single: single-object composites of each kind.
      image_size: the model's input side.
      seed: scene seed. Tuning used seed 1; the reported table seed 2.
      seed_maps: the seed maps compared.
      processes: GraphCut pool size (``None``: one per CPU).
      batch_size: images per jitted map call.
    """

    num_scenes: int = 20
    num_single: int = 40
    image_size: int = 224
    seed: int = 2
    seed_maps: tuple[str, ...] = SEED_MAPS
    processes: int | None = None
    batch_size: int = 8


def compute_maps(config: Config, name: str, images: np.ndarray, classes: np.ndarray, cache: str | None,
                 tag: str) -> dict[str, np.ndarray]:
    """Every seed map of ``classes`` in ``images``, cached in ``cache`` (an ``.npz``) under ``tag``."""
    stored = {}
    if cache and os.path.exists(cache):
        with np.load(cache) as data:
            stored = {k: data[k] for k in data.files}
    wanted = {m: f"{tag}_{m}" for m in config.seed_maps}
    missing = [m for m, k in wanted.items() if k not in stored]
    if missing:
        from saliency_jax.evaluation.localisation_variants import seed_maps
        from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

        model = load_efficientnet_lite0()
        for m in missing:
            start = time.perf_counter()
            stored[wanted[m]] = seed_maps(model, images, classes, m, batch_size=config.batch_size)
            print(f"{name}: {m} maps {time.perf_counter() - start:.1f} s", flush=True)
        if cache:
            from saliency_jax import io

            os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
            with io.atomic_path(cache) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **stored)
    return {m: stored[k] for m, k in wanted.items()}


def top1_classes(config: Config, images: np.ndarray) -> np.ndarray:
    from saliency_jax.evaluation.model_maps import top_classes
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    return top_classes(load_efficientnet_lite0(), images.astype(np.float32), 1, batch_size=config.batch_size)[:, 0]


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
        found = largest_component((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))
        out.append(Found(found if found.any() else seeds.foreground))
    return out


def table(config: Config, data, maps_by_name: dict[str, np.ndarray], variants: dict, *, grabcut: bool):
    from saliency_jax.evaluation import benchmark as bench
    from saliency_jax.localisation import localise_many

    localisers = {name: functools.partial(localise_many, config=c, processes=config.processes)
                  for name, c in variants.items()}
    rows = []
    for name, maps in maps_by_name.items():
        extra = {}
        if grabcut and name in ("gradient", "simulated"):
            try:
                import cv2

                cv2.setNumThreads(1)
                extra["cv2.grabCut (5 it.)"] = grabcut_localiser
            except ImportError:
                print("OpenCV is not importable: no cv2.grabCut row")
        rows += bench.map_rows(data, maps, name, {**localisers, **extra})[2:]  # drop the threshold boxes
    rows += bench.baseline_rows(data)
    rows.sort(key=lambda r: -r.box_iou)
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=arguments.integer(1), default=Config.num_scenes, help="multi-object scenes")
    parser.add_argument("--single", type=arguments.integer(0), default=Config.num_single,
                        help="single-object composites of each kind (0: none)")
    parser.add_argument("--seed", type=arguments.seed, default=Config.seed)
    parser.add_argument("--seed-maps", type=arguments.names(SEED_MAPS), default=Config.seed_maps,
                        help="comma-separated, of " + ", ".join(SEED_MAPS))
    parser.add_argument("--segmentations", type=arguments.names(segmentations()), default=None,
                        help="comma-separated names (default: all)")
    parser.add_argument("--simulated", action="store_true", help="simulated maps instead of the model's")
    parser.add_argument("--processes", type=arguments.integer(1), default=None)
    parser.add_argument("--maps-cache", default="outputs/localisation_maps.npz")
    parser.add_argument("--out", type=arguments.json_path, default="outputs/eval_localisation.json")
    args = parser.parse_args(argv)
    config = Config(num_scenes=args.scenes, num_single=args.single, seed=args.seed, seed_maps=args.seed_maps,
                    processes=args.processes)
    variants = segmentations()
    if args.segmentations:
        variants = {k: variants[k] for k in args.segmentations}

    from saliency_jax import io
    from saliency_jax.evaluation import benchmark as bench

    size = config.image_size
    sets = {"multi-object scenes": bench.make_scenes(config.num_scenes, size=size, seed=config.seed)}
    if config.num_single:  # --single 0: the multi-object scenes only
        sets["single objects (feathered)"] = bench.make_scenes(config.num_single, objects_per_scene=(1, 1),
                                                               size=size, seed=config.seed)
        sets["single objects (hard-pasted, top-1 class)"] = bench.make_benchmark(config.num_single, size=size,
                                                                                 seed=config.seed)
    text, result = "", {"config": dataclasses.asdict(config), "tables": {}}
    for index, (name, data) in enumerate(sets.items()):
        if args.simulated:
            maps = {"simulated": bench.simulated_saliency(data.masks, seed=config.seed)}
        else:
            classes = data.classes if hasattr(data, "classes") else top1_classes(config, data.images)
            tag = f"set{index}_n{len(data.images)}_s{size}_seed{config.seed}"
            maps = compute_maps(config, name, data.images, classes, args.maps_cache, tag)
        # Single objects: the paper's pipeline on the paper's map (and the chosen default) only.
        if index > 0:
            maps = {k: v for k, v in maps.items() if k in ("gradient", "simulated", "gradcam*smoothgrad", "crops")}
        rows = table(config, data, maps, variants, grabcut=index == 0)
        block = (f"## {name}: {len(data.images)} targets, {size}x{size}, seed {config.seed}\n\n"
                 + bench.format_table(rows) + "\n")
        print(block, flush=True)
        text += block + "\n"
        result["tables"][name] = [r._asdict() for r in rows]
    io.save_json(args.out, result)
    with io.atomic_path(os.path.splitext(args.out)[0] + ".md") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return result


if __name__ == "__main__":
    main()

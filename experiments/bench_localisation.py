"""Speed and quality of the GraphCut localisation (paper §3.2) against OpenCV's GrabCut.

On the generated benchmark (real objects on real textures, exact masks) this times
each stage of :func:`saliency_jax.localisation.localise` per 224x224 image on one
core (seeds, GMM fits and scoring, graph build, max-flow, components), then the
whole pipeline over a process pool. When OpenCV is importable it runs
``cv2.grabCut`` (5 iterations, one thread) seeded from the same quantiles on the
same images, side by side: time ratio, and mask IoU of both against the truth and
against each other.

The seed maps are simulated speckled maps (``--maps simulated``, no model) or
EfficientNet-Lite0's maps of the top-1 class (``--maps gradient``, or any seed
map of ``saliency_jax.evaluation.localisation_variants``). With ``--size 512``
images and maps are enlarged to 512x512 first (the photo-resolution path's
default cap).

    python experiments/bench_localisation.py [--images 42] [--processes 2] [--maps gradient] [--size 512]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
      num_images: benchmark images (42 = every object on every texture once).
      image_size: their side (the benchmark is generated at 224 and enlarged).
      repeats: timed passes per image on one core; the median is kept.
      processes: pool size (``None``: one per CPU).
      grabcut_iterations: ``cv2.grabCut`` iterations (GrabCut's usual 5).
      maps: ``"simulated"``, or a seed map of ``localisation_variants`` (e.g. ``"gradient"``,
        ``"smoothgrad+contrast"``).
      seed: benchmark and simulated-map seed.
    """

    num_images: int = 42
    image_size: int = 224
    repeats: int = 3
    processes: int | None = None
    grabcut_iterations: int = 5
    maps: str = "simulated"
    seed: int = 0


def grabcut_mask(cv2, image: np.ndarray, saliency: np.ndarray, iterations: int, quantiles=(0.95, 0.30)):
    """``cv2.grabCut`` seeded from the map's quantiles, then the largest component."""
    from saliency_jax.localisation import largest_component, quantile_seeds

    seeds = quantile_seeds(saliency, *quantiles)
    mask = np.full(saliency.shape, cv2.GC_PR_BGD, np.uint8)
    mask[seeds.foreground] = cv2.GC_FGD
    mask[seeds.background] = cv2.GC_BGD
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    bgr = np.ascontiguousarray(image[..., ::-1])
    cv2.grabCut(bgr, mask, None, background, foreground, iterations, cv2.GC_INIT_WITH_MASK)
    return largest_component((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=Config.num_images)
    parser.add_argument("--repeats", type=int, default=Config.repeats)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--maps", default=Config.maps, help="simulated, or a seed map name (e.g. gradient)")
    parser.add_argument("--size", type=int, default=Config.image_size, help="image side (224 or e.g. 512)")
    parser.add_argument("--out", default="outputs/bench_localisation.json")
    args = parser.parse_args(argv)
    if min(args.images, args.repeats, args.size) < 1 or (args.processes is not None and args.processes < 1):
        parser.error("--images, --repeats, --size and --processes must be >= 1")
    if args.maps != "simulated":
        from saliency_jax.evaluation.localisation_variants import BASE_MAPS

        base, plus, suffix = args.maps.partition("+")
        if base not in BASE_MAPS or (plus and suffix != "contrast"):
            parser.error(f"--maps must be simulated or one of {', '.join(BASE_MAPS)}, optionally with +contrast, "
                         f"got {args.maps!r}")
    config = Config(num_images=args.images, repeats=args.repeats, processes=args.processes, maps=args.maps,
                    image_size=args.size)

    from threadpoolctl import threadpool_limits

    from saliency_jax.evaluation import benchmark as bench
    from saliency_jax.evaluation import metrics
    from saliency_jax.localisation import GraphCutConfig, StageTimes, bounding_box, localise, localise_many

    data = bench.make_benchmark(config.num_images, size=224, seed=config.seed)
    if config.maps == "simulated":
        maps = bench.simulated_saliency(data.masks, seed=config.seed)
    else:
        from saliency_jax.evaluation.localisation_variants import seed_maps
        from saliency_jax.evaluation.model_maps import top_classes
        from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

        model = load_efficientnet_lite0()
        classes = top_classes(model, data.images.astype(np.float32), 1)[:, 0]
        maps = seed_maps(model, data.images, classes, config.maps)
    if config.image_size != 224:
        from PIL import Image

        side = config.image_size

        def enlarge(a, mode):
            return np.asarray(Image.fromarray(a).resize((side, side), mode))

        data = data._replace(
            images=np.stack([enlarge(i, Image.BICUBIC) for i in data.images]),
            masks=np.stack([enlarge(m, Image.NEAREST) for m in data.masks]),
        )
        data = data._replace(boxes=np.stack([bounding_box(m) for m in data.masks]))
        maps = np.stack([np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((side, side),
                                                                                           Image.BILINEAR))
                         for m in maps])
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        cv2 = None
        print("OpenCV is not importable: skipping the cv2.grabCut comparison")

    graphcut_config = GraphCutConfig()
    ours, theirs, stage_times, grabcut_times = [], [], [], []
    with threadpool_limits(limits=1):  # one core: no BLAS threads
        for image, saliency in zip(data.images, maps):
            runs = []
            for _ in range(config.repeats):
                runs.append(localise(image, saliency, graphcut_config))
            ours.append(runs[0])
            stage_times.append(StageTimes(*(statistics.median(r.timings[i] for r in runs) for i in range(5))))
            if cv2 is not None:
                seconds = []
                for _ in range(config.repeats):
                    start = time.perf_counter()
                    mask = grabcut_mask(cv2, image, saliency, config.grabcut_iterations)
                    seconds.append(time.perf_counter() - start)
                theirs.append(mask)
                grabcut_times.append(statistics.median(seconds))

    per_stage = {name: float(np.mean([t[i] for t in stage_times])) for i, name in enumerate(StageTimes._fields)}
    ours_total = float(np.mean([t.total for t in stage_times]))
    processes = config.processes or os.cpu_count() or 1
    start = time.perf_counter()
    pooled = localise_many(data.images, maps, graphcut_config, processes=processes)
    pool_seconds = (time.perf_counter() - start) / len(data.images)
    # The pool's fixed cost: starting the workers and a trivial job each.
    tiny = np.zeros((processes, 4, 4, 3), np.uint8), np.tile(np.arange(16.0).reshape(4, 4), (processes, 1, 1))
    start = time.perf_counter()
    localise_many(*tiny, graphcut_config, processes=processes)
    pool_start_up = time.perf_counter() - start
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(ours, pooled)), "pool differs from serial"

    result = {
        "config": dataclasses.asdict(config),
        "images": len(data.images),
        "one_process_seconds_per_image": {**per_stage, "total": ours_total},
        "pool_seconds_per_image": pool_seconds,
        "pool_start_up_seconds": pool_start_up,
        "pool_processes": processes,
        "ours_mask_iou": float(np.mean([metrics.mask_iou(o.mask, t) for o, t in zip(ours, data.masks)])),
        "ours_box_iou": float(np.mean([metrics.box_iou(o.box, b) for o, b in zip(ours, data.boxes)])),
    }
    lines = [
        f"{len(data.images)} images {config.image_size}x{config.image_size}, {config.maps} maps",
        "| stage | seconds / image (one core) |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" for name, value in per_stage.items()],
        f"| **total** | **{ours_total:.4f}** |",
        f"| pool of {processes} (wall, incl. start-up) | {pool_seconds:.4f} |",
        f"| pool of {processes} (wall, less its {pool_start_up:.1f} s start-up) | "
        f"{max(pool_seconds - pool_start_up / len(data.images), 0.0):.4f} |",
    ]
    if cv2 is not None:
        grabcut_total = float(np.mean(grabcut_times))
        result.update(
            grabcut_seconds_per_image=grabcut_total,
            time_ratio=ours_total / grabcut_total,
            grabcut_mask_iou=float(np.mean([metrics.mask_iou(m, t) for m, t in zip(theirs, data.masks)])),
            grabcut_box_iou=float(np.mean([metrics.box_iou(bounding_box(m), b) for m, b in zip(theirs, data.boxes)])),
            ours_vs_grabcut_mask_iou=float(np.mean([metrics.mask_iou(o.mask, m) for o, m in zip(ours, theirs)])),
        )
        lines += [
            "",
            "| method | seconds / image (one core) | mask IoU vs truth | box IoU vs truth |",
            "|---|---|---|---|",
            f"| ours (sklearn GMM + PyMaxflow) | {ours_total:.4f} | {result['ours_mask_iou']:.3f} | "
            f"{result['ours_box_iou']:.3f} |",
            f"| cv2.grabCut ({config.grabcut_iterations} it.) | {grabcut_total:.4f} | "
            f"{result['grabcut_mask_iou']:.3f} | {result['grabcut_box_iou']:.3f} |",
            "",
            f"time ratio ours / grabCut: {result['time_ratio']:.2f}; "
            f"mask IoU ours vs grabCut: {result['ours_vs_grabcut_mask_iou']:.3f}",
        ]
    print("\n".join(lines))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    from saliency_jax import io

    io.save_json(args.out, result)
    return result


if __name__ == "__main__":
    main()

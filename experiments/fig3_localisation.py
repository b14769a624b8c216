"""The paper's Figure 3 for the bundled photos: weakly supervised localisation (§3.2).

One row per photo: the image, the saliency map of EfficientNet-Lite0's top-1
class, the seeds (red: above the 95% quantile, blue: below the 30% quantile), the
GraphCut mask (its largest component bright, other foreground half-dimmed) and
the box. Each photo is resized to the model's 224x224 input.

    python experiments/fig3_localisation.py [--seed-map paper|flip-shift|smoothgrad] [--photos chelsea,coffee]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
      photos: names of bundled photos (see ``saliency_jax.io.BUNDLED_PHOTOS``).
      seed_map: the map that seeds the GraphCut.
      processes: GraphCut pool size (1: no pool).
    """

    photos: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "china", "flower")
    seed_map: str = "paper"
    processes: int = 1


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-map", default=Config.seed_map, choices=("paper", "flip-shift", "smoothgrad"))
    parser.add_argument("--processes", type=int, default=Config.processes)
    parser.add_argument("--photos", default=",".join(Config.photos), help="comma-separated bundled photo names")
    parser.add_argument("--out", default="outputs/fig3_localisation.png")
    args = parser.parse_args(argv)
    config = Config(photos=tuple(p for p in args.photos.split(",") if p), seed_map=args.seed_map,
                    processes=args.processes)

    from saliency_jax import figures, io
    from saliency_jax.evaluation.model_maps import seed_map_explainer
    from saliency_jax.figures import PANEL_TITLES, localisation_panels
    from saliency_jax.localisation import GraphCutConfig, localise_many
    from saliency_jax.models import load_efficientnet_lite0

    model = load_efficientnet_lite0()
    explain, size, class_names = seed_map_explainer(model, config.seed_map), model.image_size, model.class_names
    images = np.stack([io.resize_image(io.bundled_photo(name), size) for name in config.photos])
    maps, classes = explain(images, None)
    found = localise_many(images, maps, GraphCutConfig(), processes=config.processes)
    panels, titles = [], []
    for name, image, saliency, result, c in zip(config.photos, images, maps, found, classes):
        panels += localisation_panels(image, saliency, result)
        titles += [f"{name}: {class_names[int(c)]}", *PANEL_TITLES[1:]]
    figure = figures.image_grid(panels, titles, columns=len(PANEL_TITLES))
    io.save_figure(args.out, figure)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()

"""The paper's Figure 3 for the bundled photos, and one two-object scene: localisation (§3.2).

One row per photo: the image, the seed map of EfficientNet-Lite0's top-1 class,
the seeds (red: foreground seeds, blue: background seeds), the GraphCut mask (its
kept component bright, other foreground half-dimmed) and the box. The GraphCut
runs on each photo at its own resolution (longest side at most 512 px). The last
rows are one scene built from two bundled photos' objects (the cat and the
espresso cup), localised once for each object's class.

    python experiments/fig3_localisation.py [--seed-map NAME] [--photos chelsea,coffee] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import arguments  # a sibling script


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
      photos: names of bundled photos (see ``saliency_jax.io.BUNDLED_PHOTOS``).
      seed_map: the localisation variant (``None``: the library's default; ``"paper"``: the paper).
      scene_objects: the objects of the multi-object scene (names of the benchmark's scene objects).
      scene_background: its background.
    """

    photos: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "china", "flower")
    seed_map: str | None = None
    scene_objects: tuple[str, ...] = ("cat", "espresso")
    scene_background: str = "lakeside"


def main(argv=None) -> str:
    from saliency_jax.evaluation.localisation_variants import DEFAULT_VARIANT, VARIANTS
    from saliency_jax.io import BUNDLED_PHOTOS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-map", default=DEFAULT_VARIANT, choices=tuple(VARIANTS))
    parser.add_argument("--photos", type=arguments.names(BUNDLED_PHOTOS, allow_empty=True), default=Config.photos,
                        help="comma-separated bundled photo names")
    parser.add_argument("--no-scene", action="store_true", help="leave out the multi-object scene")
    parser.add_argument("--out", default="outputs/fig3_localisation.png")
    args = parser.parse_args(argv)
    if args.no_scene and not args.photos:
        parser.error("argument --photos: must name a photo when --no-scene leaves out the scene")
    config = Config(photos=args.photos, seed_map=args.seed_map)

    from saliency_jax import figures, io
    from saliency_jax.evaluation.benchmark import SCENE_OBJECTS, scene
    from saliency_jax.evaluation.localisation_variants import variant_maps
    from saliency_jax.evaluation.model_maps import top_classes
    from saliency_jax.localisation import localise_photo
    from saliency_jax.models import load_efficientnet_lite0

    model = load_efficientnet_lite0()
    size = model.image_size
    photos = [io.bundled_photo(name) for name in config.photos]
    names = list(config.photos)
    work = [io.resize_image(photo, size) for photo in photos]
    classes = list(top_classes(model, np.stack(work), 1)[:, 0]) if work else []
    if not args.no_scene:
        two, _ = scene(config.scene_objects, config.scene_background, size=size, scales=(0.55, 0.5),
                       positions=((0.1, 0.05), (0.85, 0.9)))
        for obj in config.scene_objects:
            photos.append(two)
            work.append(two.astype(np.float32))
            names.append(f"scene, {obj}")
            classes.append(SCENE_OBJECTS[obj].label)
    maps, graphcut = variant_maps(model, np.stack(work), np.asarray(classes), config.seed_map)
    panels, titles = [], []
    for name, photo, saliency, c in zip(names, photos, maps, classes):
        found = localise_photo(photo, saliency, graphcut)
        panels += figures.localisation_panels(photo, io.resize_map(saliency, *photo.shape[:2]), found)
        short = model.class_names[int(c)].split(",")[0]
        titles += [f"{name}: {short}", *figures.localisation_titles(found)[1:]]
    titles[1] = f"seed map: {config.seed_map}"
    figure = figures.image_grid(panels, titles, columns=len(figures.PANEL_TITLES))
    io.save_figure(args.out, figure)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()

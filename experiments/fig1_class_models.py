"""Figure 1 of Simonyan et al. (2013): class model images, in both modes.

The paper's Figure 1 shows the class models of twelve ImageNet classes in a
3 x 4 grid, each with its class name. This script makes them with
EfficientNet-Lite0 in the paper's mode (L2 only, §2) and in the regularised mode,
and saves one PNG with the two grids one above the other, plus, per mode, the
images as float32 ``[12, 224, 224, 3]`` raw-scale ``.npy`` arrays.

    python experiments/fig1_class_models.py [--out DIR] [--steps N] [--no-stretch]

The figure stretches each image's deviation from the mean image to fill 0-255, for
display only (the regularised images are faint as made); ``--no-stretch`` shows
them as made. The saved ``.npy`` arrays are always as made: mean added, clipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np

import arguments  # a sibling script


@dataclasses.dataclass(frozen=True)
class Config:
    # Figure 1's classes, in the paper's order.
    classes: tuple[str, ...] = (
        "washing machine",
        "computer keyboard",
        "kit fox",
        "goose",
        "ostrich",
        "limousine",
        "dumbbell",
        "cup",
        "dalmatian",
        "bell pepper",
        "lemon",
        "husky",
    )
    modes: tuple[str, ...] = ("paper", "regularised")
    steps: int | None = None  # None: each mode's default
    seed: int = 0
    columns: int = 4
    # Display only: stretch each image's deviation from the mean to fill 0-255.
    stretch: bool = True
    out: str = "figures"
    name: str = "fig1_class_models"


MODE_TITLES = {
    "paper": "Paper (§2): maximise $S_c(I) - \\lambda\\|I\\|^2$, pixels, L2 only",
    "regularised": "Regularised: Fourier parametrisation, jitter, rescale, TV, blur, clipping",
}


def stretch_contrast(image: np.ndarray, mean: float = 127.0, percentile: float = 99.5) -> np.ndarray:
    """Display only: scales an image's deviation from the mean so that it fills 0-255."""
    deviation = image - mean
    extent = max(float(np.percentile(np.abs(deviation), percentile)), 1e-6)
    return np.clip(mean + deviation * (mean / extent), 0, 255)


def make_figure(images_by_mode: dict, labels: list[str], columns: int, stretch: bool = False, mean: float = 127.0):
    """Two stacked grids (one per mode) of class images with their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(images_by_mode)
    rows = -(-len(labels) // columns)
    figure = plt.figure(figsize=(2.4 * columns, (2.6 * rows + 0.5) * len(modes)))
    panels = figure.subfigures(len(modes), 1, squeeze=False)[:, 0]
    for panel, mode in zip(panels, modes):
        title = MODE_TITLES.get(mode, mode) + (" (contrast stretched)" if stretch else "")
        panel.suptitle(title, fontsize=12)
        axes = panel.subplots(rows, columns, squeeze=False)
        panel.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.04, wspace=0.05, hspace=0.18)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < len(labels):
                image = images_by_mode[mode][i]
                image = stretch_contrast(image, mean) if stretch else image
                ax.imshow(np.clip(np.round(image), 0, 255).astype(np.uint8))
                ax.set_title(labels[i], fontsize=10, y=-0.14)
    return figure


def main(argv=None) -> None:
    config = Config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=config.out, help=f"output folder (default: {config.out})")
    parser.add_argument("--steps", type=arguments.integer(1), default=None,
                        help="steps per mode (default: each mode's)")
    parser.add_argument("--modes", nargs="+", choices=config.modes, default=list(config.modes))
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="reuse the .npy images a previous run left in --out")
    parser.add_argument(
        "--no-stretch",
        action="store_true",
        help="show the images as made (mean added, clipped) instead of contrast-stretched",
    )
    args = parser.parse_args(argv)
    config = dataclasses.replace(
        config, out=args.out, steps=args.steps, modes=tuple(args.modes), stretch=not args.no_stretch
    )

    import jax
    from tqdm import tqdm

    from saliency_jax import io
    from saliency_jax.class_model import classifier_class_models, mode_defaults
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.models.imagenet import class_id, short_name

    classifier = load_efficientnet_lite0()
    class_ids = list(dict.fromkeys(class_id(name) for name in config.classes))
    images_by_mode = {}
    for mode in config.modes:
        saved = os.path.join(config.out, f"{config.name}_{mode}.npy")
        if args.reuse and os.path.exists(saved):
            images_by_mode[mode] = np.load(saved)
            print(f"{mode}: reusing {saved}")
            continue
        steps = config.steps or mode_defaults(mode).steps
        with tqdm(total=steps * len(class_ids), desc=mode, unit="step", disable=args.no_progress or None) as bar:
            result = classifier_class_models(
                classifier, np.asarray(class_ids), key=jax.random.key(config.seed), steps=steps, mode=mode,
                on_chunk=lambda n, history: bar.update(n * history.scores.shape[1]),
            )
        images = np.asarray(result.images, np.float32)
        images_by_mode[mode] = images
        io.save_npy(saved, images)
        logits = np.asarray(result.logits)
        hits = logits.argmax(-1) == np.asarray(class_ids)
        print(f"{mode}: {int(hits.sum())}/{len(class_ids)} class images are top-1 for their class")
        for cid, score, top in zip(class_ids, np.asarray(result.scores), logits.argmax(-1)):
            print(f"  {short_name(cid):>18s}  S_c {score:7.2f}  top-1 {short_name(int(top))}")
    labels = [short_name(c) for c in class_ids]
    path = os.path.join(config.out, f"{config.name}.png")
    figure = make_figure(images_by_mode, labels, config.columns, stretch=config.stretch, mean=classifier.pixel_mean)
    io.save_figure(path, figure)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

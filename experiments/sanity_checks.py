"""Model-randomisation sanity check (Adebayo et al., 2018) of the three §4 rules on EfficientNet-Lite0.

The weights are re-initialised from the top layer down (``fc``, ``bn1``,
``conv_head``, ``blocks_15`` ... ``blocks_0``, ``bn0``, ``conv_stem``), one layer more
per stage, and each rule's saliency map of the original top-1 class is compared
with the original map by Spearman rank correlation. It prints one table per rule
(stages down, photos across: ``|map|`` correlation / signed correlation) and
writes ``spearman.json`` and ``maps.png`` (the first photo's maps through the
cascade) under ``--out``.

Run ``python experiments/sanity_checks.py [--photos chelsea coffee] [--stages 8]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

import arguments  # a sibling script


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
    photos: bundled photo names.
    stages: number of cascade stages (top layers first); ``None`` for all of them.
    seed: seed of the random weights.
    """

    photos: tuple[str, ...] = ("chelsea", "coffee")
    stages: int | None = None
    seed: int = 0


def format_table(result, photos: tuple[str, ...]) -> str:
    """The Spearman correlations as text: one block per rule, one row per stage."""
    lines = []
    header = "stage".ljust(16) + "".join(f"{p[:14]:>18}" for p in photos)
    for r, rule in enumerate(result.rules):
        lines += [f"rule = {rule}   (Spearman: |map| / signed)", header]
        for s, stage in enumerate(result.stages):
            cells = "".join(
                f"{result.rank_correlation[r, s, b]:>10.3f} /{result.signed_rank_correlation[r, s, b]:>6.3f}"
                for b in range(len(photos))
            )
            lines.append(f"{stage:<16}{cells}")
        lines.append("")
    return "\n".join(lines)


def draw_maps(result, out: str, photo_index: int = 0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saliency_jax import io

    columns = ("original",) + result.stages
    size = (1.3 * len(columns), 1.5 * len(result.rules))
    fig, axes = plt.subplots(len(result.rules), len(columns), figsize=size, squeeze=False)
    for r, rule in enumerate(result.rules):
        for s, name in enumerate(columns):
            m = result.maps[r, s, photo_index]
            axes[r, s].imshow(np.clip(m / (np.percentile(m, 99.5) + 1e-12), 0, 1), cmap="gray")
            axes[r, s].set_xticks([])
            axes[r, s].set_yticks([])
            if r == 0:
                axes[r, s].set_title(name, fontsize=6, rotation=45)
        axes[r, 0].set_ylabel(rule, fontsize=8)
    io.save_figure(os.path.join(out, "maps.png"), fig)


def main(argv=None) -> None:
    from saliency_jax.io import BUNDLED_PHOTOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/sanity_checks")
    parser.add_argument("--photos", nargs="+", choices=BUNDLED_PHOTOS, default=None)
    # A negative count would slice the cascade from the end: -1 silently left out the last stage.
    parser.add_argument("--stages", type=arguments.integer(1), default=None,
                        help="cascade stages to run (default: all)")
    parser.add_argument("--seed", type=arguments.seed, default=0)
    args = parser.parse_args(argv)
    config = Config(
        photos=tuple(dict.fromkeys(args.photos)) if args.photos else Config.photos, stages=args.stages, seed=args.seed
    )

    import jax

    from saliency_jax import io
    from saliency_jax.evaluation.sanity import cascade_order, cascading_randomization
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.models.imagenet import short_name

    start = time.time()
    model = load_efficientnet_lite0()
    images = np.stack([io.resize_image(io.bundled_photo(p), model.image_size) for p in config.photos])
    layers = cascade_order(model.logits_fn, model.params, images)
    if config.stages is not None:
        layers = layers[: config.stages]
    key = jax.random.key(config.seed)
    result = cascading_randomization(model.logits_fn, model.params, images, key=key, layers=layers)
    classes = ", ".join(f"{p}: {short_name(int(c))}" for p, c in zip(config.photos, result.classes))
    print(f"EfficientNet-Lite0, cascading randomisation, classes explained: {classes}\n")
    print(format_table(result, config.photos))
    io.save_json(
        os.path.join(args.out, "spearman.json"),
        {
            "photos": list(config.photos),
            "classes": [int(c) for c in result.classes],
            "stages": list(result.stages),
            "rank_correlation": {
                rule: np.round(result.rank_correlation[r], 4).tolist() for r, rule in enumerate(result.rules)
            },
            "signed_rank_correlation": {
                rule: np.round(result.signed_rank_correlation[r], 4).tolist() for r, rule in enumerate(result.rules)
            },
        },
    )
    draw_maps(result, args.out)
    print(f"wrote {args.out}/spearman.json and maps.png in {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()

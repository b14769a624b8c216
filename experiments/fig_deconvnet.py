"""Figure for §4: gradient, deconvnet and guided back-propagation on EfficientNet-Lite0.

For each bundled photo it draws

* ``saliency_rules.png``: the photo and the class saliency map ``max_c |w|`` of its
  top-1 class under each ReLU backward rule, side by side;
* ``reconstructions_<photo>.png``: reconstructions (w.r.t. the raw pixels) of the
  most strongly activated feature maps of three layers, shallow to deep, under each
  rule, seeded with the maps' own activations as in Zeiler & Fergus' deconvnet;

and writes ``channels.json`` with the channels shown and their activations.

Run ``python experiments/fig_deconvnet.py [--out outputs/fig_deconvnet] [--photos chelsea coffee]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
    photos: bundled photo names.
    layers: three depths of EfficientNet-Lite0 (module paths): 56x56x24, 14x14x80, 7x7x192.
    channels: strongest feature maps shown per layer and photo.
    weighting: seed of a reconstruction, ``"activation"`` (Zeiler & Fergus) or ``"ones"``.
    percentile: maps and signals are scaled so this percentile of their magnitude is full scale.
    """

    photos: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "china", "flower")
    layers: tuple[str, ...] = ("blocks_2", "blocks_7", "blocks_14")
    channels: int = 3
    weighting: str = "activation"
    percentile: float = 99.5


def signal_to_rgb(signal: np.ndarray, percentile: float) -> np.ndarray:
    """A signed ``[H, W, 3]`` signal as an RGB image in [0, 1], zero at mid-grey (deconvnet style)."""
    scale = np.percentile(np.abs(signal), percentile) + 1e-12
    return np.clip(0.5 + 0.5 * signal / scale, 0.0, 1.0)


def map_to_unit(saliency: np.ndarray, percentile: float) -> np.ndarray:
    """A non-negative ``[H, W]`` map scaled to [0, 1]."""
    return np.clip(saliency / (np.percentile(saliency, percentile) + 1e-12), 0.0, 1.0)


def compute(config: Config):
    """Returns photos ``[P, 224, 224, 3]``, classes, maps ``{rule: [P, H, W]}``, and
    reconstructions ``{layer: (TopChannels, {rule: [P, k, H, W, 3]})}``."""
    import functools

    import jax
    import jax.numpy as jnp

    from saliency_jax import io
    from saliency_jax.backprop_rules import RULES
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.reconstruction import layer_reconstructions, top_activated_channels
    from saliency_jax.saliency import input_gradients, saliency_from_gradients

    model = load_efficientnet_lite0()
    photos = jnp.asarray(np.stack([io.resize_image(io.bundled_photo(p), model.image_size) for p in config.photos]))

    @functools.partial(jax.jit, static_argnames="rule")
    def maps_fn(params, images, rule):
        attribution = input_gradients(model.logits_fn, params, images, rule=rule)
        return saliency_from_gradients(attribution.gradients), attribution.classes

    @functools.partial(jax.jit, static_argnames=("layer", "rule"))
    def reconstruct_fn(params, images, channels, layer, rule):
        return layer_reconstructions(
            model.logits_fn, params, images, channels, layer=layer, rule=rule, weighting=config.weighting
        ).signals

    maps, classes = {}, None
    for rule in RULES:
        maps[rule], classes = (np.asarray(a) for a in maps_fn(model.params, photos, rule=rule))
    reconstructions = {}
    for layer in config.layers:
        top = top_activated_channels(model.logits_fn, model.params, photos, layer=layer, k=config.channels)
        signals = {
            rule: np.asarray(reconstruct_fn(model.params, photos, top.channels, layer=layer, rule=rule))
            for rule in RULES
        }
        reconstructions[layer] = (top, signals)
    return np.asarray(photos), classes, maps, reconstructions


def draw(config: Config, out: str, photos, classes, maps, reconstructions) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saliency_jax import io
    from saliency_jax.models.imagenet import short_name

    rules = tuple(maps)
    size = (2.2 * (1 + len(rules)), 2.2 * len(config.photos))
    fig, axes = plt.subplots(len(config.photos), 1 + len(rules), figsize=size, squeeze=False)
    for p, name in enumerate(config.photos):
        axes[p, 0].imshow(photos[p].astype(np.uint8))
        axes[p, 0].set_title(f"{name}: {short_name(int(classes[p]))}", fontsize=8)
        for r, rule in enumerate(rules):
            axes[p, 1 + r].imshow(map_to_unit(maps[rule][p], config.percentile), cmap="gray")
            if p == 0:
                axes[p, 1 + r].set_title(rule, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    io.save_figure(os.path.join(out, "saliency_rules.png"), fig)

    rows = [(layer, rule) for layer in config.layers for rule in rules]
    for p, name in enumerate(config.photos):
        size = (2.0 * (1 + config.channels), 2.0 * len(rows))
        fig, axes = plt.subplots(len(rows), 1 + config.channels, figsize=size, squeeze=False)
        for row, (layer, rule) in enumerate(rows):
            top, signals = reconstructions[layer]
            axes[row, 0].imshow(photos[p].astype(np.uint8))
            axes[row, 0].set_ylabel(f"{layer}\n{rule}", fontsize=8)
            for k in range(config.channels):
                axes[row, 1 + k].imshow(signal_to_rgb(signals[rule][p, k], config.percentile))
                if rule == rules[0]:
                    act = float(top.activations[p, k])
                    axes[row, 1 + k].set_title(f"channel {int(top.channels[p, k])} (max {act:.1f})", fontsize=7)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        io.save_figure(os.path.join(out, f"reconstructions_{name}.png"), fig)

    summary = {
        name: {
            "class": short_name(int(classes[p])),
            "layers": {
                layer: {
                    "channels": [int(c) for c in reconstructions[layer][0].channels[p]],
                    "max_activations": [round(float(a), 3) for a in reconstructions[layer][0].activations[p]],
                }
                for layer in config.layers
            },
        }
        for p, name in enumerate(config.photos)
    }
    io.save_json(os.path.join(out, "channels.json"), summary)


def model_layers() -> tuple[str, ...]:
    """The module paths of EfficientNet-Lite0's forward pass (found from shapes only: cheap)."""
    import jax.numpy as jnp

    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.reconstruction import list_layers

    model = load_efficientnet_lite0()
    images = jnp.zeros((1, model.image_size, model.image_size, 3), jnp.float32)
    return tuple(layer.name for layer in list_layers(model.logits_fn, model.params, images) if layer.name)


def main(argv=None) -> None:
    from saliency_jax.io import BUNDLED_PHOTOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/fig_deconvnet")
    parser.add_argument("--photos", nargs="+", choices=BUNDLED_PHOTOS, default=None,
                        help="bundled photo names (default: all)")
    parser.add_argument("--layers", nargs=3, default=None, help="three module paths, shallow to deep")
    args = parser.parse_args(argv)
    config = Config()
    if args.photos:
        config = dataclasses.replace(config, photos=tuple(dict.fromkeys(args.photos)))  # each photo once
    if args.layers:
        # Checked before the maps of every rule are computed, not after.
        known = model_layers()
        unknown = [layer for layer in args.layers if layer not in known]
        if unknown:
            parser.error(f"argument --layers: {unknown[0]!r} is not a module path of the model, "
                         f"e.g. {', '.join(Config.layers)}")
        config = dataclasses.replace(config, layers=tuple(args.layers))
    start = time.time()
    results = compute(config)
    draw(config, args.out, *results)
    elapsed = time.time() - start
    print(f"wrote {args.out}/saliency_rules.png and {len(config.photos)} reconstruction figures in {elapsed:.0f}s")


if __name__ == "__main__":
    main()

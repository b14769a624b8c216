"""The whole paper, offline, on the CPU: train, then §2 class models, §3 saliency, §3.2 localisation, §4 rules.

    python experiments/reproduce_small.py [--out outputs/reproduce_small] [--set num_localisation=100]

1. Generates the cluttered-objects dataset (a TFDS builder, no download) and
   trains the scaled ConvNet on its image-level labels only.
2. §2: one class model per class by gradient ascent on the unnormalised score
   with an L2 prior, and checks the network classifies each as its class.
3. §3: saliency maps ``max_c |dS_c/dI|`` of held-out images for their
   *predicted* class (no label is used at test time).
4. §3.2: GraphCut localisation seeded by the maps, scored against the object
   masks and boxes the dataset kept hidden, beside the map-free baselines
   (centre box, whole image) and the thresholded-map box.
5. §4: the same with the deconvnet and guided backward rules.

Writes under ``--out``: ``results.json`` and ``results.md`` (one table of
everything), the figures (``*.png``), ``timings.json`` (the only machine-dependent
file) and the resumable training run in ``train/``. The results depend only on
the config (its seeds): rerunning reproduces them, and a finished training run
is reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import io, parallel
from saliency_jax.class_model import class_model_ascent
from saliency_jax.data import ClutteredObjects, ClutteredObjectsConfig
from saliency_jax.evaluation import benchmark
from saliency_jax.evaluation.sanity import spearman_rank_correlation
from saliency_jax.localisation.pipeline import localise_many
from saliency_jax.models import cpu_convolution_options
from saliency_jax.saliency import saliency_map
from saliency_jax.training import cache_in_memory, chance_accuracy, replace, train_and_evaluate

import arguments  # a sibling script

HERE = os.path.dirname(os.path.abspath(__file__))


def load_config(overrides: list[str] = ()):
    """``get_config()`` of ``configs/reproduce_small.py`` with ``name=value`` overrides.

    ``train.<field>=value`` overrides a field of the training config. A bad override or
    setting raises ``ValueError`` naming it (:func:`check_config`), before anything runs.
    """
    path = os.path.join(HERE, "configs", "reproduce_small.py")
    spec = importlib.util.spec_from_file_location("reproduce_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    from saliency_jax.training import parse_override

    fields = [field.name for field in dataclasses.fields(config)]
    for text in overrides:
        name, equals, raw = text.partition("=")
        if not equals:
            raise ValueError(f"--set takes NAME=VALUE, got {text!r}")
        if name.startswith("train."):
            config = dataclasses.replace(config, train=parse_override(config.train, f"{name[6:]}={raw}"))
            continue
        if name not in fields:
            raise ValueError(f"--set NAME must be train.<field> or one of {', '.join(fields)}, got {name!r}")
        current = getattr(config, name)
        if isinstance(current, tuple) and all(isinstance(v, str) for v in current):
            value = tuple(raw.split(","))
        elif isinstance(current, bool):
            if raw.lower() not in ("1", "true", "0", "false"):
                raise ValueError(f"--set {name} must be true or false, got {raw!r}")
            value = raw.lower() in ("1", "true")
        elif isinstance(current, (int, float, str)):
            try:
                value = type(current)(raw)
            except ValueError:
                raise ValueError(f"--set {name} must be a{'n' if type(current) is int else ''} "
                                 f"{type(current).__name__}, got {raw!r}") from None
        else:  # a nested config (clutter, graphcut) or the split sizes
            raise ValueError(f"--set cannot set {name}; change it in experiments/configs/reproduce_small.py")
        config = dataclasses.replace(config, **{name: value})
    check_config(config)
    return config


def check_config(config) -> None:
    """Raises ``ValueError`` naming a setting the run cannot use: found before training, not after it."""
    from saliency_jax.backprop_rules import RULES

    rules = config.rules
    if not rules or any(rule not in RULES for rule in rules) or len(set(rules)) < len(rules):
        raise ValueError(f"rules must be distinct names of {', '.join(RULES)}, got {config.rules}")
    for name in ("num_devices", "class_model_steps", "num_localisation", "num_examples", "processes"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.num_devices > len(jax.devices()):
        raise ValueError(f"num_devices must be at most the {len(jax.devices())} devices here, got {config.num_devices}")
    for name in ("seed", "dataset_seed"):
        if not 0 <= getattr(config, name) < 2**32:
            raise ValueError(f"{name} must be in [0, 2**32), got {getattr(config, name)}")
    rate = config.class_model_learning_rate
    if not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"class_model_learning_rate must be a finite number > 0, got {rate}")
    for name in ("class_model_l2", "class_model_init_noise"):
        if not (np.isfinite(getattr(config, name)) and getattr(config, name) >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {getattr(config, name)}")
    if not 0 < config.centre_fraction <= 1:
        raise ValueError(f"centre_fraction must be in (0, 1], got {config.centre_fraction}")


def check_folders(config, out: str, data_dir: str | None = None) -> None:
    """Raises ``ValueError`` naming ``--out`` or ``--data-dir`` if either cannot be the folder it must be.

    Found before the dataset is generated, not by TFDS or the training loop after it.
    A ``data_dir`` that already holds this config's dataset is only read.
    """
    problem = arguments.folder_problem(out)
    if problem:
        raise ValueError(f"argument --out: {problem}")
    if data_dir is None:  # <out>/tfds: --out names it
        option, data_dir = "--out", os.path.join(out, "tfds")
    else:
        option = "--data-dir"
    prepared = os.path.join(data_dir, ClutteredObjects.name, _dataset_name(config), str(ClutteredObjects.VERSION))
    problem = arguments.folder_problem(data_dir, written=not os.path.isdir(prepared))
    if problem:
        raise ValueError(f"argument {option}: {problem}")


def _dataset_name(config) -> str:
    """The builder config name, tagged with a digest of what the images depend on."""
    recipe = repr((config.clutter, config.split_sizes, config.dataset_seed)).encode()
    return f"{config.dataset_name}_{hashlib.sha256(recipe).hexdigest()[:8]}"


def build_dataset(config, data_dir: str) -> ClutteredObjects:
    """Generates (once) and returns the dataset builder."""
    builder_config = ClutteredObjectsConfig(
        name=_dataset_name(config),
        description="cluttered objects for the CPU reproduction",
        clutter=config.clutter,
        split_sizes=config.split_sizes,
        seed=config.dataset_seed,
    )
    builder = ClutteredObjects(data_dir=data_dir, config=builder_config, num_workers=config.processes)
    builder.download_and_prepare()
    return builder


def _json_number(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _row_json(row: benchmark.TableRow) -> dict[str, Any]:
    return {
        "mean_iou": _json_number(row.box_iou),
        "iou50": _json_number(row.accuracy),
        "mask_iou": _json_number(row.mask_iou),
        "pointing": _json_number(row.pointing),
    }


def _mass_in_mask(maps: np.ndarray, masks: np.ndarray) -> float:
    """Mean share of each map's total inside the object."""
    total = maps.sum(axis=(1, 2))
    inside = (maps * masks).sum(axis=(1, 2))
    return float(np.mean(inside / np.maximum(total, 1e-30)))


# ----------------------------------------------------------------------------- figures


def _normalise(saliency: np.ndarray) -> np.ndarray:
    top = np.percentile(saliency, 99.5)
    return np.clip(saliency / top, 0, 1) if top > 0 else np.zeros_like(saliency)


def _draw_box(ax, box, colour):
    import matplotlib.patches as patches

    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=1.5))


def write_figures(out: str, *, class_names, class_images, class_probs, examples, rules, history) -> None:
    import matplotlib.pyplot as plt

    k = len(class_names)
    fig, axes = plt.subplots(1, k, figsize=(1.8 * k, 2.2), squeeze=False)
    for ax, image, name, p in zip(axes[0], class_images, class_names, class_probs):
        centred = image - image.mean()  # contrast stretched for display: +-3 std fills the range
        ax.imshow(np.clip(127.5 + 127.5 * centred / (3 * centred.std() + 1e-6), 0, 255).astype(np.uint8))
        ax.set_title(f"{name}\np={p:.2f}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle("§2 class models (gradient ascent on S_c, L2 prior; contrast stretched)", fontsize=9)
    io.save_figure(os.path.join(out, "class_models.png"), fig)

    n = len(examples["images"])
    fig, axes = plt.subplots(n, 2 + len(rules), figsize=(1.8 * (2 + len(rules)), 1.9 * n), squeeze=False)
    for i in range(n):
        row = axes[i]
        row[0].imshow(examples["images"][i])
        row[0].set_title(f"{class_names[examples['labels'][i]]} -> {class_names[examples['predicted'][i]]}", fontsize=7)
        for j, rule in enumerate(rules):
            row[1 + j].imshow(_normalise(examples["maps"][rule][i]), cmap="gray")
            if i == 0:
                row[1 + j].set_title(f"§4 {rule}" if j else f"§3 {rule}", fontsize=8)
        row[-1].imshow(examples["images"][i])
        row[-1].imshow(np.ma.masked_where(~examples["found_masks"][i], examples["found_masks"][i]), alpha=0.45,
                       cmap="autumn")
        _draw_box(row[-1], examples["boxes"][i], "lime")
        _draw_box(row[-1], examples["found_boxes"][i], "red")
        if i == 0:
            row[-1].set_title("§3.2 GraphCut (red) vs truth (green)", fontsize=7)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    io.save_figure(os.path.join(out, "saliency_and_localisation.png"), fig)

    steps = [r["step"] for r in history if "train_loss" in r]
    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    ax.plot(steps, [r["train_loss"] for r in history if "train_loss" in r], label="train loss")
    ax.plot(steps, [r["train_accuracy"] for r in history if "train_loss" in r], label="train accuracy")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    io.save_figure(os.path.join(out, "training.png"), fig)


def markdown(results: dict[str, Any]) -> str:
    def num(x, digits=3):
        return "n/a" if x is None else f"{x:.{digits}f}"

    lines = [
        "# Reproduction on the generated cluttered-objects dataset",
        "",
        f"Scaled ConvNet, {results['num_train_examples']} training images, {results['num_classes']} classes, "
        f"{results['train_steps']} steps.",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| test accuracy ({results['num_test_examples']} held-out images) | {num(results['test_accuracy'])} |",
        f"| chance accuracy (most frequent class) | {num(results['chance_accuracy'])} |",
        f"| §2 class models classified as their class | {num(results['class_models_top1'])} |",
        f"| §2 mean softmax probability of the class model's class | {num(results['class_models_probability'])} |",
        f"| §2 class models classified as their class, maximising log P_c instead | "
        f"{num(results['class_models_top1_log_softmax'])} |",
        "",
        "Class models start from the mean image plus faint fixed noise "
        f"({results['config']['class_model_init_noise']} grey levels): at the exact mean image every conv1 "
        "unit of this network is off, and the gradient vanishes.",
        "",
        f"§3.2 localisation of {results['num_localisation']} held-out images (box IoU with the hidden truth):",
        "",
        "| method | seed map | mean box IoU | IoU >= 0.5 | mask IoU | pointing game |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in results["localisation"].items():
        lines.append(
            f"| {name} | {results['localisation_maps'][name]} | {num(row['mean_iou'])} | {num(row['iou50'])} | "
            f"{num(row['mask_iou'])} | {num(row['pointing'])} |"
        )
    lines += [
        "",
        "§4 backward rules compared (maps of the predicted class):",
        "",
        "| rule | saliency mass on the object | pointing game | Spearman rank corr. with gradient |",
        "|---|---:|---:|---:|",
    ]
    for rule, row in results["rules"].items():
        lines.append(
            f"| {rule} | {num(row['mass_in_object'])} | {num(row['pointing'])} | {num(row['spearman_vs_gradient'])} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the run


def run(config, out: str, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Runs the whole reproduction and writes its outputs under ``out``.

    Raises:
      ValueError: a setting of ``config`` (:func:`check_config`), ``out`` or ``data_dir``
        (:func:`check_folders`) that the run cannot use, before anything runs.

    Returns:
      The results written to ``results.json``.
    """
    check_config(config)
    check_folders(config, out, data_dir or None)
    os.makedirs(out, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    # 1. Data and training (image-level labels only).
    builder = build_dataset(config, data_dir or os.path.join(out, "tfds"))
    train_source = cache_in_memory(builder.as_data_source(split="train"), ["image", "label"])
    test = cache_in_memory(builder.as_data_source(split="test"), ["image", "label", "mask", "box"])
    class_names = tuple(builder.info.features["label"].names)
    k = len(class_names)
    lap("dataset")

    train_config = replace(config.train, dataset=f"cluttered_objects/{builder.builder_config.name}")
    eval_source = type(test)({"image": test.features["image"], "label": test.features["label"]}, num_classes=k)
    mesh = parallel.data_mesh(jax.devices()[: config.num_devices])
    trained = train_and_evaluate(
        train_config, os.path.join(out, "train"), mesh=mesh,
        sources={"train": train_source, "eval": eval_source}, progress=progress,
    )
    logits_fn = functools.partial(trained.model.apply, train=False)
    params = jax.device_get(trained.state.params)
    lap("train")

    # 2. §2 class models: gradient ascent on the unnormalised score S_c with an L2 prior
    # (the paper), and on log P_c for comparison. The paper starts from the zero image
    # (the mean image). This network's conv1 biases can all end up negative, and then
    # every conv1 unit is off on a flat image and the gradient there is exactly zero;
    # so the ascent starts from the mean image plus faint fixed noise.
    class_models = {
        objective: _class_models(
            logits_fn, params, k, trained.model, train_config.image_size, config, objective
        )
        for objective in ("score", "log_softmax")
    }
    class_logits = np.asarray(class_models["score"].logits)
    class_probs = np.asarray(jax.nn.softmax(class_logits, axis=-1))[np.arange(k), np.arange(k)]
    class_models_top1 = float(np.mean(class_logits.argmax(-1) == np.arange(k)))
    log_softmax_logits = np.asarray(class_models["log_softmax"].logits)
    lap("class_models")

    # 3. §3 saliency maps of held-out images for their predicted class, data-parallel.
    n = min(config.num_localisation, len(test))
    images = test.features["image"][:n]
    labels, masks, boxes = test.features["label"][:n], test.features["mask"][:n], test.features["box"][:n]
    batch = 50 * mesh.size
    options = cpu_convolution_options()  # as the training loop compiles the ConvNet
    logits = parallel.sharded_map(lambda p, x: logits_fn(p, x), params, images.astype(np.float32),
                                  batch_size=batch, mesh=mesh, compiler_options=options)
    predicted = logits.argmax(-1).astype(np.int32)
    maps = {}
    for rule in config.rules:
        fn = functools.partial(_maps_fn, logits_fn, rule=rule)
        maps[rule] = parallel.sharded_map(
            fn, params, {"images": images.astype(np.float32), "classes": predicted}, batch_size=batch, mesh=mesh,
            compiler_options=options,
        )
    lap("saliency")

    # 4. §3.2 localisation against the hidden masks and boxes, with the baselines; §4 rules.
    truth = benchmark.LocalisationBenchmark(
        images, masks, boxes.astype(np.int64), tuple(class_names[i] for i in labels), ("cluttered",) * n
    )
    localise_fn = functools.partial(localise_many, config=config.graphcut, processes=config.processes)
    localisation, localisation_maps, rules, found_first = {}, {}, {}, None
    rows = benchmark.baseline_rows(truth, centre_fraction=config.centre_fraction)
    for row, name in zip(rows, ("centre_box", "whole_image")):
        localisation[name], localisation_maps[name] = _row_json(row), "-"
    for rule in config.rules:
        found = list(localise_fn(images, maps[rule]))
        found_first = found if found_first is None else found_first
        graphcut = benchmark.score(
            "graphcut", rule, np.stack([f.box for f in found]), truth,
            pred_masks=[f.mask for f in found], saliency_maps=maps[rule],
        )
        threshold = benchmark.score(
            "threshold box", rule,
            np.stack([benchmark.saliency_threshold_box(m, config.graphcut.foreground_quantile) for m in maps[rule]]),
            truth, saliency_maps=maps[rule],
        )
        suffix = "" if rule == config.rules[0] else f"_{rule}"
        localisation[f"graphcut{suffix}"], localisation_maps[f"graphcut{suffix}"] = _row_json(graphcut), rule
        localisation[f"threshold_box{suffix}"], localisation_maps[f"threshold_box{suffix}"] = _row_json(threshold), rule
        correlation = spearman_rank_correlation(
            maps[rule].reshape(n, -1), maps[config.rules[0]].reshape(n, -1)
        )
        rules[rule] = {
            "mass_in_object": _mass_in_mask(maps[rule], masks),
            "pointing": _json_number(graphcut.pointing),
            "graphcut_mean_iou": _json_number(graphcut.box_iou),
            "spearman_vs_gradient": _json_number(np.nanmean(correlation)),
        }
    lap("localisation")

    history = []
    metrics_path = os.path.join(out, "train", "metrics.jsonl")
    if os.path.exists(metrics_path):
        from saliency_jax.training import read_metrics

        history = read_metrics(metrics_path)
    results = {
        "num_classes": k,
        "class_names": list(class_names),
        "num_train_examples": len(train_source),
        "num_test_examples": trained.eval.num_examples,
        "train_steps": int(trained.state.step),
        "test_accuracy": trained.eval.accuracy,
        "test_loss": trained.eval.loss,
        "chance_accuracy": chance_accuracy(test.features["label"], k),
        "class_models_top1": class_models_top1,
        "class_models_probability": float(np.mean(class_probs)),
        "class_models_predicted": [class_names[i] for i in class_logits.argmax(-1)],
        "class_models_top1_log_softmax": float(np.mean(log_softmax_logits.argmax(-1) == np.arange(k))),
        "num_localisation": n,
        "localisation_accuracy_of_predicted_class": float(np.mean(predicted == labels)),
        "localisation": localisation,
        "localisation_maps": localisation_maps,
        "rules": rules,
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
    }
    m = min(config.num_examples, n)
    examples = {
        "images": images[:m], "labels": labels[:m], "predicted": predicted[:m], "boxes": boxes[:m],
        "maps": {rule: maps[rule][:m] for rule in config.rules},
        "found_boxes": [f.box for f in found_first[:m]], "found_masks": [f.mask for f in found_first[:m]],
    }
    write_figures(out, class_names=class_names, class_images=np.asarray(class_models["score"].images),
                  class_probs=class_probs,
                  examples=examples, rules=config.rules, history=history)
    io.save_json(os.path.join(out, "results.json"), results)
    with io.atomic_path(os.path.join(out, "results.md")) as tmp:
        with open(tmp, "w") as f:
            f.write(markdown(results))
    lap("figures")
    io.save_json(os.path.join(out, "timings.json"), timings)
    return results


def _class_models(logits_fn, params, k, model, image_size, config, objective):
    ascent = class_model_ascent(
        logits_fn,
        image_shape=(image_size, image_size, 3),
        mode="paper",
        objective=objective,
        pixel_mean=model.pixel_mean,
        pixel_scale=model.pixel_scale,
        pixel_range=(0.0, 255.0),
        learning_rate=config.class_model_learning_rate,
        l2_weight=config.class_model_l2,
    )

    @functools.partial(jax.jit, compiler_options=cpu_convolution_options())
    def run(params, key):
        ascent_key, noise_key = jax.random.split(key)
        state = ascent.init(params, jnp.arange(k), key=ascent_key)
        noise = jax.random.normal(noise_key, state.variables.shape)
        state = state._replace(variables=noise * config.class_model_init_noise / model.pixel_scale)
        state, history = ascent.run(params, state, config.class_model_steps)
        return ascent.finish(params, state, history)

    return run(params, jax.random.key(config.seed))


def _maps_fn(logits_fn, params, batch, *, rule):
    return saliency_map(logits_fn, params, batch["images"], batch["classes"], rule=rule)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/reproduce_small")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory (default: <out>/tfds)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.set)
        check_folders(config, args.out, args.data_dir or None)
    except ValueError as error:
        parser.error(str(error))
    results = run(config, args.out, data_dir=args.data_dir, progress=not args.no_progress)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

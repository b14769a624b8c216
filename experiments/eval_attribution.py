"""Attribution methods compared: one table of methods x metrics on generated two-object scenes, and a figure.

The benchmark is :func:`saliency_jax.evaluation.benchmark.make_scenes` with two
objects per scene (objects of different ImageNet classes cut from the bundled
photos, feathered, on photo and texture backgrounds). Every object is a target,
explained for its class (the class EfficientNet-Lite0 gives the object alone) in
its scene, by every method of :mod:`saliency_jax.attribution` on the embedded
EfficientNet-Lite0, and by combinations of them:

* ``a*b``: the product of two maps, each divided by its maximum (where both agree);
* ``+contrast``: the map of the class contrast ``S_c - mean(S_o)`` instead of
  ``S_c``, ``o`` ranging over the image's other top-5 classes (the other objects'
  classes, in a scene), the contrast of the localisation variants.

Metrics per target, averaged over targets:

* **pointing game** (Zhang et al., 2016, TorchRay's protocol): the map's maximum
  within 15 px of the target's visible pixels (``mask``) or of its box (``box``);
* **deletion / insertion AUC** (Petsiuk et al., 2018): the class's softmax
  probability as the map's pixels are replaced by a blurred copy (sigma 5 px),
  most salient first, in ``curve_steps`` equal shares (deletion: lower is better),
  or put back onto the blurred copy (insertion: higher is better);
* **box IoU** with the target's box: of the CAM protocol's box (the largest
  8-connected region of the map at or above 20% of its range, Zhou et al., 2016),
  and of the package's GraphCut localisation (paper §3.2, ``GraphCutConfig()``),
  with the GraphCut mask's IoU with the target's mask;
* **seconds per map**: the jitted call's wall time per target, after compiling
  (the targets of one scene share one call and its forward pass).

Two map-free rows anchor the scale: a centred Gaussian and uniform noise.

    python experiments/eval_attribution.py                       # the reported table and the figure
    python experiments/eval_attribution.py --quick               # 2 targets, few samples: a smoke run
    python experiments/eval_attribution.py --no-figure --scenes 10 --rise-masks 500

Writes ``--out`` (JSON, with every target's scores) and the Markdown table beside
it (same name, ``.md``), and the figure (``--figure-out``): each row a bundled
photo (its top-1 class) or a target of one scene, each column a method.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import stat
import sys
import time
import zipfile
import zlib

import numpy as np

import arguments  # a sibling script

BASE_METHODS = (
    "gradient", "gradient-x-input", "smoothgrad", "integrated-gradients", "blur-ig", "guided-ig",
    "gradient-shap", "gradcam", "gradcam++", "guided-gradcam", "crop-gradcam", "occlusion", "kernel-shap", "rise", "xrai",
)
COMBINATIONS = (
    "gradcam*smoothgrad", "gradcam*rise", "gradcam+contrast", "smoothgrad+contrast", "gradcam*smoothgrad+contrast",
)
BASELINES = ("centre (no model)", "random (no model)")
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "china", "flower")
CAM_THRESHOLD = 0.2  # Zhou et al.'s CAM box: 20% of the map's range


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
      num_scenes: scenes of ``objects_per_scene`` objects; targets = objects.
      objects_per_scene: inclusive range of objects per scene (two-object scenes: ``(2, 2)``).
      seed: scene seed (the localisation evaluation tunes on 1 and reports 2).
      methods: maps compared: :data:`BASE_METHODS`, :data:`COMBINATIONS` and :data:`BASELINES`.
      ig_steps: steps of Integrated Gradients, blur IG and guided IG.
      samples: SmoothGrad's noisy copies and GradientSHAP's draws.
      noise_scale: SmoothGrad's noise, a fraction of each image's value range.
      rise_masks: RISE's random masks.
      shap_samples: KernelSHAP's coalitions (of its default 8 x 8 grid of cells).
      patch, stride: occlusion's square patch and its step, in pixels.
      curve_steps: deletion / insertion steps.
      blur_sigma: the blurred baseline of the curves, in pixels (Petsiuk et al.: 5).
      batch_size: model rows per call inside the methods and curves.
      graphcut: score the GraphCut localisation too (about 0.4 s per map).
      figure: draw the figure.
    """

    num_scenes: int = 20
    objects_per_scene: tuple[int, int] = (2, 2)
    seed: int = 2
    methods: tuple[str, ...] = BASE_METHODS + COMBINATIONS + BASELINES
    ig_steps: int = 32
    samples: int = 16
    noise_scale: float = 0.15
    rise_masks: int = 1000
    shap_samples: int = 1024
    patch: int = 32
    stride: int = 16
    curve_steps: int = 20
    blur_sigma: float = 5.0
    batch_size: int = 32
    graphcut: bool = True
    figure: bool = True


QUICK = dict(num_scenes=1, ig_steps=4, samples=2, rise_masks=16, shap_samples=65, patch=112, stride=112,
             curve_steps=4, batch_size=16, figure=False)


# ----------------------------------------------------------------------------- maps


def contrast_logits_fn(logits_fn, others: int = 4):
    """A model whose score of class ``c`` is ``S_c - mean(S_o)`` over the image's other top classes.

    ``o`` ranges over the ``others + 1`` highest-scoring classes without ``c`` (the
    first ``others`` of them when ``c`` is not among them), chosen on the image the
    model is given; the gradient flows through the scores, not the choice.
    """
    import jax
    import jax.numpy as jnp

    def fn(params, images):
        logits = logits_fn(params, images)
        top_values, top_index = jax.lax.top_k(logits, others + 1)
        top_index = jax.lax.stop_gradient(top_index)
        classes = jnp.arange(logits.shape[-1])
        in_top = jnp.any(classes[None, :, None] == top_index[:, None, :], axis=-1)  # [B, K]
        with_c = (jnp.sum(top_values, axis=-1, keepdims=True) - logits) / others
        without_c = jnp.sum(top_values[:, :others], axis=-1, keepdims=True) / others
        return logits - jnp.where(in_top, with_c, without_c)

    return fn


def method_settings(config: Config, name: str, feature_layer: str) -> tuple[object, dict, bool]:
    """``(method, settings, positive_part)`` of a base method with this experiment's settings.

    ``positive_part``: the map keeps the positive part of the channel-equal
    attribution (occlusion: a patch whose covering raises the class's score, such as
    the other object of a scene, is evidence against it); other pixel methods reduce
    with the paper's ``max_c |.|``.
    """
    from saliency_jax import attribution as attr

    if name == "gradient":
        return attr.gradient, {}, False
    if name == "gradient-x-input":
        return attr.gradient_x_input, {}, False
    if name == "smoothgrad":
        # The paper's map of each noisy copy, averaged (the localisation variants' SmoothGrad).
        return attr.smoothgrad, dict(num_samples=config.samples, noise_scale=config.noise_scale,
                                     reduction="max_abs"), False
    if name == "integrated-gradients":
        return attr.integrated_gradients, dict(steps=config.ig_steps), False
    if name == "blur-ig":
        return attr.blur_integrated_gradients, dict(steps=config.ig_steps), False
    if name == "guided-ig":
        return attr.guided_integrated_gradients, dict(steps=config.ig_steps), False
    if name == "gradient-shap":
        return attr.gradient_shap, dict(num_samples=config.samples), False
    if name == "gradcam":
        return attr.gradcam, dict(layer=feature_layer), False
    if name == "gradcam++":
        return attr.gradcam_plus_plus, dict(layer=feature_layer), False
    if name == "guided-gradcam":
        return attr.guided_gradcam, dict(layer=feature_layer), False
    if name == "crop-gradcam":
        return attr.crop_gradcam, dict(layer=feature_layer), False
    if name == "occlusion":
        return attr.occlusion, dict(patch=config.patch, stride=config.stride), True
    if name == "rise":
        return attr.rise, dict(num_masks=config.rise_masks), False
    if name == "kernel-shap":
        return attr.kernel_shap, dict(num_samples=config.shap_samples), False
    raise ValueError(f"method must be one of {BASE_METHODS}, got {name!r}")


@functools.lru_cache(maxsize=None)
def cached_contrast(logits_fn):
    """One contrast model per model, so that a method jitted on it compiles once."""
    return contrast_logits_fn(logits_fn)


@functools.lru_cache(maxsize=None)
def map_function(config: Config, name: str, contrast: bool, logits_fn, feature_layer: str, size: int):
    """Jitted ``(params, images [B, H, W, C], classes [B, N], key) -> maps [B, N, size, size]`` of a base method."""
    import jax
    import jax.numpy as jnp

    from saliency_jax import attribution as attr

    method, settings, positive_part = method_settings(config, name, feature_layer)
    model = contrast_logits_fn(logits_fn) if contrast else logits_fn
    companion = attr.for_classes(method)

    def maps(params, images, classes, key):
        out = companion(model, params, images, classes, key=key, batch_size=config.batch_size, **settings)
        flat = out.reshape((-1,) + out.shape[2:])
        if positive_part:
            flat = jnp.maximum(flat[..., 0], 0.0)
        flat = attr.attribution_map(flat, size=(size, size))
        return flat.reshape(out.shape[:2] + (size, size))

    return jax.jit(maps)


def parse_name(name: str) -> tuple[tuple[str, ...], bool]:
    """``"gradcam*smoothgrad+contrast"`` -> ``(("gradcam", "smoothgrad"), True)``."""
    contrast = name.endswith("+contrast")
    parts = tuple(name.removesuffix("+contrast").split("*"))
    if not all(p in BASE_METHODS for p in parts):
        raise ValueError(
            f"method must be one of {BASE_METHODS}, products 'a*b' of them, optionally with '+contrast', "
            f"or one of {BASELINES}; got {name!r}"
        )
    return parts, contrast


def normalised(maps: np.ndarray) -> np.ndarray:
    """Each map ``[..., H, W]`` divided by its maximum (maps are non-negative); an all-zero map stays zero."""
    maps = np.asarray(maps, np.float64)
    peak = maps.max(axis=(-2, -1), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def baseline_maps(name: str, count: int, size: int, seed: int) -> np.ndarray:
    """Map-free rows: a centred Gaussian (sigma a quarter of the side) or uniform noise, ``[count, size, size]``."""
    if name == "centre (no model)":
        yy, xx = np.mgrid[:size, :size] + 0.5
        bump = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 4) ** 2))
        return np.broadcast_to(bump, (count, size, size)).astype(np.float32)
    if name == "random (no model)":
        return np.random.default_rng(seed).random((count, size, size)).astype(np.float32)
    raise ValueError(f"baseline must be one of {BASELINES}, got {name!r}")


class Explainer:
    """Maps of any named method for the classes of one image at a time, timed.

    Every base map is computed once per (method, contrast) and reused by the
    products. ``classes`` per call are padded to ``width`` by repeating the last,
    so that every call of a method has one shape and compiles once.
    """

    def __init__(self, config: Config, model, width: int):
        self.config, self.model, self.width = config, model, width
        self.seconds: dict[tuple[str, bool], list[float]] = {}

    def base(self, name: str, contrast: bool, image: np.ndarray, classes, key) -> np.ndarray:
        import jax.numpy as jnp

        if name == "xrai":  # regions ranked on the CPU after a jitted IG: one class at a time
            from saliency_jax.evaluation.region_maps import xrai

            model = cached_contrast(self.model.logits_fn) if contrast else self.model.logits_fn
            start = time.perf_counter()
            out = np.concatenate([xrai(model, self.model.params, image[None], [c], steps=self.config.ig_steps,
                                       batch_size=self.config.batch_size) for c in classes])
            self.seconds.setdefault((name, contrast), []).append((time.perf_counter() - start) / len(classes))
            return out
        fn = map_function(self.config, name, contrast, self.model.logits_fn, self.model.feature_layer,
                          image.shape[0])
        padded = list(classes) + [classes[-1]] * (self.width - len(classes))
        start = time.perf_counter()
        out = np.asarray(fn(self.model.params, jnp.asarray(image[None], jnp.float32),
                            jnp.asarray([padded], jnp.int32), key))
        self.seconds.setdefault((name, contrast), []).append((time.perf_counter() - start) / len(classes))
        return out[0, : len(classes)]

    def maps(self, names, image: np.ndarray, classes, key) -> dict[str, np.ndarray]:
        """``{name: [N, H, W]}`` for the ``N`` classes, every name of :func:`parse_name`'s form."""
        cache, out = {}, {}
        for name in names:
            parts, contrast = parse_name(name)
            for part in parts:
                if (part, contrast) not in cache:
                    cache[part, contrast] = self.base(part, contrast, image, classes, key)
            product = normalised(cache[parts[0], contrast])
            for part in parts[1:]:
                product = product * normalised(cache[part, contrast])
            out[name] = product.astype(np.float32) if len(parts) > 1 else cache[parts[0], contrast]
        return out

    def timing(self, name: str) -> tuple[float, float]:
        """``(seconds per map after compiling, first call's extra seconds)`` of a name (products: the sum)."""
        parts, contrast = parse_name(name)
        steady, compile_extra = 0.0, 0.0
        for part in parts:
            times = self.seconds.get((part, contrast), [])
            if not times:
                return float("nan"), float("nan")
            rest = times[1:] or times
            steady += float(np.median(rest))
            compile_extra += max(times[0] - float(np.median(rest)), 0.0)
        return steady, compile_extra


# ----------------------------------------------------------------------------- metrics


def cam_box(saliency: np.ndarray, threshold: float = CAM_THRESHOLD) -> np.ndarray:
    """The CAM protocol's box: the largest 8-connected region at or above ``threshold`` of the map's range."""
    from saliency_jax.localisation import bounding_box, largest_component

    saliency = np.asarray(saliency, np.float64)
    low, high = saliency.min(), saliency.max()
    if not high > low:
        return np.array([0, 0, saliency.shape[1], saliency.shape[0]], np.int64)
    region = largest_component((saliency - low) / (high - low) >= threshold, connectivity=2)
    return np.asarray(bounding_box(region), np.int64)


@functools.lru_cache(maxsize=None)
def curve_functions(config: Config, logits_fn):
    """The deletion and insertion curves with the experiment's settings, one jitted function for both."""
    import jax

    from saliency_jax.evaluation.faithfulness import deletion_and_insertion_curves

    settings = dict(steps=config.curve_steps, baseline="blur", blur_sigma=config.blur_sigma,
                    batch_size=config.curve_steps + 1)  # one curve per model call
    return jax.jit(functools.partial(deletion_and_insertion_curves, logits_fn, **settings))


def score_targets(config: Config, model, data, maps: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of every target for one method's maps ``[T, H, W]``."""
    import jax.numpy as jnp

    from saliency_jax.evaluation import metrics

    curves = curve_functions(config, model.logits_fn)
    scores = {
        "pointing_mask": metrics.pointing_hits(maps, masks=data.masks, tolerance=15.0),
        "pointing_box": metrics.pointing_hits(maps, boxes=data.boxes[:, None], tolerance=15.0),
        "deletion_auc": np.zeros(len(maps)),
        "insertion_auc": np.zeros(len(maps)),
    }
    for targets in scene_targets(data):
        images = jnp.asarray(data.images[targets], jnp.float32)
        classes = jnp.asarray(data.classes[targets], jnp.int32)
        saliency = jnp.asarray(maps[targets])
        deletion, insertion = curves(model.params, images, saliency, classes)
        scores["deletion_auc"][targets] = np.asarray(deletion.auc)
        scores["insertion_auc"][targets] = np.asarray(insertion.auc)
    boxes = np.stack([cam_box(m) for m in maps])
    scores["cam_box_iou"] = np.diagonal(metrics.box_iou(boxes[:, None], data.boxes[None]))
    if config.graphcut:
        from saliency_jax.localisation import GraphCutConfig, localise_many

        # A constant map (a rectified map that is zero everywhere) seeds nothing: it gets the whole image.
        size = maps.shape[1:]
        flat = maps.reshape(len(maps), -1)
        informative = np.flatnonzero(flat.max(axis=1) > flat.min(axis=1))
        gc_boxes = np.tile(np.array([0, 0, size[1], size[0]]), (len(maps), 1))
        gc_masks = np.ones(maps.shape, bool)
        found = localise_many(data.images[informative], maps[informative], config=GraphCutConfig(), processes=1)
        for t, f in zip(informative, found):
            gc_boxes[t], gc_masks[t] = f.box, f.mask
        scores["graphcut_box_iou"] = np.diagonal(metrics.box_iou(gc_boxes[:, None], data.boxes[None]))
        scores["graphcut_mask_iou"] = np.array([metrics.mask_iou(f, m) for f, m in zip(gc_masks, data.masks)])
    scores["constant_map"] = (maps.reshape(len(maps), -1).max(axis=1) == maps.reshape(len(maps), -1).min(axis=1))
    return scores


def scene_targets(data) -> list[np.ndarray]:
    """The target indices of each scene, in order."""
    return [np.flatnonzero(data.scenes == s) for s in np.unique(data.scenes)]


# ----------------------------------------------------------------------------- table


COLUMNS = (
    ("pointing_mask", "pointing (mask)"),
    ("pointing_box", "pointing (box)"),
    ("deletion_auc", "deletion AUC (lower)"),
    ("insertion_auc", "insertion AUC (higher)"),
    ("cam_box_iou", "box IoU (CAM box)"),
    ("graphcut_box_iou", "box IoU (GraphCut)"),
    ("graphcut_mask_iou", "mask IoU (GraphCut)"),
    ("seconds", "s / map"),
)


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows (``{"method": ..., metric: mean, ...}``), in the order given."""
    present = [(key, title) for key, title in COLUMNS if any(key in r for r in rows)]
    lines = ["| method | " + " | ".join(t for _, t in present) + " |",
             "|---|" + "---|" * len(present)]
    for row in rows:
        cells = []
        for key, _ in present:
            value = row.get(key, float("nan"))
            if value is None or np.isnan(value):
                cells.append("-")
            elif key == "seconds":
                cells.append(f"{value:.3g}")
            elif key.startswith("pointing"):
                cells.append(f"{100 * value:.1f}%")
            else:
                cells.append(f"{value:.3f}")
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate(config: Config, model=None, data=None, *, cache: str | None = None) -> dict:
    """Runs every method on the benchmark; returns the result (rows, per-target scores, settings, maps).

    ``cache``: an ``.npz`` the maps and their timings are kept in (written once all
    maps are computed, read instead of computing them when its settings match).
    """
    import jax

    from saliency_jax.evaluation import benchmark as bench

    if model is None:
        from saliency_jax.models import load_efficientnet_lite0

        model = load_efficientnet_lite0()
    start = time.perf_counter()
    if data is None:
        data = bench.make_scenes(config.num_scenes, objects_per_scene=config.objects_per_scene,
                                 size=model.image_size, seed=config.seed)
    model_methods = [m for m in config.methods if m not in BASELINES]
    for name in model_methods:
        parse_name(name)
    groups = scene_targets(data)
    explainer = Explainer(config, model, max(len(g) for g in groups))
    stored = load_maps(cache, config, explainer)
    missing = [name for name in model_methods if name not in stored]
    if missing:
        new = {name: np.zeros(data.masks.shape, np.float32) for name in missing}
        root = jax.random.key(config.seed)
        for s, targets in enumerate(groups):
            found = explainer.maps(missing, data.images[targets[0]], [int(c) for c in data.classes[targets]],
                                   jax.random.fold_in(root, s))
            for name, m in found.items():
                new[name][targets] = m
            print(f"scene {s + 1}/{len(groups)}: maps at {time.perf_counter() - start:.0f} s", flush=True)
        stored.update(new)
        save_maps(cache, config, stored, explainer)
    maps = {name: stored[name] for name in model_methods}
    cached = [name for name in model_methods if name not in missing]
    for name in config.methods:
        if name in BASELINES:
            maps[name] = baseline_maps(name, len(data.images), data.images.shape[1], config.seed)

    probabilities = clean_probabilities(model, data)
    rows, per_target = [], {}
    for name in config.methods:
        scores = score_targets(config, model, data, maps[name])
        seconds, compile_seconds = explainer.timing(name) if name not in BASELINES else (0.0, 0.0)
        row = {"method": name, **{k: float(np.mean(v)) for k, v in scores.items()},
               "seconds": seconds, "compile_seconds": compile_seconds}
        rows.append(row)
        per_target[name] = {k: [round(float(x), 5) for x in v] for k, v in scores.items()}
        row.pop("constant_map")
        row["constant_maps"] = int(np.sum(scores["constant_map"]))
        print(format_table([row]).splitlines()[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    # Only the map-free rows (a run of the baselines alone): no method to name best.
    best = max((r for r in rows if r["method"] not in BASELINES), key=lambda r: r["pointing_mask"], default=None)
    return {
        "config": dataclasses.asdict(config),
        "targets": {
            "count": len(data.images),
            "scenes": len(groups),
            "objects": list(data.objects),
            "classes": [int(c) for c in data.classes],
            "backgrounds": list(data.backgrounds),
            "clean_probability": [round(float(p), 5) for p in probabilities],
        },
        "rows": rows,
        "per_target": per_target,
        "best_pointing": None if best is None else {
            "method": best["method"], "pointing_mask": best["pointing_mask"],
            "standard_error": float(np.sqrt(best["pointing_mask"] * (1 - best["pointing_mask"]) / len(data.images))),
        },
        "seconds_total": time.perf_counter() - start,
        "maps_from_cache": cached,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "maps": maps,
    }


def _cache_tag(config: Config) -> str:
    fields = dataclasses.asdict(config)
    for unused in ("methods", "curve_steps", "blur_sigma", "graphcut", "figure"):  # do not change the maps
        fields.pop(unused)
    return repr(sorted(fields.items()))


# What reading a file that is not a maps cache (or a damaged one) raises; pickled data is never loaded.
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def maps_cache_problem(path: str) -> str | None:
    """Why the file at ``path`` is not a maps cache :func:`save_maps` wrote; ``None`` if it is, or if there is none.

    Reads only the archive's list of arrays and its small ``tag`` and ``names``, so
    that the check costs nothing beside the hours the maps take; a pipe is not read.
    """
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        return f"{path!r} is a folder, where the maps cache goes; remove it or choose another --maps-cache"
    refusal = f"{path!r} is not a maps cache written by this script; remove it or choose another --maps-cache"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return refusal
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):  # a single .npy array
            return refusal
        with stored:
            tag, names = stored["tag"], stored["names"]
            ours = (tag.ndim == 0 and tag.dtype.kind == "U" and names.ndim == 1 and names.dtype.kind == "U"
                    and "maps" in stored.files)
    except _UNREADABLE:
        return refusal
    return None if ours else refusal


def save_maps(cache: str | None, config: Config, maps: dict, explainer: Explainer) -> None:
    if not cache:
        return
    from saliency_jax import io

    os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    seconds = {f"{name}|{int(contrast)}": np.asarray(t) for (name, contrast), t in explainer.seconds.items()}
    with io.atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, tag=np.asarray(_cache_tag(config)), names=np.asarray(list(maps)),
                                maps=np.stack(list(maps.values())), **{f"seconds|{k}": v for k, v in seconds.items()})


def load_maps(cache: str | None, config: Config, explainer: Explainer) -> dict:
    """Every map ``cache`` holds for these settings (and their timings, into ``explainer``); ``{}`` if none.

    A cache of other settings gives ``{}``: its maps are computed again and it is
    rewritten. A file that is not a maps cache (:func:`maps_cache_problem`), or one
    that cannot be read, raises ``ValueError`` naming it, rather than be overwritten.
    """
    if not cache or not os.path.exists(cache):
        return {}
    problem = maps_cache_problem(cache)
    if problem:
        raise ValueError(f"--maps-cache: {problem}")
    seconds = {}
    try:
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["tag"]) != _cache_tag(config):
                return {}
            maps = {name: stored["maps"][i] for i, name in enumerate(stored["names"].tolist())}
            for key in stored.files:
                if key.startswith("seconds|"):
                    _, name, contrast = key.split("|")
                    seconds[(name, bool(int(contrast)))] = stored[key].tolist()
    except _UNREADABLE as error:
        raise ValueError(f"--maps-cache: cannot read {cache!r} ({error}); remove it or choose another "
                         "--maps-cache") from None
    for key, value in seconds.items():
        explainer.seconds.setdefault(key, value)
    print(f"maps of {len(maps)} methods read from {cache}", flush=True)
    return maps


def clean_probabilities(model, data) -> np.ndarray:
    """Each target's softmax probability in its scene."""
    import jax
    import jax.numpy as jnp

    probs = jax.jit(lambda p, x: jax.nn.softmax(model.logits_fn(p, x), axis=-1))
    out = [np.asarray(probs(model.params, jnp.asarray(data.images[t[:1]], jnp.float32)))[0][data.classes[t]]
           for t in scene_targets(data)]
    return np.concatenate(out)


def markdown(result: dict, command: str) -> str:
    """The report: command, settings, the table."""
    config, targets = result["config"], result["targets"]
    best = result["best_pointing"]
    load = f" (load average {result['load_average'][0]:.1f})" if result.get("load_average") else ""
    low, high = config["objects_per_scene"]
    objects = str(low) if low == high else f"{low}-{high}"
    return "\n".join([
        f"Command: `{command}`",
        "",
        f"{targets['count']} targets in {targets['scenes']} {objects}-object scenes (seed {config['seed']}), "
        f"each explained for its class; "
        f"mean probability of the target's class in its scene {np.mean(targets['clean_probability']):.3f}. "
        f"IG, blur IG and guided IG {config['ig_steps']} steps, SmoothGrad {config['samples']} samples "
        f"(noise {config['noise_scale']}), GradientSHAP {config['samples']} draws, RISE {config['rise_masks']} masks, "
        f"KernelSHAP {config['shap_samples']} coalitions of an 8 x 8 grid, occlusion patch {config['patch']} "
        f"stride {config['stride']}, deletion / insertion {config['curve_steps']} steps on a blur of sigma "
        f"{config['blur_sigma']} px. {result['seconds_total'] / 60:.1f} min on {result['cpus']} cores{load}.",
        *([f"The maps (and seconds per map) of {len(result['maps_from_cache'])} methods were read from the cache "
           "of an earlier run with the same settings: "
           + ", ".join(result["maps_from_cache"]) + "."] if result.get("maps_from_cache") else []),
        "",
        format_table(result["rows"]),
        "",
        *([f"Best pointing game (mask): {best['method']}, {100 * best['pointing_mask']:.1f}% "
           f"(standard error {100 * best['standard_error']:.1f} points).", ""] if best else []),
    ])


# ----------------------------------------------------------------------------- figure


def draw_figure(config: Config, model, data, path: str, methods) -> None:
    """Rows: the bundled photos (top-1 class) and both targets of the first scene; columns: the methods.

    The ``+contrast`` variants are left out (they lose on the benchmark and need their own compilation).
    """
    import jax
    import jax.numpy as jnp

    from saliency_jax import io
    from saliency_jax.figures import image_grid, normalise_map
    from saliency_jax.models.imagenet import short_name

    size = model.image_size
    methods = [m for m in methods if m not in BASELINES and not m.endswith("+contrast")]
    images = [io.resize_image(io.bundled_photo(p), size) for p in PHOTOS]
    top1 = jax.jit(lambda p, x: jnp.argmax(model.logits_fn(p, x), axis=-1))
    rows = [(name, image, [int(top1(model.params, jnp.asarray(image[None]))[0])])
            for name, image in zip(PHOTOS, images)]
    first = scene_targets(data)[0]
    scene_image = data.images[first[0]].astype(np.float32)
    rows.append(("scene", scene_image, [int(c) for c in data.classes[first]]))
    width = max(len(scene_targets(data)[0]), 1)
    explainer = Explainer(config, model, width)
    cells, titles = [], []
    for r, (name, image, classes) in enumerate(rows):
        found = explainer.maps(methods, image, classes, jax.random.fold_in(jax.random.key(config.seed), 1000 + r))
        for k, c in enumerate(classes):
            cells.append(image.astype(np.uint8))
            titles.append(f"{name}: {short_name(c)}")
            for method in methods:
                cells.append(normalise_map(found[method][k]))
                titles.append(method)
    figure = image_grid(cells, titles, columns=1 + len(methods), cell=1.45, cmap="inferno")
    io.save_figure(path, figure)


# ----------------------------------------------------------------------------- command line


def check_outputs(parser: argparse.ArgumentParser, config: Config, args: argparse.Namespace) -> None:
    """Refuses, with ``parser``'s one-line error naming the option, an output that could not be written.

    Found before the model is loaded, not when the result is written after every map is computed.
    """
    outputs = []
    if not args.figure_only:
        outputs += [("--out", args.out), ("--out", os.path.splitext(args.out)[0] + ".md")]  # the table beside it
        if args.maps_cache:
            outputs.append(("--maps-cache", args.maps_cache))
    figure = config.figure or args.figure_only
    if figure:
        outputs.append(("--figure-out", args.figure_out))
    for option, path in outputs:
        problem = arguments.file_problem(path)
        if problem:
            parser.error(f"argument {option}: {problem}")
    if figure:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        fmt = os.path.splitext(args.figure_out)[1].lstrip(".").lower() or "png"  # as io.save_figure saves it
        if fmt not in formats:
            parser.error(f"argument --figure-out: {args.figure_out!r} has no figure format matplotlib writes "
                         f"(one of {', '.join(sorted(formats))})")
    if not args.figure_only and args.maps_cache:
        problem = maps_cache_problem(args.maps_cache)
        if problem:
            parser.error(f"argument --maps-cache: {problem}")


def method_list(text: str) -> tuple[str, ...]:
    """An ``argparse`` type: comma-separated method names (:func:`parse_name`'s form or a baseline)."""
    names = tuple(m for m in text.split(",") if m)
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one method, got {text!r}")
    for name in names:
        if name not in BASELINES:
            try:
                parse_name(name)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
    return names


def parse_args(argv=None) -> tuple[Config, argparse.Namespace]:
    from saliency_jax.evaluation.benchmark import SCENE_OBJECTS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Config()
    count = arguments.integer(1)
    parser.add_argument("--quick", action="store_true", help="one scene, few samples, no figure (a smoke run)")
    parser.add_argument("--scenes", type=count, help=f"two-object scenes (default {defaults.num_scenes})")
    parser.add_argument("--objects", type=count, nargs=2, metavar=("LOW", "HIGH"),
                        help=f"objects per scene (default {defaults.objects_per_scene})")
    parser.add_argument("--seed", type=arguments.seed, help=f"scene seed (default {defaults.seed})")
    parser.add_argument("--methods", type=method_list, help="comma-separated (default: all)")
    parser.add_argument("--ig-steps", type=count)
    parser.add_argument("--samples", type=count, help="SmoothGrad noise samples and GradientSHAP draws")
    parser.add_argument("--rise-masks", type=count)
    parser.add_argument("--shap-samples", type=count, help="KernelSHAP's coalitions (at least 65)")
    parser.add_argument("--patch", type=count)
    parser.add_argument("--stride", type=count)
    parser.add_argument("--curve-steps", type=count)
    parser.add_argument("--batch-size", type=count)
    parser.add_argument("--no-graphcut", action="store_true")
    parser.add_argument("--no-figure", action="store_true")
    parser.add_argument("--figure-only", action="store_true", help="draw the figure only")
    parser.add_argument("--out", type=arguments.json_path, default="outputs/eval_attribution.json")
    parser.add_argument("--figure-out", default="docs/figures/attribution_methods.jpg")
    parser.add_argument("--maps-cache", default=None,
                        help="where the maps are kept for a rerun of the scoring ('' for none; default "
                             "outputs/attribution_maps.npz, none with --quick)")
    args = parser.parse_args(argv)
    if args.objects and not args.objects[0] <= args.objects[1] <= len(SCENE_OBJECTS):
        parser.error(f"argument --objects: must satisfy LOW <= HIGH <= {len(SCENE_OBJECTS)} (the scene objects), "
                     f"got {args.objects[0]} {args.objects[1]}")
    from saliency_jax.models.efficientnet_lite import IMAGE_SIZE

    for option, value in (("--patch", args.patch), ("--stride", args.stride)):
        if value is not None and value > IMAGE_SIZE:  # found by occlusion only after every other method's maps
            parser.error(f"argument {option}: must be at most the scenes' side {IMAGE_SIZE}, got {value}")
    changes = dict(QUICK) if args.quick else {}
    for field, value in (("num_scenes", args.scenes), ("seed", args.seed), ("ig_steps", args.ig_steps),
                         ("samples", args.samples), ("rise_masks", args.rise_masks),
                         ("shap_samples", args.shap_samples), ("patch", args.patch),
                         ("stride", args.stride), ("curve_steps", args.curve_steps),
                         ("batch_size", args.batch_size)):
        if value is not None:
            changes[field] = value
    if args.objects:
        changes["objects_per_scene"] = tuple(args.objects)
    if args.methods:
        changes["methods"] = args.methods
    if args.no_graphcut:
        changes["graphcut"] = False
    if args.no_figure:
        changes["figure"] = False
    config = dataclasses.replace(defaults, **changes)
    if args.maps_cache is None:
        args.maps_cache = "" if args.quick else "outputs/attribution_maps.npz"
    check_outputs(parser, config, args)
    return config, args


def main(argv=None) -> dict:
    config, args = parse_args(argv)
    from saliency_jax import io
    from saliency_jax.evaluation import benchmark as bench
    from saliency_jax.models import load_efficientnet_lite0

    model = load_efficientnet_lite0()
    data = bench.make_scenes(config.num_scenes, objects_per_scene=config.objects_per_scene,
                             size=model.image_size, seed=config.seed)
    result = {}
    if not args.figure_only:
        result = evaluate(config, model, data, cache=args.maps_cache)
        result.pop("maps")
        command = "python experiments/eval_attribution.py " + " ".join(sys.argv[1:] if argv is None else argv)
        result["command"] = command.strip()
        io.save_json(args.out, result)
        text = markdown(result, result["command"])
        with io.atomic_path(os.path.splitext(args.out)[0] + ".md") as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        print(text, flush=True)
    if config.figure or args.figure_only:
        start = time.perf_counter()
        draw_figure(config, model, data, args.figure_out, config.methods)
        print(f"wrote {args.figure_out} in {time.perf_counter() - start:.0f} s", flush=True)
    return result


if __name__ == "__main__":
    main()

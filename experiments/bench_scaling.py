"""Saliency maps per second over a dataset on 1, 2 and 4 devices, and the per-device efficiency.

    python experiments/bench_scaling.py [--out outputs/bench_scaling] [--set num_images=512]

On a CPU-only machine the devices are forced host devices
(``--xla_force_host_platform_device_count=4``), which share the same cores: the
efficiency then measures the sharding machinery's overhead, not extra hardware.
Writes ``results.json`` and ``results.md`` (atomically) under ``--out``.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from saliency_jax import io, parallel  # noqa: E402
from saliency_jax.data import ClutterConfig, render_split  # noqa: E402
from saliency_jax.models.convnet import scaled_convnet  # noqa: E402
from saliency_jax.saliency import saliency_map  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def load_config(overrides: list[str]):
    """``get_config()`` of ``configs/bench_scaling.py`` with ``name=value`` overrides (a bad one: ``ValueError``)."""
    spec = importlib.util.spec_from_file_location("bench_config", os.path.join(HERE, "configs", "bench_scaling.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    fields = [field.name for field in dataclasses.fields(config)]
    for text in overrides:
        name, equals, raw = text.partition("=")
        if not equals or name not in fields:
            raise ValueError(f"--set takes NAME=VALUE with NAME one of {', '.join(fields)}, got {text!r}")
        current = getattr(config, name)
        wanted = "integers, comma-separated" if isinstance(current, tuple) else type(current).__name__
        try:
            value = tuple(int(v) for v in raw.split(",")) if isinstance(current, tuple) else type(current)(raw)
        except ValueError:
            raise ValueError(f"--set {name} must be {wanted}, got {raw!r}") from None
        config = dataclasses.replace(config, **{name: value})
    _check_config(config)
    return config


def _check_config(config) -> None:
    """Raises ``ValueError`` naming a setting the benchmark cannot run with."""
    from saliency_jax.backprop_rules import RULES

    if not config.device_counts or min(config.device_counts) < 1:
        raise ValueError(f"device_counts must be counts >= 1, got {config.device_counts}")
    for name in ("per_device_batch", "num_images", "image_size", "repeats"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if not (np.isfinite(config.width) and config.width > 0):
        raise ValueError(f"width must be a finite number > 0, got {config.width}")
    if config.rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {config.rule!r}")
    # the network's own check of the image side (too small for its pools), without computing anything
    jax.eval_shape(scaled_convnet(6, width=config.width).init, jax.random.key(0),
                   jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), jnp.float32))


def run(config) -> dict:
    """Times ``sharded_map`` of the paper's saliency map for each device count."""
    k = 6
    model = scaled_convnet(k, width=config.width)
    params = jax.jit(model.init)(jax.random.key(config.seed), jnp.zeros((1, config.image_size, config.image_size, 3)))
    params = {"params": params["params"]}
    logits_fn = functools.partial(model.apply, train=False)
    images = render_split("test", config.num_images, ClutterConfig(image_size=config.image_size), seed=config.seed)
    images = images.image.astype(np.float32)

    def maps_fn(params, batch):
        return saliency_map(logits_fn, params, batch, rule=config.rule)

    rows, reference = [], None
    for count in config.device_counts:
        if count > len(jax.devices()):
            print(f"skipping {count} devices: only {len(jax.devices())} available", file=sys.stderr)
            continue
        mesh = parallel.data_mesh(jax.devices()[:count])
        batch = config.per_device_batch * count
        parallel.sharded_map(maps_fn, params, images[:batch], batch_size=batch, mesh=mesh)  # compile
        times = []
        for _ in range(config.repeats):
            start = time.perf_counter()
            maps = parallel.sharded_map(maps_fn, params, images, batch_size=batch, mesh=mesh)
            times.append(time.perf_counter() - start)
        if reference is None:
            reference = maps
        else:  # the maps do not depend on the number of devices
            np.testing.assert_allclose(maps, reference, rtol=1e-4, atol=1e-6)
        seconds = statistics.median(times)
        rate = config.num_images / seconds
        rows.append({"devices": count, "global_batch": batch, "seconds": seconds, "fastest_seconds": min(times),
                     "maps_per_second": rate})
    base = rows[0]["maps_per_second"] / rows[0]["devices"]
    for row in rows:
        row["speedup"] = row["maps_per_second"] / rows[0]["maps_per_second"]
        row["per_device_efficiency"] = row["maps_per_second"] / (row["devices"] * base)
    return {
        "config": dataclasses.asdict(config),
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "host_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "rows": rows,
    }


def markdown(results: dict) -> str:
    lines = [
        f"Saliency maps ({results['config']['image_size']} x {results['config']['image_size']}, "
        f"{results['config']['num_images']} images) on {results['platform']} "
        f"({results['host_cpus']} host CPUs)",
        "",
        "| devices | global batch | maps / s | speed-up | per-device efficiency |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['devices']} | {row['global_batch']} | {row['maps_per_second']:.1f} | "
            f"{row['speedup']:.2f} | {row['per_device_efficiency']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/bench_scaling")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.set)
    except ValueError as error:
        parser.error(str(error))
    if min(config.device_counts) > len(jax.devices()):
        parser.error(f"device_counts {config.device_counts}: only {len(jax.devices())} devices are available")
    results = run(config)
    io.save_json(os.path.join(args.out, "results.json"), results)
    table = markdown(results)
    with io.atomic_path(os.path.join(args.out, "results.md")) as tmp:
        with open(tmp, "w") as f:
            f.write(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

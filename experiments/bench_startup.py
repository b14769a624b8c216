"""Start-up of the command line: one image, from a fresh process, cold and with JAX's compilation cache.

Runs ``saliency-jax saliency bundled:chelsea`` and ``saliency-jax localise bundled:chelsea``, each in a
new Python process writing to a temporary folder, in two ways that take turns: without a compilation
cache ("cold"), and with JAX's persistent compilation cache (``JAX_COMPILATION_CACHE_DIR``) filled by a
first, untimed run ("cached"). The order alternates round after round, with a pause before each run.
Prints per command the median wall time of each way, its IQR, and the median (IQR) of the per-round
ratio cached / cold. Then, in one more fresh process, the phases of the embedded model's saliency map:
importing the library, loading the weights, tracing the map (median of five, JAX's caches cleared
before each), lowering it and compiling it::

    python experiments/bench_startup.py [--rounds 5] [--commands saliency,localise] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

COMMANDS = ("saliency", "localise")
WAYS = ("cold", "cached")


def _executable() -> str:
    """The ``saliency-jax`` command installed beside this Python (as a user runs it)."""
    beside = os.path.join(os.path.dirname(sys.executable), "saliency-jax")
    found = beside if os.path.exists(beside) else shutil.which("saliency-jax")
    if found is None:
        raise RuntimeError("the saliency-jax command is not installed (pip install -e .)")
    return found


def _run_command(command: str, out: str, cache: str | None) -> float:
    """Wall seconds of one command in a new process; ``RuntimeError`` with its stderr if it fails."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    if cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = cache
    argv = [_executable(), command, "bundled:chelsea", "--out", out, "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed with status {done.returncode}: {done.stderr.strip()}")
    return seconds


def _phases() -> dict:
    """Seconds of each start-up phase of the Lite0 saliency map, in this (fresh) process."""
    start = time.perf_counter()
    import jax
    import jax.numpy as jnp

    from saliency_jax.models import load_efficientnet_lite0
    from saliency_jax.saliency import saliency_map

    imported = time.perf_counter()
    classifier = load_efficientnet_lite0()
    loaded = time.perf_counter()
    images = jnp.zeros((1, classifier.image_size, classifier.image_size, 3))
    classes = jnp.zeros((1,), jnp.int32)

    def fn(params, images):
        return saliency_map(classifier.logits_fn, params, images, classes)

    traces = []
    for _ in range(5):
        jax.clear_caches()
        t = time.perf_counter()
        jaxpr = jax.make_jaxpr(fn)(classifier.params, images)
        traces.append(time.perf_counter() - t)
    jax.clear_caches()
    t = time.perf_counter()
    lowered = jax.jit(fn).lower(classifier.params, images)
    t_lowered = time.perf_counter()
    lowered.compile()
    t_compiled = time.perf_counter()
    return {
        "import_s": imported - start,
        "load_weights_s": loaded - imported,
        "trace_s": float(np.median(traces)),
        "equations": sum(1 for _ in _equations(jaxpr.jaxpr)),
        # Lowering traces again (the caches were cleared), so it includes one trace.
        "trace_and_lower_s": t_lowered - t,
        "compile_s": t_compiled - t_lowered,
    }


def _equations(jaxpr):
    from jax.extend.core import ClosedJaxpr, Jaxpr

    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, ClosedJaxpr):
                    yield from _equations(sub.jaxpr)
                elif isinstance(sub, Jaxpr):
                    yield from _equations(sub)


def run(rounds: int, commands=COMMANDS, pause: float = 0.5) -> dict:
    times = {(command, way): [] for command in commands for way in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        for command in commands:  # fills the cache, untimed
            _run_command(command, os.path.join(tmp, "fill"), cache)
        for r in range(rounds):
            for command in commands:
                for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                    time.sleep(pause)
                    out = os.path.join(tmp, f"{command}-{way}-{r}")
                    times[command, way].append(_run_command(command, out, cache if way == "cached" else None))
    phases = subprocess.run([sys.executable, __file__, "--phases"], capture_output=True, text=True, check=True)
    result = {"rounds": rounds, "commands": {}, "phases": json.loads(phases.stdout.strip().splitlines()[-1])}
    for command in commands:
        series = {way: np.array(times[command, way]) for way in WAYS}
        series["ratio"] = series["cached"] / series["cold"]
        row = result["commands"][command] = {}
        for name, values in series.items():
            row[name if name == "ratio" else f"{name}_s"] = float(np.median(values))
            row[f"{name}_iqr"] = [float(q) for q in np.quantile(values, (0.25, 0.75))]
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated, of: " + ", ".join(COMMANDS))
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)  # the child process's part
    args = parser.parse_args(argv)
    if args.phases:
        print(json.dumps(_phases()))
        return {}
    commands = tuple(c for c in args.commands.split(",") if c)
    if args.rounds < 1 or not commands or not set(commands) <= set(COMMANDS) or len(set(commands)) < len(commands):
        parser.error(f"--rounds must be >= 1 and --commands a non-empty list of {', '.join(COMMANDS)}, each once")
    from saliency_jax.io import save_json

    result = run(args.rounds, commands)
    print(f"{args.rounds} rounds, one image (bundled:chelsea), a new process per run")
    for command, row in result["commands"].items():
        print(f"  {command:9s} cold {row['cold_s']:6.2f} s [{row['cold_iqr'][0]:.2f}, {row['cold_iqr'][1]:.2f}]  "
              f"cached {row['cached_s']:6.2f} s [{row['cached_iqr'][0]:.2f}, {row['cached_iqr'][1]:.2f}]  "
              f"ratio {row['ratio']:.3f} [{row['ratio_iqr'][0]:.3f}, {row['ratio_iqr'][1]:.3f}]")
    p = result["phases"]
    print(f"  Lite0 saliency map: import {p['import_s']:.2f} s, weights {p['load_weights_s']:.2f} s, "
          f"trace {p['trace_s']:.2f} s ({p['equations']} equations), trace and lower {p['trace_and_lower_s']:.2f} s, "
          f"compile {p['compile_s']:.2f} s")
    if args.json:
        save_json(args.json, result)
    return result


if __name__ == "__main__":
    main()

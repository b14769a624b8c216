"""Page faults of XLA's per-call CPU buffers: the saliency map under three settings of glibc's allocator.

XLA's CPU runtime allocates each compiled call's temporary buffer afresh (395 MB for a batch-16
saliency map of EfficientNet-Lite0) and frees it at the end of the call; glibc maps such a block
from the kernel and unmaps it again, so every call faults its pages in anew. This script times the
jitted batch-1 and batch-16 maps in child processes started with

* ``default``: glibc's own settings;
* ``keep``: one arena, no separately mapped blocks, no trimming
  (``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``):
  freed memory stays in the process and is reused;
* ``huge-pages``: ``glibc.malloc.hugetlb=1`` (glibc 2.35+): large blocks on 2 MB transparent huge
  pages, 512 times fewer faults;

the settings taking turns, round after round, and prints per setting the median (and IQR) over the
rounds of each child's median time per call, its minor page faults per call and its peak resident
memory, with each setting's ratio to ``default`` in the same round::

    python experiments/bench_host_memory.py [--rounds 3] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

SETTINGS = {
    "default": None,
    "keep": "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295",
    "huge-pages": "glibc.malloc.hugetlb=1",
}


def child(batches: list[int], calls: dict[int, int], warmup: int) -> dict:
    """Times the jitted map at each batch in this process; returns ms per call, faults per call, peak RSS."""
    import functools

    import jax
    import jax.numpy as jnp

    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.saliency import saliency_map

    clf = load_efficientnet_lite0()
    run = jax.jit(functools.partial(saliency_map, clf.logits_fn))
    out = {}
    for batch in batches:
        images = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (batch, 224, 224, 3)).astype(np.float32))
        classes = jnp.zeros((batch,), jnp.int32)
        for _ in range(warmup):
            jax.block_until_ready(run(clf.params, images, classes))
        times, faults = [], []
        for _ in range(calls[batch]):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            jax.block_until_ready(run(clf.params, images, classes))
            times.append(1000.0 * (time.perf_counter() - start))
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        out[str(batch)] = dict(ms=float(np.median(times)), faults=float(np.median(faults)))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def run_child(setting: str, args) -> dict:
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if SETTINGS[setting]:
        env["GLIBC_TUNABLES"] = SETTINGS[setting]
    spec = json.dumps(dict(batches=args.batch_sizes, calls={b: (args.calls_b1 if b == 1 else args.calls) for b in
                                                            args.batch_sizes}, warmup=args.warmup))
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", spec], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {setting} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; in each, every setting runs one child")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--calls", type=int, default=10, help="timed calls per child (batch > 1)")
    parser.add_argument("--calls-b1", type=int, default=40, help="timed calls per child at batch 1")
    parser.add_argument("--warmup", type=int, default=6, help="untimed calls first (the heap settles)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child(spec["batches"], {int(k): v for k, v in spec["calls"].items()}, spec["warmup"])))
        return
    if args.rounds < 1 or min(args.batch_sizes) < 1 or min(args.calls, args.calls_b1) < 1:
        parser.error("--rounds, --batch-sizes and the calls must be positive")
    if args.warmup < 1:
        parser.error(f"--warmup must be >= 1 (the first call compiles), got {args.warmup}")
    if len(set(args.batch_sizes)) < len(args.batch_sizes) or len(set(args.settings)) < len(args.settings):
        parser.error("--batch-sizes and --settings must not repeat one")
    settings = ["default"] + [s for s in args.settings if s != "default"]
    print(f"load average {os.getloadavg()[0]:.2f}; {os.confstr('CS_GNU_LIBC_VERSION')}", flush=True)
    rounds = []
    for r in range(args.rounds):
        order = settings[r % len(settings):] + settings[: r % len(settings)]  # who goes first rotates
        results = {s: run_child(s, args) for s in order}
        rounds.append(results)
        print(f"round {r + 1}: " + "; ".join(
            f"{s} " + ", ".join(f"b{b} {results[s][str(b)]['ms']:.1f} ms" for b in args.batch_sizes)
            for s in settings), flush=True)
    print(f"\n{'setting':<11} {'batch':>5} {'median ms':>10} {'IQR ms':>7} {'faults/call':>12} "
          f"{'peak RSS MB':>12} {'ratio to default [IQR]':>24}")
    summary = []
    for s in settings:
        for b in args.batch_sizes:
            ms = [rd[s][str(b)]["ms"] for rd in rounds]
            ratio = [rd[s][str(b)]["ms"] / rd["default"][str(b)]["ms"] for rd in rounds]
            row = dict(setting=s, batch=b, median_ms=float(np.median(ms)),
                       iqr_ms=float(np.subtract(*np.percentile(ms, [75, 25]))),
                       faults_per_call=float(np.median([rd[s][str(b)]["faults"] for rd in rounds])),
                       peak_rss_mb=float(np.median([rd[s]["peak_rss_mb"] for rd in rounds])),
                       ratio=float(np.median(ratio)), ratio_q1=float(np.percentile(ratio, 25)),
                       ratio_q3=float(np.percentile(ratio, 75)), samples_ms=ms)
            summary.append(row)
            print(f"{s:<11} {b:>5} {row['median_ms']:>10.1f} {row['iqr_ms']:>7.1f} {row['faults_per_call']:>12.0f} "
                  f"{row['peak_rss_mb']:>12.0f} {row['ratio']:>10.2f} [{row['ratio_q1']:.2f}, {row['ratio_q3']:.2f}]")
    print(f"load average after {os.getloadavg()[0]:.2f} (other processes share these CPUs)")
    if args.json:
        from saliency_jax.io import save_json

        save_json(args.json, dict(benchmark="host_memory", settings=SETTINGS, rows=summary, rounds=rounds,
                                  config=dict(rounds=args.rounds, calls=args.calls, calls_b1=args.calls_b1,
                                              warmup=args.warmup)))


if __name__ == "__main__":
    main()

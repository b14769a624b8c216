"""The benchmark page's verdicts (free and bound runs judged apart), the benchmarks' thread binding
and their interleaved timing."""

import copy
import json
import os
import sys

import pytest

from saliency_jax import cpu_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "docs", "benchmarks")


def _run(name):
    with open(os.path.join(RUNS, name)) as f:
        return json.load(f)


def _met_column(lines, what, other):
    row = next(line for line in lines if line.startswith(f"| {what} | ") and f"| {other} |" in line)
    return row.rsplit("|", 2)[-2].strip()


def test_verdicts_judge_free_and_bound_runs_apart(experiment):
    doc = experiment("benchmarks_doc")
    runs = [_run(f"cpu_saliency_{n}.json") for n in ("1", "2", "bound_1", "bound_2")]
    lines = doc.saliency_tables(runs)
    assert "run 3 bound" in lines[next(i for i, line in enumerate(lines) if line.startswith("| case | batch | vs"))]
    assert _met_column(lines, "8 classes of one image", "pytorch") == "free: no; bound: yes"
    # run 4 meets 0.5 and run 3 does not
    assert _met_column(lines, "saliency map", "captum") == "free: no; bound: not reproduced"
    assert _met_column(lines, "integrated gradients, 32 steps", "captum") == "free: yes; bound: yes"
    # with one threading setting the verdict is plain
    free = doc.saliency_tables(runs[:2])
    assert _met_column(free, "8 classes of one image", "pytorch") == "no"
    assert _met_column(free, "integrated gradients, 32 steps", "captum") == "yes"


def test_a_case_missing_from_every_run_of_a_setting_is_not_measured(experiment):
    doc = experiment("benchmarks_doc")
    free = _run("cpu_saliency_1.json")
    bound = copy.deepcopy(_run("cpu_saliency_bound_1.json"))
    bound["ratios"] = [r for r in bound["ratios"] if r["case"] != "ig"]
    lines = doc.saliency_tables([free, bound])
    assert _met_column(lines, "integrated gradients, 32 steps", "captum") == "free: yes; bound: not measured"


def test_class_model_goal_names_each_run(experiment):
    doc = experiment("benchmarks_doc")
    runs = [_run(f"cpu_class_model_{n}.json") for n in ("1", "2", "bound_1", "bound_2")]
    goal = doc.class_model_tables(runs)[-1]
    assert "(run 3 bound)" in goal and "(run 1)" in goal
    assert goal.endswith("met: free: no; bound: yes.")


def test_the_benchmarks_bind_both_sides_only_when_asked(experiment):
    bench = experiment("bench_saliency")
    assert bench.worker_env(False) is None  # the worker inherits this environment as it is
    env = bench.worker_env(True)
    assert env["OMP_PROC_BIND"] == "true" and env["OMP_PLACES"] == "threads"
    assert env["PATH"] == os.environ["PATH"]
    assert bench.bind_jax_threads(False) is None
    if not sys.platform.startswith("linux"):
        pytest.skip("thread binding is Linux only")
    tids = cpu_threads.worker_threads()
    before = {tid: os.sched_getaffinity(tid) for tid in tids}
    try:
        bound = bench.bind_jax_threads(True)
        assert sorted(int(t) for t in bound) == tids
        cpus = bench.thread_cpus()
        for tid, cpu in bound.items():
            assert next(v for k, v in cpus.items() if k.endswith(f"/{tid}")) == [cpu]
    finally:
        for tid, mask in before.items():
            os.sched_setaffinity(tid, mask)


def test_conditions_name_the_saliency_maps_images_per_pass(experiment):
    doc = experiment("benchmarks_doc")
    older = _run("cpu_saliency_1.json")  # made before the field existed: the whole batch in one pass
    passes, whole = copy.deepcopy(older), copy.deepcopy(older)
    from saliency_jax.saliency import ALL_IMAGES

    assert doc.ALL_IMAGES == ALL_IMAGES
    passes["images_per_pass"], whole["images_per_pass"] = 2, ALL_IMAGES
    lines = doc._machine_lines([older, passes, whole], "saliency")
    assert lines[0].endswith("each saliency map's batch in one pass")
    assert lines[1].endswith("saliency maps in passes of 2 images")
    assert lines[2].endswith("saliency maps of the whole batch in one pass")
    class_model = doc._machine_lines([_run("cpu_class_model_1.json")], "class model")
    assert "pass" not in class_model[0]


def test_interleaved_timing_alternates_the_order_and_takes_ratios_round_by_round(experiment):
    timing = experiment("interleaved")
    order = []
    calls = {(case, v): (lambda case=case, v=v: order.append((case, v))) for case in ("a", "b") for v in ("x", "y")}
    times = timing.interleaved_times(calls, ["a", "b"], ["x", "y"], {"a": 2, "b": 1}, rounds=2, pause=0.0)
    assert order == [("a", "x")] * 2 + [("a", "y")] * 2 + [("b", "x"), ("b", "y")] \
        + [("a", "y")] * 2 + [("a", "x")] * 2 + [("b", "y"), ("b", "x")]  # reversed in the odd round
    assert {k: len(v) for k, v in times.items()} == {k: 2 for k in calls}
    assert all(t >= 0 for v in times.values() for t in v)
    summary = timing.ratio_summary([1.0, 3.0, 8.0], [2.0, 1.0, 4.0])  # per-round ratios 0.5, 3, 2
    assert summary["ratio"] == 2.0 and summary["ratio_iqr"] == [1.25, 2.5]  # not 3 / 2, the medians' ratio
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        timing.interleaved_times(calls, ["a"], ["x"], {"a": 1}, rounds=0, pause=0.0)

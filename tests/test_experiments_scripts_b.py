"""The benchmark scripts and the long runs refuse nonsensical settings up front, and the benchmark page
is built from every run's figures and written atomically."""

import copy
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "docs", "benchmarks")


def _run(name):
    with open(os.path.join(RUNS, name)) as f:
        return json.load(f)


def _reached(*args, **kwargs):
    raise AssertionError("the script went on to the benchmark instead of refusing its arguments")


def _refused(main, argv, capsys, option):
    """``main(argv)`` stops with argparse's one-line error naming ``option``.

    The callers replace the scripts' work with :func:`_reached`, so a setting that is not refused fails
    at once rather than running (or, with an endless pause, hanging).
    """
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in error and option in error, error


# ---------------------------------------------------------------------------- command lines


@pytest.mark.parametrize("argv, option", [
    (["--cases", "saliency/2"], "--cases"),  # no such case: was an empty table
    (["--pause", "nan"], "--pause"),
    (["--pause", "-1"], "--pause"),
    (["--pause", "inf"], "--pause"),  # was a sleep without end
    (["--warmup", "-2"], "--warmup"),
    (["--micro-repeats", "0"], "--micro-repeats"),
    (["--num-classes", "1001"], "--num-classes"),
    (["--batch-sizes", "1", "1"], "--batch-sizes"),  # was two rows of one case, ratios across them
])
def test_bench_saliency_refuses_nonsense(experiment, capsys, monkeypatch, argv, option):
    bench = experiment("bench_saliency")
    monkeypatch.setattr(bench, "jax_cases", _reached)
    _refused(bench.main, ["--no-torch", *argv], capsys, option)


@pytest.mark.parametrize("argv, option", [
    (["--steps", "0"], "--steps"),
    (["--repeats", "0"], "--repeats"),
    (["--batch-sizes", "17"], "--batch-sizes"),  # 16 classes in the benchmark
    (["--batch-sizes", "1", "1"], "--batch-sizes"),
    (["--pause", "nan"], "--pause"),
    (["--torch-threads", "0"], "--torch-threads"),
])
def test_bench_class_model_refuses_nonsense(experiment, capsys, monkeypatch, argv, option):
    bench = experiment("bench_class_model")
    monkeypatch.setattr(bench, "bench", _reached)
    _refused(bench.main, ["--no-torch", *argv], capsys, option)


@pytest.mark.parametrize("argv, option", [
    (["--repeats", "0"], "--repeats"),
    (["--images", "0"], "--images"),
    (["--processes", "0"], "--processes"),
    (["--maps", "paper"], "--maps"),  # was found after the model had loaded
    (["--maps", "gradient+blur"], "--maps"),
])
def test_bench_localisation_refuses_nonsense(experiment, capsys, monkeypatch, tmp_path, argv, option):
    monkeypatch.setattr("saliency_jax.evaluation.benchmark.make_benchmark", _reached)
    _refused(experiment("bench_localisation").main, [*argv, "--out", str(tmp_path / "b.json")], capsys, option)
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("setting, named", [
    ("nope=1", "nope=1"), ("repeats", "'repeats'"), ("repeats=0", "repeats"), ("width=nan", "width"),
    ("rule=nope", "rule"), ("image_size=8", "too small"), ("device_counts=", "device_counts"),
    ("device_counts=64", "device_counts"),  # every count skipped: was an IndexError
])
def test_bench_scaling_refuses_nonsense(experiment, capsys, monkeypatch, tmp_path, setting, named):
    bench = experiment("bench_scaling")
    monkeypatch.setattr(bench, "run", _reached)
    _refused(bench.main, ["--set", setting, "--out", str(tmp_path)], capsys, named)


def test_bench_startup_and_host_memory_refuse_nonsense(experiment, capsys, monkeypatch):
    startup, host_memory = experiment("bench_startup"), experiment("bench_host_memory")
    monkeypatch.setattr(startup, "run", _reached)
    monkeypatch.setattr(host_memory, "run_child", _reached)
    _refused(startup.main, ["--commands", "saliency,saliency"], capsys, "--commands")
    _refused(host_memory.main, ["--warmup", "0"], capsys, "--warmup")  # the compiling call was timed
    _refused(host_memory.main, ["--batch-sizes", "1", "1"], capsys, "--batch-sizes")


def test_bench_convolutions_and_max_pool_refuse_a_size_too_small(experiment, capsys, monkeypatch):
    max_pool, convolutions = experiment("bench_max_pool"), experiment("bench_convolutions")
    monkeypatch.setattr(max_pool, "run", _reached)
    monkeypatch.setattr(convolutions, "run", _reached)
    _refused(max_pool.main, ["--size", "8"], capsys, "--size")
    _refused(max_pool.main, ["--size", "0"], capsys, "--size")
    _refused(convolutions.main, ["--models", "paper", "--size", "48"], capsys, "--size")


@pytest.mark.parametrize("setting, named", [
    ("nope=1", "nope"), ("num_localisation", "NAME=VALUE"), ("num_localisation=many", "num_localisation"),
    ("rules=gradient,nope", "rules"), ("num_examples=0", "num_examples"), ("num_devices=99", "num_devices"),
    ("class_model_learning_rate=nan", "class_model_learning_rate"), ("centre_fraction=0", "centre_fraction"),
    ("split_sizes=train", "split_sizes"), ("graphcut=x", "graphcut"), ("train.nope=1", "nope"),
])
def test_reproduce_small_refuses_a_bad_setting_before_training(experiment, capsys, monkeypatch, tmp_path, setting,
                                                               named):
    reproduce = experiment("reproduce_small")
    monkeypatch.setattr(reproduce, "build_dataset", _reached)
    _refused(reproduce.main, ["--set", setting, "--out", str(tmp_path / "out")], capsys, named)
    assert not (tmp_path / "out").exists()


def test_reproduce_small_run_checks_its_config_first(experiment, monkeypatch, tmp_path):
    import dataclasses

    reproduce = experiment("reproduce_small")
    monkeypatch.setattr(reproduce, "build_dataset", _reached)
    config = dataclasses.replace(reproduce.load_config(), rules=("gradient", "nope"))
    with pytest.raises(ValueError, match="rules must be"):
        reproduce.run(config, str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()  # nothing generated or trained


# ---------------------------------------------------------------------------- the benchmark page


def _met(lines, what, other):
    row = next(line for line in lines if line.startswith(f"| {what} | ") and f"| {other} |" in line)
    return row.rsplit("|", 2)[-2].strip()


def test_page_shows_the_cases_and_ratios_of_every_run(experiment):
    doc = experiment("benchmarks_doc")
    without_torch = copy.deepcopy(_run("cpu_saliency_1.json"))  # --no-torch: JAX rows only, no ratios
    without_torch["rows"] = [r for r in without_torch["rows"] if r["framework"] == "jax" and r["case"] != "ig"]
    without_torch["ratios"] = []
    lines = doc.saliency_tables([without_torch, _run("cpu_saliency_2.json")])
    assert any(line.startswith("| integrated gradients, 32 steps | 16 | 1 |") for line in lines)  # only in run 2
    # run 2 meets the IG goal, run 1 did not measure it: not shown as met
    assert _met(lines, "integrated gradients, 32 steps", "captum") == "not reproduced"


def test_page_shows_the_jax_times_of_a_labelled_depthwise_variant(experiment):
    doc = experiment("benchmarks_doc")
    run = copy.deepcopy(_run("cpu_saliency_1.json"))
    for row in run["rows"]:  # --depthwise-impl xla labels the rows "jax (xla)"
        row["framework"] = "jax (xla)" if row["framework"] == "jax" else row["framework"]
    jax_ms = next(r for r in run["rows"] if r["framework"] == "jax (xla)" and r["case"] == "forward/1")["median_ms"]
    row = next(line for line in doc.saliency_tables([run]) if line.startswith("| forward | 1 | 1 |"))
    assert row.split("|")[4].strip().startswith(f"{jax_ms:.1f} [")


def test_class_model_goal_counts_a_run_without_pytorch_as_not_meeting_it(experiment):
    doc = experiment("benchmarks_doc")
    measured, without_torch = _run("cpu_class_model_bound_1.json"), copy.deepcopy(_run("cpu_class_model_bound_2.json"))
    without_torch["rows"] = [{k: v for k, v in r.items() if not k.startswith("speedup")}
                             for r in without_torch["rows"] if r["impl"] != "pytorch"]
    goal = doc.class_model_tables([measured, without_torch])[-1]
    assert "(run 1 bound)" in goal and "(run 2 bound)" not in goal
    assert goal.endswith("met: not reproduced.")  # was "yes", from run 1 alone


def test_page_refuses_a_file_of_another_benchmark(experiment, capsys, tmp_path):
    main = experiment("benchmarks_doc").main
    class_model = os.path.join(RUNS, "cpu_class_model_1.json")
    _refused(main, ["--saliency", class_model, "--class-model", class_model, "--out", str(tmp_path / "b.md")],
             capsys, "--saliency")
    _refused(main, ["--saliency", os.path.join(RUNS, "cpu_saliency_1.json"), "--class-model",
                    str(tmp_path / "missing.json"), "--out", str(tmp_path / "b.md")], capsys, "--class-model")
    assert not (tmp_path / "b.md").exists()


def test_page_is_written_atomically(experiment, tmp_path, monkeypatch):
    doc = experiment("benchmarks_doc")
    out = tmp_path / "benchmarks.md"
    out.write_text("the previous page\n")
    argv = ["--saliency", os.path.join(RUNS, "cpu_saliency_1.json"),
            "--class-model", os.path.join(RUNS, "cpu_class_model_1.json"), "--out", str(out)]

    def crash(*args):
        raise OSError("the process dies before the new page is in place")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="dies"):
            doc.main(argv)
    assert out.read_text() == "the previous page\n"
    assert os.listdir(tmp_path) == ["benchmarks.md"]  # no temporary left behind
    doc.main(argv)
    assert out.read_text().startswith("# Benchmarks on CPU")

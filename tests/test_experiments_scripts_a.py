"""The experiment scripts refuse nonsensical arguments with one argparse line, and count their rows right."""

import dataclasses
import types

import numpy as np
import pytest


@pytest.fixture
def no_model(monkeypatch):
    """Loading the embedded model fails: a refusal must come before it, from the arguments alone."""
    import saliency_jax.models
    import saliency_jax.models.efficientnet_lite

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded: the arguments were not refused")

    monkeypatch.setattr(saliency_jax.models.efficientnet_lite, "load_efficientnet_lite0", load)
    monkeypatch.setattr(saliency_jax.models, "load_efficientnet_lite0", load)


def refused(run, argv, capsys) -> str:
    """The one-line argparse error of ``run(argv)`` (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(lines[-1].split(":")[0] + ": error: argument ")
    return lines[-1]


@pytest.mark.parametrize("argv, argument", [
    (["--scenes", "0"], "--scenes"),
    (["--scenes", "-2"], "--scenes"),
    (["--single", "-1"], "--single"),
    (["--seed", "-1"], "--seed"),
    (["--processes", "0"], "--processes"),
    (["--segmentations", "paper,foo"], "--segmentations"),
    (["--segmentations", ","], "--segmentations"),
    (["--seed-maps", "gradient,lime"], "--seed-maps"),
    (["--seed-maps", ","], "--seed-maps"),  # no seed map: the tables held only the baselines
    (["--out", "table.md"], "--out"),  # the JSON would be overwritten by the Markdown table
])
def test_eval_localisation_refuses_bad_arguments(experiment, no_model, tmp_path, capsys, argv, argument):
    eval_localisation = experiment("eval_localisation")
    base = ["--scenes", "1", "--single", "0", "--processes", "1", "--maps-cache", "", "--out",
            str(tmp_path / "eval.json")]
    assert f"argument {argument}:" in refused(eval_localisation.main, base + argv, capsys)
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize("argv, argument", [
    (["--scenes", "0"], "--scenes"),
    (["--objects", "3", "2"], "--objects"),
    (["--objects", "0", "2"], "--objects"),
    (["--objects", "2", "9"], "--objects"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**64)], "--seed"),
    (["--methods", "lime"], "--methods"),
    (["--methods", ","], "--methods"),
    (["--ig-steps", "0"], "--ig-steps"),
    (["--samples", "-1"], "--samples"),
    (["--rise-masks", "0"], "--rise-masks"),
    (["--patch", "0"], "--patch"),
    (["--stride", "-3"], "--stride"),
    (["--curve-steps", "0"], "--curve-steps"),
    (["--batch-size", "0"], "--batch-size"),
    (["--out", "table.md"], "--out"),
    (["--patch", "225"], "--patch"),  # was refused by occlusion after every other method's maps
    (["--stride", "300"], "--stride"),
])
def test_eval_attribution_refuses_bad_arguments(experiment, capsys, argv, argument):
    eval_attribution = experiment("eval_attribution")
    assert f"argument {argument}:" in refused(eval_attribution.parse_args, argv, capsys)


def test_eval_attribution_reads_its_methods(experiment):
    eval_attribution = experiment("eval_attribution")
    config, _ = eval_attribution.parse_args(["--methods", "gradient,gradcam*smoothgrad+contrast,centre (no model)"])
    assert config.methods == ("gradient", "gradcam*smoothgrad+contrast", "centre (no model)")


def test_eval_attribution_with_the_baselines_only(experiment, scene_net):
    # No model method: the table of the two map-free rows, and no best method (it raised on an empty max).
    from saliency_jax.evaluation import benchmark as bench

    eval_attribution = experiment("eval_attribution")
    config = dataclasses.replace(eval_attribution.Config(**eval_attribution.QUICK),
                                 methods=eval_attribution.BASELINES, graphcut=False)
    data = bench.make_scenes(1, objects_per_scene=(2, 2), seed=3)
    result = eval_attribution.evaluate(config, scene_net, data)
    assert [r["method"] for r in result["rows"]] == list(eval_attribution.BASELINES)
    assert result["best_pointing"] is None
    text = eval_attribution.markdown({k: v for k, v in result.items() if k != "maps"}, "python x.py")
    assert "Best pointing game" not in text
    assert sum(line.startswith("| ") for line in text.splitlines()) == 1 + len(eval_attribution.BASELINES)


@pytest.mark.parametrize("steps", ["0", "-5", "ten"])
def test_fig1_refuses_a_step_count_below_one(experiment, no_model, tmp_path, capsys, steps):
    # --steps 0 ran each mode's default count, as if it had not been given.
    fig1 = experiment("fig1_class_models")
    assert "argument --steps:" in refused(fig1.main, ["--steps", steps, "--out", str(tmp_path)], capsys)


@pytest.mark.parametrize("argv", [["--photos", "chelsea,foo"], ["--photos", ",", "--no-scene"]])
def test_fig3_refuses_unknown_or_no_photos(experiment, no_model, tmp_path, capsys, argv):
    fig3 = experiment("fig3_localisation")
    assert "argument --photos:" in refused(fig3.main, argv + ["--out", str(tmp_path / "f.png")], capsys)


def test_fig_deconvnet_refuses_unknown_photos(experiment, no_model, tmp_path, capsys):
    fig = experiment("fig_deconvnet")
    assert "argument --photos:" in refused(fig.main, ["--photos", "chelsea", "foo", "--out", str(tmp_path)], capsys)


def test_fig_deconvnet_checks_its_layers_before_computing(experiment, monkeypatch, scene_net, tmp_path, capsys):
    import saliency_jax.models.efficientnet_lite

    fig = experiment("fig_deconvnet")
    monkeypatch.setattr(saliency_jax.models.efficientnet_lite, "load_efficientnet_lite0", lambda: scene_net)
    seen = []
    monkeypatch.setattr(fig, "compute", lambda config: seen.append(config) or (None,) * 4)
    monkeypatch.setattr(fig, "draw", lambda *args: None)
    line = refused(fig.main, ["--layers", "conv1", "features", "blocks_99", "--out", str(tmp_path)], capsys)
    assert "argument --layers:" in line and "'blocks_99'" in line
    assert not seen  # refused before the maps of every rule were computed
    fig.main(["--layers", "conv1", "features", "fc", "--photos", "coffee", "coffee", "--out", str(tmp_path)])
    # a photo named twice is drawn once (its channels were one entry of channels.json, its rows two)
    assert seen[0].layers == ("conv1", "features", "fc") and seen[0].photos == ("coffee",)


@pytest.mark.parametrize("argv, argument", [
    (["--stages", "-1"], "--stages"),  # sliced the cascade from the end: the last stage silently left out
    (["--stages", "0"], "--stages"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**64)], "--seed"),
    (["--photos", "chelsea", "foo"], "--photos"),
])
def test_sanity_checks_refuses_bad_arguments(experiment, no_model, tmp_path, capsys, argv, argument):
    sanity_checks = experiment("sanity_checks")
    assert f"argument {argument}:" in refused(sanity_checks.main, argv + ["--out", str(tmp_path)], capsys)


@pytest.mark.parametrize("argv, argument", [
    (["--seeds", "a"], "--seeds"),
    (["--seeds", "1,-2"], "--seeds"),
    (["--seeds", ","], "--seeds"),
    (["--images", "0"], "--images"),
    (["--components", "0"], "--components"),
    (["--components", "2.5"], "--components"),
    (["--weights", "nan"], "--weights"),
    (["--weights", "-1"], "--weights"),
    (["--reference", "5"], "--reference"),
    (["--reference", "5,50,1"], "--reference"),
    (["--processes", "0"], "--processes"),
])
def test_sweep_graphcut_refuses_bad_arguments(experiment, no_model, capsys, argv, argument):
    sweep_graphcut = experiment("sweep_graphcut")
    assert f"argument {argument}:" in refused(sweep_graphcut.main, ["--images", "1", "--maps-cache", ""] + argv,
                                              capsys)


def test_sweep_graphcut_counts_a_repeated_setting_once(experiment, monkeypatch):
    # A setting (or seed) given twice was run twice and appended twice to its row: two rows of four
    # per-seed values for two seeds, "4 of 2" wins, and the reference compared with itself doubled.
    sweep_graphcut = experiment("sweep_graphcut")
    data = types.SimpleNamespace(backgrounds=("wood", "grass"))
    monkeypatch.setattr(sweep_graphcut, "benchmark_maps", lambda seed, num_images, cache: (data, seed))
    ious = {(1, 5): [0.5, 0.7], (2, 5): [0.4, 0.6], (1, 3): [0.9, 0.9], (2, 3): [0.1, 0.1]}
    monkeypatch.setattr(sweep_graphcut, "box_ious",
                        lambda data, maps, config, processes: np.array(ious[maps, config.num_components]))
    result = sweep_graphcut.main(["--seeds", "1,2,1", "--components", "5,3,5", "--weights", "50,50.0",
                                  "--reference", "5,50"])
    assert result["seeds"] == [1, 2]
    rows = {r["components"]: r for r in result["rows"]}
    assert len(result["rows"]) == 2 and set(rows) == {3, 5}
    assert rows[5]["per_seed"] == pytest.approx([0.6, 0.5]) and rows[5]["wins"] == 0
    assert rows[3]["per_seed"] == pytest.approx([0.9, 0.1]) and rows[3]["wins"] == 1
    assert rows[3]["backgrounds"] == pytest.approx({"wood": 0.5, "grass": 0.5})


@pytest.mark.parametrize("argv, argument", [
    (["--classes", "1000"], "--classes"),
    (["--classes", "-1"], "--classes"),
    (["--learning-rates", "nan"], "--learning-rates"),
    (["--learning-rates", "0"], "--learning-rates"),
    (["--learning-rates", "0.05", "-1"], "--learning-rates"),  # after a whole run of the first
    (["--l2-weights", "inf"], "--l2-weights"),
    (["--l2-weights", "-0.001"], "--l2-weights"),
    (["--checkpoints", "0"], "--checkpoints"),
    (["--checkpoints", "50", "20"], "--checkpoints"),  # ran a negative number of steps
    (["--checkpoints", "20", "20"], "--checkpoints"),
])
def test_sweep_class_model_refuses_bad_arguments(experiment, no_model, capsys, argv, argument):
    sweep_class_model = experiment("sweep_class_model")
    assert f"argument {argument}:" in refused(sweep_class_model.main, argv, capsys)

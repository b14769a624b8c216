"""End-to-end runs of the localisation experiments, small enough for CI."""

import json

import numpy as np
import pytest


def test_eval_table_with_simulated_maps(experiment, tmp_path):
    eval_localisation = experiment("eval_localisation")
    out = tmp_path / "eval.json"
    result = eval_localisation.main(["--simulated", "--scenes", "3", "--single", "2", "--processes", "1",
                                     "--out", str(out)])
    assert json.loads(out.read_text())["tables"].keys() == result["tables"].keys()
    text = (tmp_path / "eval.md").read_text()
    for name, rows in result["tables"].items():
        assert f"## {name}:" in text
        by_method = {r["method"]: r for r in rows}
        assert {"paper", "hard", "centre box", "whole image"} <= set(by_method)
        box_ious = [r["box_iou"] for r in rows]
        assert box_ious == sorted(box_ious, reverse=True)  # best first
        # a map that points at the object: the paper's GraphCut beats the image-blind boxes
        paper = by_method["paper"]
        assert paper["box_iou"] > max(by_method["centre box"]["box_iou"], by_method["whole image"]["box_iou"])
        assert paper["pointing"] == 1.0  # simulated maps peak on their object


def test_eval_without_single_objects(experiment, tmp_path):
    eval_localisation = experiment("eval_localisation")
    result = eval_localisation.main(["--simulated", "--scenes", "2", "--single", "0", "--processes", "1",
                                     "--segmentations", "paper", "--out", str(tmp_path / "eval.json")])
    assert list(result["tables"]) == ["multi-object scenes"]


def test_bench_with_simulated_maps(experiment, tmp_path, capsys):
    bench_localisation = experiment("bench_localisation")
    out = tmp_path / "bench.json"
    result = bench_localisation.main(
        ["--maps", "simulated", "--images", "3", "--repeats", "1", "--processes", "1", "--out", str(out)]
    )
    assert json.loads(out.read_text())["images"] == 3
    stages = result["one_process_seconds_per_image"]
    assert set(stages) == {"seeds", "gmm", "graph", "maxflow", "components", "total"}
    assert all(stages[k] > 0 for k in ("gmm", "graph", "maxflow"))  # every timed stage measured
    assert result["ours_mask_iou"] > 0.5  # simulated maps on single objects: GraphCut finds most of them
    printed = capsys.readouterr().out
    assert "| **total** |" in printed
    import importlib.util

    if importlib.util.find_spec("cv2") is None:  # OpenCV is optional; the test install has none
        assert "grabcut_seconds_per_image" not in result and "OpenCV is not importable" in printed
    else:
        assert result["time_ratio"] > 0 and result["ours_vs_grabcut_mask_iou"] > 0.3


def _nearest_mean_cv2():
    """A stand-in for OpenCV's GrabCut: each undecided pixel joins the seed set whose mean colour is nearer."""
    import types

    def grab_cut(image, mask, rect, background, foreground, iterations, mode):
        assert mode == fake.GC_INIT_WITH_MASK and iterations >= 1
        pixels = image.astype(float)
        fg_mean = pixels[mask == fake.GC_FGD].mean(axis=0)
        bg_mean = pixels[mask == fake.GC_BGD].mean(axis=0)
        nearer = np.linalg.norm(pixels - fg_mean, axis=-1) < np.linalg.norm(pixels - bg_mean, axis=-1)
        undecided = (mask == fake.GC_PR_BGD) | (mask == fake.GC_PR_FGD)
        mask[undecided] = np.where(nearer[undecided], fake.GC_PR_FGD, fake.GC_PR_BGD)
        fake.calls += 1

    fake = types.SimpleNamespace(GC_BGD=0, GC_FGD=1, GC_PR_BGD=2, GC_PR_FGD=3, GC_INIT_WITH_MASK=1, calls=0,
                                 grabCut=grab_cut, setNumThreads=lambda n: None)
    return fake


def test_bench_compares_with_grabcut_when_opencv_is_there(experiment, tmp_path, capsys, monkeypatch):
    # The comparison is what the script is for, and the test install has no OpenCV: run it on a stand-in.
    import sys

    fake = _nearest_mean_cv2()
    monkeypatch.setitem(sys.modules, "cv2", fake)
    bench_localisation = experiment("bench_localisation")
    result = bench_localisation.main(["--maps", "simulated", "--images", "3", "--repeats", "1", "--processes", "1",
                                      "--out", str(tmp_path / "bench.json")])
    assert fake.calls == 3  # one cut per image
    assert result["grabcut_seconds_per_image"] > 0 and result["time_ratio"] > 0
    assert 0.3 < result["grabcut_mask_iou"] <= 1.0 and 0.3 < result["ours_vs_grabcut_mask_iou"] <= 1.0
    assert "| cv2.grabCut (5 it.) |" in capsys.readouterr().out


@pytest.mark.slow
def test_fig3_with_the_real_model(experiment, tmp_path):
    fig3 = experiment("fig3_localisation")
    out = tmp_path / "fig3.png"
    fig3.main(["--photos", "coffee", "--out", str(out)])
    from PIL import Image

    width, height = Image.open(out).size
    # three rows of five panels: the photo, then the two-object scene once per object's class
    assert height < width < 3 * height  # one row alone would be over 4 times as wide as high
    assert np.asarray(Image.open(out)).std() > 10


def test_graphcut_sweep_ranks_settings_against_the_reference(experiment, tmp_path, capsys, monkeypatch):
    from saliency_jax.evaluation import benchmark as bench

    sweep = experiment("sweep_graphcut")
    cache = tmp_path / "maps.npz"
    for seed in (1, 2):  # simulated maps in the cache: no model is loaded
        data = bench.make_benchmark(6, size=64, seed=seed)
        stored = dict(np.load(cache)) if cache.exists() else {}
        np.savez(cache, **stored, **{f"seed{seed}_n6": bench.simulated_saliency(data.masks, seed=seed)})
    original = bench.make_benchmark
    monkeypatch.setattr(bench, "make_benchmark", lambda n, size=224, seed=0: original(n, size=64, seed=seed))
    result = sweep.main(["--seeds", "1,2", "--images", "6", "--components", "2", "--weights", "50",
                         "--reference", "5,50", "--processes", "1", "--maps-cache", str(cache),
                         "--out", str(tmp_path / "sweep.json")])
    rows = {(r["components"], r["weight"]): r for r in result["rows"]}
    assert set(rows) == {(2, 50.0), (5, 50.0)}  # the reference is always swept
    assert rows[(5, 50.0)]["wins"] == 0
    for r in rows.values():
        assert len(r["per_seed"]) == 2 and r["mean"] == pytest.approx(np.mean(r["per_seed"]))
        assert 0.0 <= r["mean"] <= 1.0
    assert [r["mean"] for r in result["rows"]] == sorted((r["mean"] for r in result["rows"]), reverse=True)
    assert "| components | weight | seed 1 | seed 2 |" in capsys.readouterr().out
    assert (tmp_path / "sweep.json").exists()


def test_gmm_sample_sweep_reports_each_setting_per_mixture_seed(experiment, tmp_path, capsys):
    from saliency_jax.evaluation import benchmark as bench

    sweep = experiment("sweep_gmm_samples")
    data = bench.make_scenes(2, size=224, seed=3)
    simulated = bench.simulated_saliency(data.masks, seed=3)  # in the cache: no model is loaded
    cache = tmp_path / "maps.npz"
    np.savez(cache, **{f"set0_n{len(data.images)}_s224_seed3_{m}": simulated for m in ("gradient", "crops")})
    result = sweep.main(["--scene-seed", "3", "--scenes", "2", "--samples", "50,0,50", "--mixture-seeds", "2",
                         "--maps-cache", str(cache), "--out", str(tmp_path / "sweep.json")])
    rows = {(r["variant"], r["max_gmm_samples"]): r for r in result["rows"]}
    assert set(rows) == {("paper", 50), ("paper", 0), ("crops", 50), ("crops", 0)}  # the repeat runs once
    for r in rows.values():
        assert len(r["per_mixture_seed"]) == 2 and r["mean"] == pytest.approx(np.mean(r["per_mixture_seed"]))
        assert 0.0 <= r["mean"] <= 1.0 and r["spread"] >= 0.0
    # Each mixture seed's figure is the mean of that seed's localisations.
    from saliency_jax.localisation import GraphCutConfig

    again = sweep.box_ious(data, simulated, GraphCutConfig(max_gmm_samples=0, seed=1))
    assert rows["paper", 0]["per_mixture_seed"][1] == pytest.approx(again.mean())
    assert "| paper | all |" in capsys.readouterr().out
    assert (tmp_path / "sweep.json").exists()


@pytest.mark.parametrize("argv", [["--samples", "-1"], ["--mixture-seeds", "1"], ["--variants", "paper,nope"],
                                  ["--scenes", "0"], ["--scene-seed", "-1"]])
def test_gmm_sample_sweep_refuses_bad_arguments(experiment, capsys, argv):
    sweep = experiment("sweep_gmm_samples")
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(argv)
    assert exit_info.value.code == 2
    assert f"argument {argv[0]}:" in capsys.readouterr().err

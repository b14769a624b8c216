"""The attribution evaluation: its combinations, its CAM box, and its table on a small model and on Lite0."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture
def eval_attribution(experiment):
    return experiment("eval_attribution")


def test_contrast_score_is_the_class_minus_its_rivals(eval_attribution):
    logits = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5, -1.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], np.float32)
    contrast = np.asarray(eval_attribution.contrast_logits_fn(lambda p, x: x, others=4)(None, jnp.asarray(logits)))
    for b in range(2):
        top = np.argsort(-logits[b])[:5]
        for c in range(7):
            rivals = [k for k in top if k != c][:4]  # written out as the localisation variants choose them
            assert contrast[b, c] == pytest.approx(logits[b, c] - logits[b, rivals].mean(), abs=1e-5)


def test_contrast_gradient_flows_through_the_rivals(eval_attribution):
    fn = eval_attribution.contrast_logits_fn(lambda p, x: x, others=2)
    x = jnp.asarray([[3.0, 2.0, 1.0, 0.0]])
    grad = np.asarray(jax.grad(lambda v: fn(None, v)[0, 0])(x))
    np.testing.assert_allclose(grad, [[1.0, -0.5, -0.5, 0.0]])


def test_names_and_products(eval_attribution):
    assert eval_attribution.parse_name("gradcam++") == (("gradcam++",), False)
    assert eval_attribution.parse_name("gradcam*smoothgrad+contrast") == (("gradcam", "smoothgrad"), True)
    for bad in ("lime", "gradcam*", "gradcam+contrastive"):
        with pytest.raises(ValueError, match="method must be one of"):
            eval_attribution.parse_name(bad)
    maps = np.array([[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_allclose(eval_attribution.normalised(maps), [[[0, 0.5], [0.25, 1]], [[0, 0], [0, 0]]])


def test_cam_box_is_the_largest_region_above_a_fifth_of_the_range(eval_attribution):
    saliency = np.zeros((40, 50))
    saliency[5:15, 10:30] = 1.0  # the large region
    saliency[30:33, 40:43] = 0.9  # a smaller one, also above the threshold
    saliency[20:38, 0:8] = 0.15  # large, but below 20% of the range
    np.testing.assert_array_equal(eval_attribution.cam_box(saliency), [10, 5, 30, 15])
    np.testing.assert_array_equal(eval_attribution.cam_box(np.ones((4, 6))), [0, 0, 6, 4])  # constant: all


def test_table_on_a_small_model(eval_attribution, scene_net):
    from saliency_jax import attribution as attr
    from saliency_jax.evaluation import benchmark as bench

    module = eval_attribution
    methods = ("gradient", "smoothgrad", "gradcam", "occlusion", "gradcam*smoothgrad", "gradcam+contrast",
               "centre (no model)")
    config = dataclasses.replace(module.Config(**module.QUICK), num_scenes=2, methods=methods)
    data = bench.make_scenes(2, objects_per_scene=(2, 2), seed=3)
    result = module.evaluate(config, scene_net, data)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == list(methods)
    targets = len(data.images)
    assert result["targets"]["count"] == targets == 4
    for name, row in rows.items():
        scores = result["per_target"][name]
        assert set(scores) == {"pointing_mask", "pointing_box", "deletion_auc", "insertion_auc", "cam_box_iou",
                               "graphcut_box_iou", "graphcut_mask_iou", "constant_map"}
        for key, values in scores.items():
            assert len(values) == targets
            assert all(0.0 <= v <= 1.0 for v in values), (name, key)
            if key != "constant_map":
                assert row[key] == pytest.approx(np.mean(values), abs=1e-4)
        # A peak within 15 px of the visible pixels is within 15 px of their box.
        assert all(b >= m for b, m in zip(scores["pointing_box"], scores["pointing_mask"]))
        assert row["seconds"] >= 0.0
        assert row["constant_maps"] == sum(scores["constant_map"])
    assert rows["centre (no model)"]["seconds"] == 0.0
    assert result["best_pointing"]["method"] in methods[:-1]

    maps = result["maps"]
    for name in methods:
        assert maps[name].shape == data.masks.shape and np.isfinite(maps[name]).all() and (maps[name] >= 0).all()
    # Each target's map is its own class's: the companion call equals a direct one per target.
    direct = attr.attribution_map(attr.gradient(scene_net.logits_fn, scene_net.params,
                                                jnp.asarray(data.images, jnp.float32), jnp.asarray(data.classes)))
    np.testing.assert_allclose(maps["gradient"], np.asarray(direct), rtol=1e-4, atol=1e-6)
    cam = attr.attribution_map(attr.gradcam(scene_net.logits_fn, scene_net.params, jnp.asarray(data.images[1:2],
                                                                                                 jnp.float32),
                                            jnp.asarray(data.classes[1:2]), layer="features"), size=224)
    np.testing.assert_allclose(maps["gradcam"][1], np.asarray(cam)[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps["gradcam*smoothgrad"],
                               module.normalised(maps["gradcam"]) * module.normalised(maps["smoothgrad"]), atol=1e-6)
    # The pointing game scored independently: the peak's distance to the target's box.
    for t in range(targets):
        y, x = np.unravel_index(np.argmax(maps["gradcam"][t]), (224, 224))
        x0, y0, x1, y1 = data.boxes[t]
        gap = np.hypot(max(x0 - x, 0, x - (x1 - 1)), max(y0 - y, 0, y - (y1 - 1)))
        assert result["per_target"]["gradcam"]["pointing_box"][t] == float(gap <= 15)

    # A map that is zero everywhere seeds no GraphCut: it gets the whole image's box and mask.
    zero = module.score_targets(config, scene_net, data, np.zeros(data.masks.shape, np.float32))
    assert zero["constant_map"].all()
    whole = np.prod(data.boxes[:, 2:] - data.boxes[:, :2], axis=1) / 224**2
    np.testing.assert_allclose(zero["graphcut_box_iou"], whole)
    np.testing.assert_allclose(zero["graphcut_mask_iou"], data.masks.mean(axis=(1, 2)))

    table = module.markdown({k: v for k, v in result.items() if k != "maps"}, "python experiments/x.py")
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + len(methods)  # header and one row per method
    assert all(line.count("|") == lines[0].count("|") for line in lines)


@pytest.mark.slow
def test_quick_run_with_the_embedded_model(eval_attribution, tmp_path):
    # A pixel method, a layer method, a product with the contrastive model, a baseline: every kind of
    # row on the embedded model (each method's own maps are checked on a small model above).
    methods = ["gradient", "gradcam", "gradcam*smoothgrad+contrast", "centre (no model)"]
    out = tmp_path / "eval.json"
    result = eval_attribution.main(["--quick", "--methods", ",".join(methods), "--out", str(out)])
    stored = json.loads(out.read_text())
    assert stored["rows"] == json.loads(json.dumps(result["rows"]))
    names = [r["method"] for r in stored["rows"]]
    assert names == methods
    for row in stored["rows"]:
        for key in ("pointing_mask", "pointing_box", "deletion_auc", "insertion_auc", "cam_box_iou"):
            assert 0.0 <= row[key] <= 1.0
        assert row["pointing_box"] >= row["pointing_mask"]
    assert stored["targets"]["count"] == 2
    text = (tmp_path / "eval.md").read_text()
    assert "| gradcam*smoothgrad+contrast |" in text and "Best pointing game" in text

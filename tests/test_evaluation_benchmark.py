"""The generated benchmark: exact ground truth, determinism, baselines and the table."""

import functools

import numpy as np
import pytest

from saliency_jax.evaluation import benchmark as bench
from saliency_jax.evaluation import metrics
from saliency_jax.localisation import GraphCutConfig, bounding_box, localise_many


@pytest.fixture(scope="module")
def small():
    return bench.make_benchmark(7, size=96, seed=0)


def test_every_object_once_with_exact_boxes(small):
    assert small.images.shape == (7, 96, 96, 3) and small.images.dtype == np.uint8
    assert small.masks.shape == (7, 96, 96) and small.masks.dtype == bool
    assert small.objects == bench.OBJECT_NAMES
    assert set(small.backgrounds) == {bench.BACKGROUND_NAMES[0]}
    for mask, box in zip(small.masks, small.boxes):
        np.testing.assert_array_equal(bounding_box(mask), box)
        area = mask.sum() / mask.size
        assert 0.02 < area < 0.5


def test_same_seed_same_benchmark_other_seed_other_places(small):
    again = bench.make_benchmark(7, size=96, seed=0)
    np.testing.assert_array_equal(again.images, small.images)
    np.testing.assert_array_equal(again.masks, small.masks)
    other = bench.make_benchmark(7, size=96, seed=1)
    assert not np.array_equal(other.boxes, small.boxes)


def test_composite_pastes_the_object_exactly_inside_its_mask():
    rng = np.random.default_rng
    image, mask = bench.composite("dahlia", "gravel", size=64, scale=0.5, position=(0.0, 1.0), rng=rng(3))
    background, _ = bench.composite("dahlia", "gravel", size=64, scale=0.5, position=(1.0, 0.0), rng=rng(3))
    # Same background (same rng), object moved from the top-right corner to the bottom-left.
    untouched = ~mask & ~np.flipud(np.fliplr(mask))
    np.testing.assert_array_equal(image[untouched], background[untouched])
    x0, y0, x1, y1 = bounding_box(mask)
    assert (y0, x1) == (0, 64) and max(x1 - x0, y1 - y0) == 32
    assert not np.array_equal(image[mask], background[mask])


def test_bad_benchmark_settings_raise():
    with pytest.raises(ValueError, match="object must be one of"):
        bench.composite("unicorn", "brick")
    with pytest.raises(ValueError, match="background must be one of"):
        bench.composite("cat", "lava")
    with pytest.raises(ValueError, match="num_images must be an integer >= 1"):
        bench.make_benchmark(0)
    with pytest.raises(ValueError, match="scale must be in"):
        bench.composite("cat", "brick", scale=1.5)


def test_simulated_maps_point_at_the_object(small):
    maps = bench.simulated_saliency(small.masks, seed=0)
    assert maps.shape == small.masks.shape and (maps >= 0).all()
    inside = np.mean([m[k].mean() for m, k in zip(maps, small.masks)])
    outside = np.mean([m[~k].mean() for m, k in zip(maps, small.masks)])
    assert inside > 1.2 * outside
    assert metrics.pointing_accuracy(maps, masks=small.masks) > 0.5


def test_baselines_have_their_known_scores():
    shape = (100, 80)
    np.testing.assert_array_equal(bench.whole_image_box(shape), [0, 0, 80, 100])
    np.testing.assert_array_equal(bench.centre_box(shape, 0.5), [20, 25, 60, 75])
    saliency = np.zeros(shape)
    saliency[30:40, 10:30] = 5.0  # 2.5% of the map, above its 95% quantile (0)
    saliency[90, 70] = 1.0  # a stray bright pixel, also above it
    np.testing.assert_array_equal(bench.saliency_threshold_box(saliency), [10, 30, 71, 91])
    np.testing.assert_array_equal(bench.saliency_threshold_box(saliency, largest_only=True), [10, 30, 30, 40])
    np.testing.assert_array_equal(bench.saliency_threshold_box(np.zeros(shape)), [0, 0, 80, 100])
    mask = bench.box_mask([10, 30, 30, 40], shape)
    assert mask.sum() == 200 and mask[30:40, 10:30].all()


def test_whole_image_row_scores_the_area_ratio(small):
    rows = bench.baseline_rows(small)
    whole = rows[1]
    assert whole.method == "whole image"
    areas = metrics.box_area(small.boxes) / 96**2
    assert whole.box_iou == pytest.approx(areas.mean())
    assert whole.mask_iou == pytest.approx((small.masks.sum(axis=(1, 2)) / 96**2).mean())
    assert whole.accuracy == pytest.approx((areas >= 0.5).mean())


def test_perfect_boxes_score_one(small):
    row = bench.score("oracle", "-", small.boxes, small, pred_masks=list(small.masks))
    assert row.box_iou == row.accuracy == row.mask_iou == 1.0


def test_map_rows_and_table(small):
    maps = bench.simulated_saliency(small.masks, seed=0)
    localise_fn = functools.partial(localise_many, config=GraphCutConfig(), processes=1)
    rows = bench.map_rows(small, maps, "simulated", {"graphcut": localise_fn}) + bench.baseline_rows(small)
    assert [r.method for r in rows] == [
        "threshold box", "threshold box, largest part", "graphcut", "centre box", "whole image"
    ]
    graphcut = rows[2]
    assert 0 <= graphcut.mask_iou <= 1 and graphcut.seconds > 0
    assert graphcut.pointing == rows[0].pointing  # the same maps
    table = bench.format_table(rows)
    assert table.count("\n") == len(rows) + 1
    assert "| graphcut | simulated |" in table and "| whole image | - |" in table
    with pytest.raises(ValueError, match="saliency_maps must have shape"):
        bench.map_rows(small, maps[:3], "x")

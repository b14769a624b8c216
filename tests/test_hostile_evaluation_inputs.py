"""Hostile inputs to the benchmark, the metrics and ``localise_many``: each refusal names its argument.

Each function also gets one valid call with a known answer, so the checks do not refuse good input.
"""

import numpy as np
import pytest

from saliency_jax.evaluation import benchmark as bench
from saliency_jax.evaluation import metrics
from saliency_jax.localisation import bounding_box, localise, localise_many


def _scene(size=16):
    """A red square on green and a map peaking on it: the square is what ``localise`` finds."""
    yy, xx = np.mgrid[:size, :size]
    square = (abs(yy - size // 2) < size // 4) & (abs(xx - size // 2) < size // 4)
    image = np.where(square[..., None], [200, 40, 30], [50, 160, 60]).astype(np.uint8)
    saliency = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size**2 / 16))
    return image, saliency


# --- benchmark.saliency_threshold_box ------------------------------------------------------------


@pytest.mark.parametrize(
    "saliency, quantile, match",
    [
        (np.zeros((0, 0)), 0.5, r"saliency must not be empty, got shape \(0, 0\)"),
        (np.ones((4, 4)) + 1j, 0.5, "saliency must hold real numbers, got dtype complex128"),
        ([[1.0, 2.0], [3.0]], 0.5, "saliency must be a real .* ragged"),
        (np.ones((4, 4)), "0.5", r"quantile must be in \(0, 1\) \(a finite number\), got '0.5'"),
        (np.ones((4, 4)), 1.0, r"quantile must be in \(0, 1\)"),
        (np.ones((4, 4)), np.nan, r"quantile must be in \(0, 1\)"),
    ],
)
def test_saliency_threshold_box_refuses_naming_the_argument(saliency, quantile, match):
    with pytest.raises(ValueError, match=match):
        bench.saliency_threshold_box(saliency, quantile)


def test_saliency_threshold_box_boxes_the_top_pixels():
    saliency = np.zeros((10, 12))
    saliency[2:5, 3:7] = 1.0
    np.testing.assert_array_equal(bench.saliency_threshold_box(saliency, 0.5), [3, 2, 7, 5])
    np.testing.assert_array_equal(bench.saliency_threshold_box(saliency.astype(np.int64), np.float32(0.5)),
                                  [3, 2, 7, 5])


# --- benchmark.simulated_saliency ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(coverage=0), "coverage must be a finite number > 0"),
        (dict(coverage=-1.0), "coverage must be a finite number > 0"),
        (dict(coverage=np.inf), "coverage must be a finite number > 0"),
        (dict(coverage=1e-200), "coverage must be a finite number > 0.*underflows"),
        (dict(coverage="a"), "coverage must be a finite number"),
        (dict(contrast=-4), "contrast must be a finite number >= 0"),
        (dict(contrast=np.nan), "contrast must be a finite number >= 0"),
        (dict(contrast=1e300), "contrast must be small enough for the maps to fit in float32"),
        (dict(distractors=2.5), "distractors must be an integer >= 0"),
        (dict(distractors=-1), "distractors must be an integer >= 0"),
    ],
)
def test_simulated_saliency_refuses_bad_settings_naming_them(kwargs, match):
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2:5, 2:5] = True
    with pytest.raises(ValueError, match=match):
        bench.simulated_saliency(masks, **kwargs)


@pytest.mark.parametrize(
    "masks, match",
    [
        (np.zeros((0, 8, 8), bool), r"masks must hold at least one mask \(N >= 1\), got shape \(0, 8, 8\)"),
        ([np.ones((4, 4), bool), np.ones((5, 5), bool)], "masks must be a boolean .* ragged"),
        (np.full((1, 4, 4), np.nan), "masks contains NaN"),
        (np.ones((4, 4), bool), r"masks must have shape \[N, H, W\]"),
    ],
)
def test_simulated_saliency_refuses_bad_masks(masks, match):
    with pytest.raises(ValueError, match=match):
        bench.simulated_saliency(masks)


def test_simulated_saliency_points_at_the_object_and_zero_contrast_is_speckle():
    masks = np.zeros((2, 32, 32), bool)
    masks[0, 4:12, 4:12] = True
    masks[1, 20:30, 18:28] = True
    maps = bench.simulated_saliency(masks, seed=1, distractors=0)
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all()
    assert all(m[k].mean() > 1.2 * m[~k].mean() for m, k in zip(maps, masks))  # 1.4 and 1.8 here
    np.testing.assert_array_equal(maps, bench.simulated_saliency(masks, seed=1, distractors=0))
    speckle = bench.simulated_saliency(masks, seed=1, contrast=0)
    assert np.isfinite(speckle).all() and (speckle >= 0).all()
    assert np.isfinite(bench.simulated_saliency(masks, coverage=1e300)).all()


# --- benchmark.composite and make_benchmark ------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(size=32.5), "size must be an integer >= 8, got 32.5"),
        (dict(size=4), "size must be an integer >= 8, got 4"),
        (dict(position=(0.5,)), r"position must be two fractions \(fy, fx\), each in \[0, 1\], got \(0.5,\)"),
        (dict(position=(0.5, 0.5, 0.5)), "position must be two fractions"),
        (dict(position=0.5), "position must be two fractions"),
        (dict(position=(0.5, "a")), "position must be two fractions"),
        (dict(position=(0.5, 1.5)), "position must be two fractions"),
        (dict(scale="a"), r"scale must be in \(0, 1\] \(a finite number\), got 'a'"),
        (dict(scale=0.0), r"scale must be in \(0, 1\]"),
        (dict(rng=3), "rng must be a numpy Generator .* got int"),
    ],
)
def test_composite_refuses_bad_settings_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.composite("cat", "brick", **kwargs)


def test_composite_places_the_object_where_asked():
    image, mask = bench.composite("cat", "brick", size=32, scale=0.5, position=np.array([0.0, 1.0]),
                                  rng=np.random.default_rng(1))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and mask.shape == (32, 32)
    x0, y0, x1, y1 = bounding_box(mask)
    assert (y0, x1) == (0, 32) and max(x1 - x0, y1 - y0) == 16


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(size=32.0), "size must be an integer >= 8, got 32.0"),
        (dict(scale_range=(0.5,)), "scale_range must satisfy 0 < low <= high <= 1"),
        (dict(scale_range=(0.2, "a")), "scale_range must satisfy 0 < low <= high <= 1"),
        (dict(scale_range=(0.6, 0.2)), "scale_range must satisfy 0 < low <= high <= 1"),
    ],
)
def test_make_benchmark_refuses_bad_settings_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.make_benchmark(2, **kwargs)


def test_make_benchmark_accepts_a_numpy_size():
    data = bench.make_benchmark(2, size=np.int64(32), seed=0)
    assert data.images.shape == (2, 32, 32, 3)
    for mask, box in zip(data.masks, data.boxes):
        np.testing.assert_array_equal(bounding_box(mask), box)


# --- benchmark.centre_box and box_mask -----------------------------------------------------------


@pytest.mark.parametrize(
    "shape, fraction, match",
    [
        ((10, 10), "a", r"fraction must be in \(0, 1\] \(a finite number\), got 'a'"),
        ((10, 10), 0.0, r"fraction must be in \(0, 1\]"),
        ((0, 0), 0.5, r"shape must be \(H, W, ...\) with integers H, W >= 1, got \(0, 0\)"),
        ((10,), 0.5, r"shape must be \(H, W, ...\)"),
        ((10.0, 10), 0.5, r"shape must be \(H, W, ...\)"),
        (10, 0.5, r"shape must be \(H, W, ...\)"),
    ],
)
def test_centre_box_refuses_naming_the_argument(shape, fraction, match):
    with pytest.raises(ValueError, match=match):
        bench.centre_box(shape, fraction)


def test_centre_box_is_centred():
    np.testing.assert_array_equal(bench.centre_box((100, 80, 3), 0.5), [20, 25, 60, 75])
    np.testing.assert_array_equal(bench.centre_box(np.zeros((10, 10)).shape, np.float64(1.0)), [0, 0, 10, 10])


@pytest.mark.parametrize(
    "box, shape, match",
    [
        ([np.nan, 5, 1, 1], (10, 10), r"box must be 4 finite numbers \(x0, y0, x1, y1\), got \[nan, 5, 1, 1\]"),
        ([0, 0, 1], (10, 10), r"box must be 4 numbers \(x0, y0, x1, y1\)"),
        ([0, 0, [1], 1], (10, 10), r"box must be 4 numbers"),
        (["a", 0, 1, 1], (10, 10), r"box must be 4 numbers"),
        ([0, 0, 1, 1], (10,), r"shape must be \(H, W, ...\)"),
        ([0, 0, 1, 1], (-1, 10), r"shape must be \(H, W, ...\) with integers H, W >= 0"),
    ],
)
def test_box_mask_refuses_naming_the_argument(box, shape, match):
    with pytest.raises(ValueError, match=match):
        bench.box_mask(box, shape)


def test_box_mask_fills_the_box_clipped_to_the_image():
    mask = bench.box_mask(np.array([2, 1, 5, 3]), (4, 6, 3))
    expected = np.zeros((4, 6), bool)
    expected[1:3, 2:5] = True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(bench.box_mask([-3.0, -3.0, 2.5, 99.0], (4, 6))[:, :2], True)


# --- metrics -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gt_classes, match",
    [
        (2, "gt_classes must hold one entry of class ids per image \\(1\\), got 2"),
        (np.int64(2), "gt_classes must hold one entry of class ids per image"),
        ("a", "gt_classes must hold one entry of class ids per image"),
        ([[1, [2, 3]]], r"gt_classes must hold int \[M_i\] class ids per image"),
    ],
)
def test_top5_localisation_error_refuses_a_scalar_gt_classes(gt_classes, match):
    with pytest.raises(ValueError, match=match):
        metrics.top5_localisation_error([[1]], np.zeros((1, 1, 4)), gt_classes, [[0, 0, 10, 10]])


def test_top5_localisation_error_counts_a_right_guess():
    pred_classes = [[3, 1], [3, 1]]
    pred_boxes = [[[0, 0, 10, 10], [0, 0, 5, 5]], [[50, 50, 60, 60], [0, 0, 5, 5]]]
    # Image 0: class 1 is guessed, but with the wrong box; class 3's box is right. Image 1: no box fits.
    assert metrics.top5_localisation_error(pred_classes, pred_boxes, [1, [3, 1]],
                                           [[[0, 0, 5, 5]], [[0, 0, 10, 10], [20, 20, 30, 30]]]) == 0.5
    assert metrics.top5_localisation_error(pred_classes, pred_boxes, np.array([3, 2]),
                                           np.array([[0, 0, 10, 10], [0, 0, 5, 5]])) == 0.5


def test_box_iou_refuses_unbroadcastable_boxes_naming_both():
    with pytest.raises(ValueError, match=r"boxes_a and boxes_b must have broadcastable leading axes, "
                                         r"got shapes \(2, 4\) and \(3, 4\)"):
        metrics.box_iou(np.zeros((2, 4)), np.zeros((3, 4)))


def test_box_iou_still_broadcasts():
    a = np.array([[0, 0, 10, 10], [0, 0, 5, 5]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(metrics.box_iou(a[:, None], b[None]), [[1, 0.5, 0], [0.25, 0, 0]])
    np.testing.assert_allclose(metrics.box_iou(a, b[0]), [1, 0.25])


@pytest.mark.parametrize(
    "mask_a, match",
    [
        ([np.zeros((2, 2)), np.zeros((3, 3))], "mask_a must be a boolean .* ragged"),
        ([[1, 0], [1]], "mask_a must be a boolean .* ragged"),
    ],
)
def test_mask_iou_refuses_ragged_masks(mask_a, match):
    with pytest.raises(ValueError, match=match):
        metrics.mask_iou(mask_a, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=match.replace("mask_a", "mask_b")):
        metrics.mask_iou(np.zeros((2, 2)), mask_a)


def test_mask_iou_of_overlapping_masks():
    assert metrics.mask_iou([[1, 1], [0, 0]], np.array([[1, 0], [1, 0]], bool)) == pytest.approx(1 / 3)


def test_pointing_hits_refuses_ragged_masks_and_maps():
    with pytest.raises(ValueError, match="masks must be a boolean .* ragged"):
        metrics.pointing_hits(np.zeros((1, 3, 3)), masks=[[np.zeros(3), np.zeros(2), np.zeros(3)]])
    with pytest.raises(ValueError, match=r"saliency_maps\[0\] must be a real \[H, W\] map, got a ragged"):
        metrics.pointing_hits([[[0.0, 1.0], [1.0]]], masks=[np.zeros((2, 2))])


def test_pointing_hits_with_masks_of_different_shapes_per_map():
    maps = [np.zeros((3, 3)), np.zeros((20, 20))]
    maps[0][1, 1] = maps[1][0, 0] = 1.0
    masks = [np.zeros((3, 3), bool), np.zeros((20, 20), bool)]
    masks[0][1, 1] = masks[1][19, 19] = True
    np.testing.assert_array_equal(metrics.pointing_hits(maps, masks=masks), [True, False])


# --- localisation.pipeline.localise_many ---------------------------------------------------------


def test_localise_many_reads_generators_and_iterables():
    image, saliency = _scene()
    expected = localise(image, saliency).box
    found = localise_many((x for x in [image, image]), iter([saliency, saliency]), processes=1)
    assert len(found) == 2
    for f in found:
        np.testing.assert_array_equal(f.box, expected)
    assert localise_many((x for x in []), (x for x in []), processes=1) == []


def test_localise_many_still_counts_generators_and_refuses_non_iterables():
    image, saliency = _scene()
    with pytest.raises(ValueError, match="images and saliency_maps must have the same length, got 2 and 1"):
        localise_many((x for x in [image, image]), (x for x in [saliency]), processes=1)
    with pytest.raises(ValueError, match=r"images must be N images \[H, W, 3\] .* got int"):
        localise_many(3, [saliency], processes=1)
    with pytest.raises(ValueError, match=r"saliency_maps must be N maps \[H, W\] .* got str"):
        localise_many([image], "maps", processes=1)
    with pytest.raises(ValueError, match="saliency_maps must be N maps .* got a 0-d array"):
        localise_many([image], np.array(1.0), processes=1)


# --- benchmark.scene and make_scenes -------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, match",
    [
        (dict(size=32.5), "size must be an integer >= 8"),
        (dict(size=4), "size must be an integer >= 8"),
        (dict(scales=["a"]), r"scales must be in \(0, 1\]"),
        (dict(scales=[0.0]), r"scales must be in \(0, 1\]"),
        (dict(scales=[np.nan]), r"scales must be in \(0, 1\]"),
        (dict(positions=[(0.5,)]), r"position must be two fractions \(fy, fx\)"),
        (dict(positions=[(0.5, 0.5, 0.5)]), r"position must be two fractions \(fy, fx\)"),  # the third was ignored
        (dict(positions=[(0.5, 1.5)]), r"position must be two fractions \(fy, fx\)"),
        (dict(scales=0.5), "scales must be a sequence, one entry per object"),
        (dict(rng=3), "rng must be a numpy Generator"),
        (dict(feather=-1.0), "feather must be a finite number >= 0"),
        (dict(wobble=np.inf), "wobble must be a finite number >= 0"),
    ],
)
def test_scene_refuses_bad_settings_naming_them(settings, match):
    name = bench.SCENE_OBJECT_NAMES[0]
    call = dict(size=32, scales=[0.5], positions=[(0.5, 0.5)], **{"rng": None}) | settings
    with pytest.raises(ValueError, match=match):
        bench.scene([name], bench.SCENE_BACKGROUND_NAMES[0], **call)


def test_scene_places_its_object_where_asked():
    name = bench.SCENE_OBJECT_NAMES[0]
    image, masks = bench.scene([name], bench.SCENE_BACKGROUND_NAMES[0], size=64, scales=[0.4],
                               positions=[(0.0, 1.0)], rng=np.random.default_rng(1))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and masks.shape == (1, 64, 64)
    rows, cols = np.nonzero(masks[0])
    assert rows.min() < 8 and cols.max() > 56  # top right
    assert (cols.max() - cols.min() + 1) <= 0.4 * 64 + 1 and (rows.max() - rows.min() + 1) <= 0.4 * 64 + 1


@pytest.mark.parametrize(
    "settings, match",
    [
        (dict(size=32.0), "size must be an integer >= 8"),
        (dict(seed=-1), "seed must be an integer >= 0"),
        (dict(objects_per_scene=(2,)), "objects_per_scene must be two integers"),
        (dict(objects_per_scene=(2, 1)), "objects_per_scene must be two integers"),
        (dict(objects_per_scene=(1.5, 2)), "objects_per_scene must be two integers"),
        (dict(scale_range=(0.5,)), "scale_range must be two numbers"),
        (dict(scale_range=(0.2, "a")), "scale_range must be two numbers"),
        (dict(scale_range=(0.6, 0.2)), "scale_range must satisfy 0 < low <= high <= 1"),
        (dict(min_visible=1.5), r"min_visible must be in \[0, 1\]"),
        (dict(backgrounds="grass"), "backgrounds must be a sequence of background names"),
    ],
)
def test_make_scenes_refuses_bad_settings_naming_them(settings, match):
    with pytest.raises(ValueError, match=match):
        bench.make_scenes(1, **settings)


def test_make_scenes_takes_numpy_integers():
    scenes = bench.make_scenes(1, size=np.int64(48), seed=np.int64(3), objects_per_scene=(np.int64(1), 1))
    assert scenes.images.shape == (1, 48, 48, 3) and scenes.masks[0].any()

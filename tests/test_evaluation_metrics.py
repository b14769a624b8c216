"""Localisation metrics with known answers: IoU, ILSVRC accuracy and top-5 error, pointing game."""

import numpy as np
import pytest

from saliency_jax.evaluation import metrics


def test_box_iou_known_values():
    a = np.array([0, 0, 10, 10])
    assert metrics.box_iou(a, a) == 1.0
    assert metrics.box_iou(a, [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert metrics.box_iou(a, [2, 2, 4, 4]) == pytest.approx(4 / 100)
    # Exclusive ends: boxes that touch share no pixel.
    assert metrics.box_iou(a, [10, 0, 20, 10]) == 0.0
    assert metrics.box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_box_iou_broadcasts_and_is_symmetric():
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 50, (6, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=-1)
    pairwise = metrics.box_iou(boxes[:, None], boxes[None])
    assert pairwise.shape == (6, 6)
    np.testing.assert_allclose(pairwise, pairwise.T)
    assert ((pairwise >= 0) & (pairwise <= 1)).all()
    # Matches counting pixels of the rasterised boxes.
    for i in range(6):
        for j in range(6):
            m = [np.zeros((60, 60), bool) for _ in range(2)]
            for mask, (x0, y0, x1, y1) in zip(m, (boxes[i], boxes[j])):
                mask[y0:y1, x0:x1] = True
            assert pairwise[i, j] == pytest.approx(metrics.mask_iou(*m))


def test_bad_boxes_raise():
    with pytest.raises(ValueError, match=r"boxes_a must have shape \[..., 4\]"):
        metrics.box_iou([1, 2, 3], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="x1 >= x0"):
        metrics.box_iou([5, 0, 1, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        metrics.box_iou([np.nan, 0, 1, 1], [0, 0, 1, 1])


def test_localisation_accuracy_uses_iou_at_least_a_half_against_any_object():
    gt = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.zeros((0, 4))]
    pred = np.array([[0, 0, 10, 20], [21, 20, 30, 30], [0, 0, 5, 5]])  # IoU 0.5 exactly, 0.9, no object
    np.testing.assert_array_equal(metrics.localisation_hits(pred, gt), [True, True, False])
    assert metrics.localisation_accuracy(pred, gt) == pytest.approx(2 / 3)
    assert metrics.localisation_accuracy(pred[:1], [gt[0]], threshold=0.51) == 0.0
    # One box per image as [N, 4] works too.
    assert metrics.localisation_accuracy(pred[:1], np.array([[0, 0, 10, 10]])) == 1.0


def test_top5_error_needs_the_right_class_and_the_right_place():
    gt_classes = [3, 5, 7]
    gt_boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]
    good, bad = [0, 0, 10, 10], [50, 50, 60, 60]
    pred_classes = np.array([[1, 2, 3, 4, 6], [5, 1, 2, 3, 4], [7, 1, 2, 3, 4]])
    pred_boxes = np.array([
        [bad, bad, good, bad, bad],  # right class 3rd, right box: localised
        [bad, good, good, good, good],  # right class, wrong box: miss
        [bad, bad, bad, bad, bad],
    ], dtype=float)
    pred_boxes[2, 1] = good  # right box under a wrong class: still a miss
    assert metrics.top5_localisation_error(pred_classes, pred_boxes, gt_classes, gt_boxes) == pytest.approx(2 / 3)
    # Several objects of the image's class: any one counts.
    error = metrics.top5_localisation_error(
        [[3]], [[good]], [np.array([3])], [np.array([bad, [1, 0, 10, 10]])]
    )
    assert error == 0.0
    with pytest.raises(ValueError, match="at most 5 guesses"):
        metrics.top5_localisation_error(np.zeros((1, 6), int), np.zeros((1, 6, 4)), [0], [good])


def test_pointing_game_with_masks_and_the_15_pixel_tolerance():
    mask = np.zeros((60, 60), bool)
    mask[10:20, 10:20] = True
    maps = np.zeros((4, 60, 60))
    maps[0, 15, 15] = 1  # inside
    maps[1, 15, 33] = 1  # 14 px right of the last object column (19): a hit
    maps[2, 15, 34] = 1  # 15 px: a miss (TorchRay's rule: closer than 15, d**2 < 15**2)
    maps[3, 30, 30] = 1  # (11, 11) away diagonally: 15.6 px, a miss
    hits = metrics.pointing_hits(maps, masks=[mask] * 4)
    np.testing.assert_array_equal(hits, [True, True, False, False])
    assert metrics.pointing_accuracy(maps, masks=[mask] * 4, tolerance=0) == 0.25


def test_pointing_game_with_boxes_matches_masks():
    rng = np.random.default_rng(1)
    maps = rng.random((20, 40, 50))
    box = np.array([12, 8, 30, 25])
    mask = np.zeros((40, 50), bool)
    mask[8:25, 12:30] = True
    for tolerance in (0, 5, 15):
        np.testing.assert_array_equal(
            metrics.pointing_hits(maps, boxes=[box[None]] * 20, tolerance=tolerance),
            metrics.pointing_hits(maps, masks=[mask] * 20, tolerance=tolerance),
        )


def test_pointing_names_a_map_of_the_wrong_rank_or_kind():
    maps = np.zeros((2, 5, 5, 1))
    masks = [np.ones((5, 5), bool)] * 2
    # Once "masks must match the maps' shape (5, 5, 1)", blaming the masks.
    with pytest.raises(ValueError, match=r"saliency_maps\[0\] must have shape \[H, W\], got shape \(5, 5, 1\)"):
        metrics.pointing_hits(maps, masks=masks)
    with pytest.raises(ValueError, match=r"saliency_maps\[1\] must hold real numbers, got dtype complex128"):
        metrics.pointing_hits([np.zeros((5, 5)), np.zeros((5, 5), complex)], masks=masks)  # once cast silently
    with pytest.raises(ValueError, match=r"saliency_maps\[1\] contains NaN"):
        metrics.pointing_hits([np.zeros((5, 5)), np.full((5, 5), np.nan)], masks=masks)


def test_pointing_ties_take_the_first_maximum():
    saliency = np.zeros((5, 5))
    saliency[0, 4] = saliency[4, 0] = 1.0
    np.testing.assert_array_equal(metrics.saliency_peak(saliency), [0, 4])
    with pytest.raises(ValueError, match="exactly one of masks= or boxes="):
        metrics.pointing_hits([saliency])

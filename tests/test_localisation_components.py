"""Largest connected component and boxes with exclusive ends."""

import numpy as np
import pytest

from saliency_jax.localisation import bounding_box, largest_component


def test_largest_component_keeps_only_the_biggest_blob():
    mask = np.zeros((10, 10), bool)
    mask[1:3, 1:3] = True  # 4 pixels
    mask[5:9, 4:8] = True  # 16 pixels
    mask[0, 9] = True
    np.testing.assert_array_equal(largest_component(mask), np.pad(np.ones((4, 4), bool), ((5, 1), (4, 2))))


def test_connectivity_decides_whether_diagonal_pixels_join():
    mask = np.zeros((5, 5), bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True
    mask[0, 4] = mask[1, 4] = True
    assert largest_component(mask, connectivity=2).sum() == 3
    assert largest_component(mask, connectivity=1).sum() == 2


def test_ties_go_to_the_first_component_in_row_major_order():
    mask = np.zeros((4, 7), bool)
    mask[2:4, 0:2] = True
    mask[0:2, 5:7] = True
    keep = largest_component(mask)
    assert keep[0, 5] and not keep[2, 0]


def test_empty_mask_gives_an_empty_component():
    assert not largest_component(np.zeros((3, 3), bool)).any()


def test_box_ends_are_exclusive():
    mask = np.zeros((6, 8), bool)
    mask[2, 3] = True
    np.testing.assert_array_equal(bounding_box(mask), [3, 2, 4, 3])
    mask[4, 6] = True
    x0, y0, x1, y1 = bounding_box(mask)
    assert (x0, y0, x1, y1) == (3, 2, 7, 5)
    assert mask[y0:y1, x0:x1].sum() == mask.sum()
    np.testing.assert_array_equal(bounding_box(np.ones((6, 8))), [0, 0, 8, 6])


def test_box_of_an_empty_mask_raises():
    with pytest.raises(ValueError, match="mask is empty"):
        bounding_box(np.zeros((3, 3), bool))


def test_masks_must_be_two_dimensional():
    with pytest.raises(ValueError, match=r"mask must have shape \[H, W\]"):
        largest_component(np.zeros((2, 3, 3), bool))


def test_most_salient_component_is_the_one_with_the_largest_saliency_sum():
    from saliency_jax.localisation import most_salient_component

    mask = np.zeros((8, 8), bool)
    mask[0:4, 0:4] = True  # 16 pixels, low saliency
    mask[6:8, 6:8] = True  # 4 pixels, high saliency
    saliency = np.full((8, 8), -1.0)
    saliency[0:4, 0:4] = 0.0
    saliency[6:8, 6:8] = 5.0
    kept = most_salient_component(mask, saliency)
    np.testing.assert_array_equal(kept, np.pad(np.ones((2, 2), bool), ((6, 0), (6, 0))))
    # Saliency is shifted to a minimum of 0: the big one wins when it sums more.
    saliency[0:4, 0:4] = 1.0
    np.testing.assert_array_equal(most_salient_component(mask, saliency), largest_component(mask))
    assert not most_salient_component(np.zeros((3, 3), bool), np.eye(3)).any()

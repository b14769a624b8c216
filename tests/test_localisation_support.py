"""The support option: no foreground where the map is below a fraction of its range."""

import numpy as np
import pytest

from saliency_jax.localisation import GraphCutConfig, localise, support_mask


def _two_objects(size=48):
    """Two red squares of the same colour on green, and a smooth map high on the left one.

    The map's tail reaches the right square, so the paper's colour model (fitted
    on the left square's seeds) also labels the right square foreground.
    """
    rng = np.random.default_rng(0)
    image = rng.normal(0, 10, (size, size, 3)) + np.array([60, 150, 70])
    left = np.zeros((size, size), bool)
    left[16:32, 4:20] = True
    right = np.zeros((size, size), bool)
    right[16:32, 28:44] = True
    image[left | right] = rng.normal(0, 10, ((left | right).sum(), 3)) + np.array([210, 50, 40])
    yy, xx = np.mgrid[:size, :size]
    saliency = np.exp(-((yy - 24) ** 2 + (xx - 12) ** 2) / (2 * 10.0**2))  # 0.03 at the right square's edge
    return np.clip(image, 0, 255).astype(np.uint8), saliency, left, right


def test_support_mask_is_the_scaled_map_below_the_fraction():
    saliency = np.array([[2.0, 4.0], [6.0, 10.0]])  # scaled: 0, 0.25, 0.5, 1
    np.testing.assert_array_equal(support_mask(saliency, 0.3), [[True, True], [False, False]])
    np.testing.assert_array_equal(support_mask(saliency, 0.25), [[True, False], [False, False]])
    assert not support_mask(saliency, 0.0).any()
    assert not support_mask(np.full((3, 3), 5.0), 0.5).any()  # a constant map has no outside


def test_support_keeps_the_cut_off_a_neighbour_of_the_same_colour():
    image, saliency, left, right = _two_objects()
    paper = localise(image, saliency, GraphCutConfig())
    assert paper.segmentation[right].mean() > 0.9  # the colour model alone takes the neighbour too
    found = localise(image, saliency, GraphCutConfig(support=0.05))
    outside = support_mask(saliency, 0.05)
    assert not (found.segmentation & outside).any()
    assert found.segmentation[right].mean() < 0.1
    assert (found.mask & left).sum() / (found.mask | left).sum() > 0.9


@pytest.mark.parametrize("pairwise_weight", [50.0, 1e6, 1e9])
def test_support_stays_hard_whatever_the_pairwise_weight(pairwise_weight):
    """Isolated pixels of zero saliency inside a salient blob on a near-flat image: their
    neighbours pull them to the foreground with edges of up to 8 x pairwise_weight, which the
    support's cost must outweigh (a fixed 1e6 gave way at 1e6)."""
    rng = np.random.default_rng(1)
    image = (np.full((75, 113, 3), 120) + rng.integers(0, 3, (75, 113, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:75, :113]
    saliency = np.exp(-((yy - 37.5) ** 2 + (xx - 56.5) ** 2) / (2 * 25.0**2)) + 0.3
    holes = (np.random.default_rng(0).random((75, 113)) < 0.1) & (np.abs(yy - 37.5) < 6) & (np.abs(xx - 56.5) < 6)
    saliency[holes] = 0.0
    assert holes.sum() > 10
    config = GraphCutConfig(support=0.05, hard_seeds="foreground", pairwise_weight=pairwise_weight)
    found = localise(image, saliency, config)
    assert found.segmentation.sum() > 1000
    assert not (found.segmentation & support_mask(saliency, 0.05)).any()


def test_support_zero_is_the_paper():
    image, saliency, _, _ = _two_objects()
    a = localise(image, saliency, GraphCutConfig())
    b = localise(image, saliency, GraphCutConfig(support=0.0))
    np.testing.assert_array_equal(a.segmentation, b.segmentation)
    assert GraphCutConfig().support == 0.0


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, True, "0.1", float("nan")])
def test_bad_support_raises_naming_it(value):
    with pytest.raises(ValueError, match="support"):
        GraphCutConfig(support=value)

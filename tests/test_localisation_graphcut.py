"""GraphCut with PyMaxflow: the minimum-energy labelling, hard seeds, contrast-sensitive edges."""

import itertools

import numpy as np
import pytest

from saliency_jax.localisation import Seeds, contrast_weights, graphcut_segment


def _no_seeds(shape):
    return Seeds(np.zeros(shape, bool), np.zeros(shape, bool), 1.0, 0.0)


def _edge_list(image, gamma, neighbourhood):
    """``(i, j, w)`` over every neighbouring pair, from the per-direction weight maps."""
    height, width = image.shape[:2]
    out = []
    for (dy, dx), weights in contrast_weights(image, gamma, neighbourhood):
        for y in range(height):
            for x in range(width):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    out.append((y * width + x, (y + dy) * width + x + dx, weights[y, x]))
                else:
                    assert weights[y, x] == 0
    return out


def _energy(labels, fg_cost, bg_cost, edges):
    """GrabCut's energy of a labelling (True = foreground), computed directly."""
    flat = labels.ravel()
    unary = np.where(flat, fg_cost.ravel(), bg_cost.ravel()).sum()
    return unary + sum(w for i, j, w in edges if flat[i] != flat[j])


@pytest.mark.parametrize("neighbourhood", [4, 8])
def test_cut_is_the_brute_force_minimum_energy_labelling(neighbourhood):
    rng = np.random.default_rng(neighbourhood)
    shape = (3, 4)
    for _ in range(3):
        image = rng.uniform(0, 255, shape + (3,))
        fg_cost, bg_cost = rng.uniform(0, 3, shape), rng.uniform(0, 3, shape)
        mask = graphcut_segment(image, fg_cost, bg_cost, _no_seeds(shape), pairwise_weight=2.0,
                                neighbourhood=neighbourhood)
        edges = _edge_list(image, 2.0, neighbourhood)
        best = min(
            _energy(np.array(bits, bool).reshape(shape), fg_cost, bg_cost, edges)
            for bits in itertools.product([False, True], repeat=12)
        )
        assert _energy(mask, fg_cost, bg_cost, edges) == pytest.approx(best)


def test_without_pairwise_terms_each_pixel_takes_its_cheaper_label():
    rng = np.random.default_rng(0)
    fg_cost, bg_cost = rng.normal(size=(16, 16)), rng.normal(size=(16, 16))
    mask = graphcut_segment(rng.uniform(0, 255, (16, 16, 3)), fg_cost, bg_cost, _no_seeds((16, 16)),
                            pairwise_weight=0.0)
    np.testing.assert_array_equal(mask, fg_cost < bg_cost)


def test_seeds_are_hard_constraints():
    shape = (10, 10)
    fg_cost = np.full(shape, 100.0)  # every pixel would rather be background ...
    bg_cost = np.zeros(shape)
    foreground = np.zeros(shape, bool)
    foreground[4:6, 4:6] = True  # ... but these are foreground seeds
    background = np.zeros(shape, bool)
    background[0, 0] = True
    bg_cost[0, 0] = 200.0  # and this background seed would rather be foreground
    seeds = Seeds(foreground, background, 1, 0)
    image = np.zeros(shape + (3,))
    mask = graphcut_segment(image, fg_cost, bg_cost, seeds, pairwise_weight=50.0, hard_seeds="both")
    assert mask[foreground].all()
    assert not mask[background].any()
    # Soft background seeds follow their costs; foreground seeds stay fixed.
    soft = graphcut_segment(image, fg_cost, bg_cost, seeds, pairwise_weight=0.0, hard_seeds="foreground")
    assert soft[0, 0] and soft[foreground].all() and soft.sum() == 5
    # The paper's cut (the default) fixes nothing: every pixel follows its costs.
    free = graphcut_segment(image, fg_cost, bg_cost, seeds, pairwise_weight=0.0)
    np.testing.assert_array_equal(free, fg_cost < bg_cost)
    with pytest.raises(ValueError, match="hard_seeds"):
        graphcut_segment(image, fg_cost, bg_cost, seeds, hard_seeds="all")


def test_pairwise_term_smooths_an_isolated_pixel_but_not_across_an_edge():
    shape = (12, 12)
    fg_cost = np.zeros(shape)
    bg_cost = np.ones(shape)
    fg_cost[6, 6], bg_cost[6, 6] = 1.0, 0.0  # one pixel prefers the background by 1
    flat = np.full(shape + (3,), 128.0)
    noisy_free = graphcut_segment(flat, fg_cost, bg_cost, _no_seeds(shape), pairwise_weight=0.0)
    assert not noisy_free[6, 6]
    smooth = graphcut_segment(flat, fg_cost, bg_cost, _no_seeds(shape), pairwise_weight=1.0)
    assert smooth.all()
    # The same pixel with a very different colour keeps its own label: the edge is cheap to cut.
    contrasted = flat.copy()
    contrasted[6, 6] = 0.0
    contrasted[0, 0] = 255.0  # (a second contrast so that beta stays moderate)
    result = graphcut_segment(contrasted, fg_cost, bg_cost, _no_seeds(shape), pairwise_weight=1.0)
    assert not result[6, 6]


def test_contrast_weights_on_a_flat_image_are_gamma_over_distance():
    directions = contrast_weights(np.zeros((4, 5, 3)), 50.0, 8)
    assert [offset for offset, _ in directions] == [(0, 1), (1, 0), (1, 1), (1, -1)]
    counts = [int((w > 0).sum()) for _, w in directions]
    assert counts == [4 * 4, 3 * 5, 3 * 4, 3 * 4]  # every neighbouring pair once
    right, down, down_right, down_left = (w for _, w in directions)
    np.testing.assert_allclose(right[:, :4], 50.0)
    assert (right[:, 4] == 0).all()
    np.testing.assert_allclose(down_right[:3, :4], 50.0 / np.sqrt(2))
    # Down-left starts from column 1: column 0 has no lower-left neighbour.
    assert (down_left[:, 0] == 0).all() and (down_left[:3, 1:] > 0).all() and (down_left[3] == 0).all()


def test_contrast_weights_decay_with_colour_difference_and_beta_normalises_scale():
    image = np.zeros((2, 3, 3))
    image[:, 2] = 10.0  # one vertical edge
    ((_, right), (_, down)) = contrast_weights(image, 1.0, 4)
    # Right-neighbour pairs: (x=0, x=1) flat, (x=1, x=2) across the edge.
    assert (right[:, 1] < right[:, 0]).all()
    np.testing.assert_allclose(right[:, 0], 1.0)
    np.testing.assert_allclose(down[0], 1.0)
    # beta = 1 / (2 <|dz|^2>) over all 7 pairs: 2 of them differ by 300.
    np.testing.assert_allclose(right[:, 1], np.exp(-300 / (2 * (2 * 300 / 7))))
    # Scaling the colours changes nothing.
    ((_, scaled), _) = contrast_weights(image * 7.0, 1.0, 4)
    np.testing.assert_allclose(right, scaled)

"""Quantile seeds (paper §3.2): exact counts, ties, degenerate maps."""

import numpy as np
import pytest

from saliency_jax.localisation import quantile_seeds


def _permuted_ramp(n=100, shape=(10, 10), seed=0):
    return np.random.default_rng(seed).permutation(np.arange(n, dtype=np.float64)).reshape(shape)


def test_seeds_are_exactly_the_pixels_beyond_the_quantiles():
    saliency = _permuted_ramp()
    seeds = quantile_seeds(saliency)
    # 100 distinct values 0..99: the 95% quantile is 94.05, the 30% quantile 29.7.
    np.testing.assert_array_equal(np.sort(saliency[seeds.foreground]), np.arange(95, 100))
    np.testing.assert_array_equal(np.sort(saliency[seeds.background]), np.arange(0, 30))
    assert seeds.foreground_threshold == pytest.approx(94.05)
    assert seeds.background_threshold == pytest.approx(29.7)


@pytest.mark.parametrize("fg, bg", [(0.9, 0.5), (0.8, 0.1)])
def test_seed_fractions_follow_the_quantiles(fg, bg):
    saliency = _permuted_ramp(1000, (25, 40), seed=1)
    seeds = quantile_seeds(saliency, fg, bg)
    assert seeds.foreground.sum() == round((1 - fg) * 1000)
    assert seeds.background.sum() == round(bg * 1000)
    assert not (seeds.foreground & seeds.background).any()


def test_only_the_ranking_matters():
    saliency = _permuted_ramp()
    a = quantile_seeds(saliency)
    b = quantile_seeds(np.exp(saliency / 10) * 3 + 7)
    np.testing.assert_array_equal(a.foreground, b.foreground)
    np.testing.assert_array_equal(a.background, b.background)


def test_maps_whose_range_overflows_float64_seed_as_their_ranking():
    # max - min overflows: np.quantile's interpolation gave an inf threshold (no foreground) or
    # a -inf one (every pixel foreground, overlapping the background).
    saliency = _permuted_ramp()
    a = quantile_seeds(saliency)
    huge = (saliency - 50) * 3.5e306  # -1.75e308 .. 1.72e308
    with np.errstate(over="ignore"):
        assert not np.isfinite(huge.max() - huge.min())
    b = quantile_seeds(huge)
    np.testing.assert_array_equal(a.foreground, b.foreground)
    np.testing.assert_array_equal(a.background, b.background)
    assert b.foreground_threshold == pytest.approx(44.05 * 3.5e306)
    assert b.background_threshold == pytest.approx(-20.3 * 3.5e306)
    two = np.full((10, 10), -1e308)
    two[0, :5] = 1e308
    seeds = quantile_seeds(two)
    assert seeds.foreground.sum() == 5 and seeds.foreground[0, :5].all()
    assert not (seeds.foreground & seeds.background).any()


def test_ties_at_the_background_threshold_fall_back_to_the_tied_pixels():
    # Half of the map is exactly zero, so nothing is strictly below the 30% quantile (0).
    saliency = np.concatenate([np.zeros(50), np.arange(1, 51, dtype=float)]).reshape(10, 10)
    seeds = quantile_seeds(saliency)
    np.testing.assert_array_equal(seeds.background, saliency == 0)
    np.testing.assert_array_equal(np.sort(saliency[seeds.foreground]), [46, 47, 48, 49, 50])


def test_ties_at_the_top_fall_back_to_the_maximum():
    # 10% of the pixels share the maximum, so nothing is strictly above the 95% quantile.
    saliency = np.concatenate([np.arange(90, dtype=float), np.full(10, 500.0)]).reshape(10, 10)
    seeds = quantile_seeds(saliency)
    np.testing.assert_array_equal(seeds.foreground, saliency == 500)
    assert seeds.background.sum() == 30


def test_seeds_are_never_empty_and_never_overlap_on_tied_maps():
    rng = np.random.default_rng(2)
    for _ in range(50):
        saliency = rng.integers(0, rng.integers(2, 5), size=(rng.integers(1, 6), rng.integers(2, 6))).astype(float)
        if saliency.min() == saliency.max():
            continue
        seeds = quantile_seeds(saliency)
        assert seeds.foreground.any() and seeds.background.any()
        assert not (seeds.foreground & seeds.background).any()
        assert saliency[seeds.foreground].min() > saliency[seeds.background].max()


@pytest.mark.parametrize("saliency", [np.zeros((8, 8)), np.full((5, 7), 3.5)], ids=["all-zero", "constant"])
def test_a_constant_map_is_a_clear_error(saliency):
    with pytest.raises(ValueError, match="saliency is constant"):
        quantile_seeds(saliency)


@pytest.mark.parametrize(
    "saliency, message",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "saliency contains 1 NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "saliency contains 1 NaN or infinite"),
        (np.zeros((2, 3, 4)), r"saliency must have shape \[H, W\]"),
        (np.zeros(5), r"saliency must have shape \[H, W\]"),
        (np.ones((1, 1)), "saliency must have at least 2 pixels"),
        (np.array([["a", "b"]]), "saliency must be a real-valued"),
    ],
)
def test_bad_maps_raise_naming_saliency(saliency, message):
    with pytest.raises(ValueError, match=message):
        quantile_seeds(saliency)


@pytest.mark.parametrize("fg, bg", [(0.3, 0.95), (1.0, 0.3), (0.95, 0.0), (0.5, 0.5)])
def test_bad_quantiles_raise(fg, bg):
    with pytest.raises(ValueError, match="background_quantile < foreground_quantile"):
        quantile_seeds(_permuted_ramp(), fg, bg)

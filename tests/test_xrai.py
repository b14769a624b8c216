"""XRAI: the greedy region ranking against a deliberately simple loop, its invariants, the regions, the method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import attribution as A
from saliency_jax.evaluation.region_maps import xrai
from saliency_jax.localisation.regions import felzenszwalb_regions, rank_regions


def _simple_ranking(attribution, regions, min_new_pixels, area_fraction):
    """The algorithm as described: each step recomputes every region's uncovered pixels and their mean."""
    out = np.full(attribution.shape, -np.inf)
    covered = np.zeros(attribution.shape, bool)
    remaining = list(range(len(regions)))
    steps = []
    while covered.mean() <= area_fraction:
        best, best_gain = None, -np.inf
        for i in list(remaining):
            new = regions[i] & ~covered
            if new.sum() < min_new_pixels:
                remaining.remove(i)
                continue
            gain = attribution[new].mean()
            if gain > best_gain:
                best, best_gain = i, gain
        if not remaining:
            break
        new = regions[best] & ~covered
        out[new] = best_gain
        steps.append((best_gain, new))
        covered |= regions[best]
        remaining.remove(best)
    rest = out == -np.inf
    if rest.any():
        out[rest] = attribution[rest].mean()
    ranks = np.zeros(attribution.shape, int)
    for rank, (_, new) in enumerate(sorted(steps, key=lambda s: -s[0]), start=1):
        ranks[new] = rank
    ranks[rest] = len(steps) + 1
    return out, ranks


def _random_regions(rng, count, shape):
    """Overlapping rectangles of many sizes, some too small to be kept."""
    regions = np.zeros((count,) + shape, bool)
    for r in regions:
        top, left = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        r[top: top + rng.integers(2, shape[0]), left: left + rng.integers(2, shape[1])] = True
    return regions


@pytest.mark.parametrize("seed, min_new_pixels, area_fraction", [(0, 50, 1.0), (1, 10, 1.0), (2, 30, 0.4), (3, 1, 1.0)])
def test_ranking_equals_the_simple_loop(seed, min_new_pixels, area_fraction):
    rng = np.random.default_rng(seed)
    attribution = rng.normal(size=(40, 50))
    regions = _random_regions(rng, 60, attribution.shape)
    got = rank_regions(attribution, regions, min_new_pixels=min_new_pixels, area_fraction=area_fraction)
    want_map, want_ranks = _simple_ranking(attribution, regions, min_new_pixels, area_fraction)
    np.testing.assert_allclose(got.saliency, want_map, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got.ranks, want_ranks)
    # The attribution is redistributed, not created: the map sums to the attribution's sum.
    assert got.saliency.sum() == pytest.approx(attribution.sum(), rel=1e-9, abs=1e-9)


def test_ranking_near_float64_s_limit_is_the_ranking_scaled():
    """Values of 1e308 once summed to inf (and NaN gains); the ranking is that of the values / 1e300."""
    rng = np.random.default_rng(4)
    attribution = rng.normal(size=(20, 24))
    regions = _random_regions(rng, 30, attribution.shape)
    small = rank_regions(attribution, regions, min_new_pixels=5)
    for factor in (1e300, 2.0**-1000):
        big = rank_regions(attribution * factor, regions, min_new_pixels=5)
        np.testing.assert_array_equal(big.ranks, small.ranks)
        np.testing.assert_allclose(big.saliency, small.saliency * factor, rtol=1e-12)
    assert np.isfinite(rank_regions(np.full((4, 4), 1.7e308), regions[:3, :4, :4], min_new_pixels=1).saliency).all()
    # the segmentation depends on the colours' order alone: +-1.7e308 as 0 and 1
    colours = rng.random((20, 24, 3)) > 0.5
    huge = felzenszwalb_regions(np.where(colours, 1.7e308, -1.7e308))
    plain = felzenszwalb_regions(colours.astype(float))
    assert len(huge) == len(plain) and all((a == b).all() for a, b in zip(huge, plain))


def test_the_region_holding_the_attribution_ranks_first():
    attribution = np.zeros((30, 30))
    attribution[5:15, 10:20] = 1.0
    regions = np.zeros((3, 30, 30), bool)
    regions[0, :, :15] = True
    regions[1, 5:15, 10:20] = True
    regions[2, 15:] = True
    ranked = rank_regions(attribution, regions, min_new_pixels=1)
    assert (ranked.ranks[5:15, 10:20] == 1).all()
    assert ranked.saliency[5:15, 10:20].min() == 1.0 and ranked.saliency.max() == 1.0


def test_felzenszwalb_regions_follow_the_image():
    image = np.zeros((60, 80, 3))
    image[:, 40:] = [255, 0, 0]
    regions = felzenszwalb_regions(image, scales=(50,), sigma=0.0, work_size=None, dilation_radius=0, min_size=20)
    halves = {(int(r[:, :40].sum()), int(r[:, 40:].sum())) for r in regions}
    assert halves == {(60 * 40, 0), (0, 60 * 40)}
    grown = felzenszwalb_regions(image, scales=(50,), sigma=0.0, work_size=None, dilation_radius=3, min_size=20)
    assert grown.shape == regions.shape and (grown >= regions).all() and grown.sum() > regions.sum()
    from skimage.morphology import dilation, disk

    for region, big in zip(regions, grown):  # grown within a box, as over the whole image
        np.testing.assert_array_equal(big, dilation(region, disk(3)))
    # Every scale's segments cover the image (here resized to the working size and back).
    many = felzenszwalb_regions(np.random.default_rng(0).uniform(0, 255, (50, 70, 3)), scales=(50, 500))
    assert many.dtype == bool and many.shape[1:] == (50, 70) and many.any(axis=0).all()


def test_xrai_of_given_attributions_is_the_ranking_of_their_largest_channel(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = jax.random.uniform(getkey(), (2, 8, 8, 3), maxval=255.0)
    attributions = np.asarray(jax.random.normal(getkey(), (2, 8, 8, 3)))
    regions = _random_regions(np.random.default_rng(4), 12, (8, 8))
    got = xrai(logits_fn, params, images, attributions=attributions, regions=regions, min_new_pixels=2)
    for b in range(2):
        want = rank_regions(attributions[b].max(axis=-1), regions, min_new_pixels=2).saliency
        np.testing.assert_allclose(got[b], want, rtol=1e-6)


def test_xrai_default_attribution_is_ig_from_the_darkest_and_brightest_value(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = jax.random.uniform(getkey(), (2, 8, 8, 3), minval=20.0, maxval=200.0)
    classes = jnp.array([1, 3])
    regions = _random_regions(np.random.default_rng(5), 10, (8, 8))
    got = xrai(logits_fn, params, images, classes, steps=6, regions=regions, min_new_pixels=2)
    ig = sum(A.integrated_gradients(logits_fn, params, images, classes, steps=6,
                                    baseline=extreme(images, axis=(1, 2, 3), keepdims=True) * jnp.ones_like(images))
             for extreme in (jnp.min, jnp.max)) / 2
    for b in range(2):
        want = rank_regions(np.asarray(ig[b]).max(axis=-1), regions, min_new_pixels=2).saliency
        np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-7)
    class Unhashable:  # a model that cannot be a static argument of jit
        __hash__ = None

        def __call__(self, p, x):
            return logits_fn(p, x)

    np.testing.assert_allclose(xrai(Unhashable(), params, images, classes, steps=6, regions=regions,
                                    min_new_pixels=2), got, rtol=1e-6)
    top1 = jnp.argmax(logits_fn(params, images), axis=-1)
    np.testing.assert_allclose(xrai(logits_fn, params, images, steps=6, regions=regions, min_new_pixels=2),
                               xrai(logits_fn, params, images, top1, steps=6, regions=regions, min_new_pixels=2))


@pytest.mark.parametrize("kwargs, match", [
    ({"classes": 5}, "classes"),
    ({"classes": jnp.array([0, 1, 2])}, "classes"),
    ({"steps": 1}, "steps"),
    ({"rule": "guidedd"}, "rule"),
    ({"attributions": np.zeros((2, 8, 8))[..., :4]}, "attributions"),
    ({"attributions": np.full((2, 8, 8), np.nan)}, "attributions"),
    # once all-inf maps (past float32), a dropped imaginary part, numpy's conversion error
    ({"attributions": np.full((2, 8, 8), 1e300)}, "attributions must lie within float32's range"),
    ({"attributions": np.ones((2, 8, 8), np.complex64)}, "attributions must be real numbers"),
    ({"attributions": np.full((2, 8, 8), "a")}, "attributions must be real numbers"),
    ({"regions": np.ones((3, 8, 7), bool)}, "regions"),
    ({"regions": np.ones((3, 8, 8))}, "regions"),
    ({"regions": [np.ones((3, 8, 8), bool)]}, "regions"),
    ({"min_new_pixels": 0}, "min_new_pixels"),
    ({"area_fraction": 0.0}, "area_fraction"),
    ({"area_fraction": 1.5}, "area_fraction"),
])
def test_bad_arguments_name_the_argument(tiny_cnn, kwargs, match):
    logits_fn, params = tiny_cnn
    images = jnp.full((2, 8, 8, 3), 100.0).at[:, :4].set(0.0)
    settings = {"steps": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        xrai(logits_fn, params, images, **settings)
    with pytest.raises(ValueError, match="images"):
        xrai(logits_fn, params, images.at[0, 0, 0, 0].set(jnp.nan), steps=3)

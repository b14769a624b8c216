"""Paper mode is the paper (§3.2), checked against a deliberately simple implementation.

The reference below is written from the paper's description, not from the
package: the pixels above the 95% and below the 30% quantile of the map
estimate one Gaussian colour model each (mean and covariance by numpy; one
component makes the fit exact, with no random initialisation to match), a
contrast-sensitive Potts term joins 8-neighbours, no pixel is fixed, and the
minimum-energy labelling is found by exhaustive search (tiny images) or by a
networkx minimum cut; the largest 8-connected foreground component gives the box.
"""

import itertools

import networkx as nx
import numpy as np
import pytest
from scipy import ndimage, stats

from saliency_jax.localisation import GraphCutConfig, localise, localise_photo, quantile_seeds

GAMMA = 50.0
REG = 1e-4
PAPER_ONE_GAUSSIAN = GraphCutConfig(num_components=1, max_gmm_samples=0)


def _reference_energy_terms(image, saliency):
    """Unary costs ``[H, W]`` x 2 and the undirected edges ``(p, q, w)`` of the paper's energy."""
    height, width = saliency.shape
    flat = np.sort(saliency.ravel())
    high, low = np.quantile(flat, 0.95), np.quantile(flat, 0.30)
    fg_seeds, bg_seeds = saliency > high, saliency < low
    colours = image.reshape(-1, 3).astype(np.float64) / 255.0

    def neg_log_gaussian(seed_mask):
        x = colours[seed_mask.ravel()]
        mean = x.mean(axis=0)
        cov = np.cov(x, rowvar=False, bias=True) + REG * np.eye(3)
        return -stats.multivariate_normal(mean, cov).logpdf(colours).reshape(height, width)

    fg_cost, bg_cost = neg_log_gaussian(fg_seeds), neg_log_gaussian(bg_seeds)
    pairs = []
    for y in range(height):
        for x in range(width):
            for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    diff = image[y, x].astype(float) - image[y + dy, x + dx].astype(float)
                    pairs.append((y * width + x, (y + dy) * width + x + dx, float(diff @ diff), np.hypot(dy, dx)))
    beta = 1.0 / (2.0 * np.mean([p[2] for p in pairs]))
    edges = [(p, q, GAMMA / dist * np.exp(-beta * d2)) for p, q, d2, dist in pairs]
    return fg_cost, bg_cost, edges


def _box_of_largest_component(labels):
    components, count = ndimage.label(labels, structure=np.ones((3, 3)))
    sizes = [(components == k).sum() for k in range(1, count + 1)]
    mask = components == 1 + int(np.argmax(sizes))
    ys, xs = np.nonzero(mask)
    return mask, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def _exhaustive(image, saliency):
    fg_cost, bg_cost, edges = _reference_energy_terms(image, saliency)
    shape = saliency.shape

    def energy(labels):
        flat = labels.ravel()
        return np.where(flat, fg_cost.ravel(), bg_cost.ravel()).sum() + sum(w for p, q, w in edges if flat[p] != flat[q])

    best = min(
        (np.array(bits, bool).reshape(shape) for bits in itertools.product([False, True], repeat=saliency.size)),
        key=energy,
    )
    return best, energy


def _networkx_cut(image, saliency):
    fg_cost, bg_cost, edges = _reference_energy_terms(image, saliency)
    graph = nx.DiGraph()
    for p, (f, b) in enumerate(zip(fg_cost.ravel(), bg_cost.ravel())):
        # Cutting s->p puts p on the sink (background) side and pays its background cost.
        shift = min(f, b)
        graph.add_edge("s", p, capacity=b - shift)
        graph.add_edge(p, "t", capacity=f - shift)
    for p, q, w in edges:
        graph.add_edge(p, q, capacity=w)
        graph.add_edge(q, p, capacity=w)
    _, (source_side, _) = nx.minimum_cut(graph, "s", "t", flow_func=nx.algorithms.flow.edmonds_karp)
    labels = np.zeros(saliency.size, bool)
    labels[[p for p in source_side if p != "s"]] = True
    return labels.reshape(saliency.shape)


def _two_colour_scene(rng, size, obj_slice):
    image = rng.normal(0, 15, (size, size, 3)) + np.array([70, 140, 90])
    obj = np.zeros((size, size), bool)
    obj[obj_slice] = True
    image[obj] = rng.normal(0, 15, (obj.sum(), 3)) + np.array([200, 70, 60])
    image = np.clip(image, 0, 255).round()
    saliency = np.abs(rng.normal(size=(size, size))) * (0.3 + 2.0 * obj)
    return image.astype(np.uint8), saliency


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paper_mode_is_the_exhaustive_minimum_on_tiny_images(seed):
    rng = np.random.default_rng(seed)
    image, saliency = _two_colour_scene(rng, 4, (slice(1, 3), slice(1, 4)))
    image, saliency = image[:3], saliency[:3]  # 3x4: 4096 labellings
    best, energy = _exhaustive(image, saliency)
    found = localise(image, saliency, PAPER_ONE_GAUSSIAN)
    # The same energy (ties between labellings are allowed, nothing better is).
    assert energy(found.segmentation) == pytest.approx(energy(best), rel=1e-9, abs=1e-9)
    if best.any():
        mask, box = _box_of_largest_component(found.segmentation)
        np.testing.assert_array_equal(found.mask, mask)
        assert found.box.tolist() == box


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_paper_mode_agrees_with_a_networkx_min_cut(seed):
    rng = np.random.default_rng(10 + seed)
    image, saliency = _two_colour_scene(rng, 16, (slice(3, 12), slice(4, 14)))
    # A second, smaller blob of the object's colour: the largest component must drop it.
    image[13:16, 0:3] = [200, 70, 60]
    labels = _networkx_cut(image, saliency)
    found = localise(image, saliency, PAPER_ONE_GAUSSIAN)
    np.testing.assert_array_equal(found.segmentation, labels)
    if not labels.any():
        # At this tiny scale the smoothness term can outweigh the 13-pixel foreground
        # model: the cut is empty and the box falls back to the foreground seeds.
        mask, box = _box_of_largest_component(found.seeds.foreground)
        np.testing.assert_array_equal(found.mask, mask)
        assert found.box.tolist() == box
        return
    mask, box = _box_of_largest_component(labels)
    np.testing.assert_array_equal(found.mask, mask)
    assert found.box.tolist() == box
    assert labels[13:16, 0:3].all() and not found.mask[13:16, 0:3].any()


def test_seeds_are_not_hard_in_paper_mode():
    # A foreground seed of background colour, far from the object, is relabelled;
    # a background seed of object colour inside the object joins it.
    rng = np.random.default_rng(3)
    image, saliency = _two_colour_scene(rng, 24, (slice(6, 18), slice(6, 18)))
    saliency[1, 1] = saliency.max() * 10
    saliency[10, 10] = -1.0
    found = localise(image, saliency)
    assert found.seeds.foreground[1, 1] and found.seeds.background[10, 10]
    assert not found.segmentation[1, 1]
    assert found.segmentation[10, 10]
    hard = localise(image, saliency, GraphCutConfig(hard_seeds="both"))
    assert hard.segmentation[1, 1] and not hard.segmentation[10, 10]


def test_a_map_with_many_ties_still_seeds_and_localises():
    # A ReLU'd Grad-CAM-like map: zero on most pixels, a smooth bump on the object.
    rng = np.random.default_rng(4)
    image, _ = _two_colour_scene(rng, 30, (slice(8, 22), slice(8, 22)))
    yy, xx = np.mgrid[:30, :30]
    saliency = np.maximum(0.0, 1.0 - np.maximum(np.abs(yy - 14.5), np.abs(xx - 14.5)) / 7.0)
    assert (saliency == 0).mean() > 0.75
    seeds = quantile_seeds(saliency)
    assert seeds.foreground.any() and seeds.background.any() and not (seeds.foreground & seeds.background).any()
    np.testing.assert_array_equal(seeds.background, saliency == 0)  # the level set at the 30% quantile
    found = localise(image, saliency)
    assert found.box.tolist() == [8, 8, 22, 22]
    # Two distinct values only: the tied level sets seed both models.
    two = (saliency > 0.5).astype(float)
    seeds = quantile_seeds(two)
    np.testing.assert_array_equal(seeds.foreground, two == 1)
    np.testing.assert_array_equal(seeds.background, two == 0)


@pytest.mark.parametrize("image, saliency", [
    (np.zeros((1, 1, 3), np.uint8), np.ones((1, 1))),
    (np.zeros((5, 5, 3), np.uint8), np.full((5, 5), 0.3)),
], ids=["1x1", "constant-map"])
def test_degenerate_inputs_raise_a_clear_error(image, saliency):
    with pytest.raises(ValueError, match="at least 2 pixels|saliency is constant"):
        localise(image, saliency)
    with pytest.raises(ValueError, match="at least 2 pixels|saliency is constant"):
        localise_photo(image, saliency)


def test_iterated_re_estimation_and_saliency_prior_change_only_the_energy():
    rng = np.random.default_rng(5)
    image, saliency = _two_colour_scene(rng, 24, (slice(5, 17), slice(6, 20)))
    paper = localise(image, saliency)
    # Re-estimating on a cut that already is the object converges to the same cut.
    again = localise(image, saliency, GraphCutConfig(iterations=4))
    np.testing.assert_array_equal(again.segmentation, paper.segmentation)
    # A dominant saliency prior with no pairwise term labels by the scaled map alone.
    prior = localise(image, saliency, GraphCutConfig(saliency_weight=1e6, pairwise_weight=0.0))
    scaled = (saliency - saliency.min()) / (saliency.max() - saliency.min())
    np.testing.assert_array_equal(prior.segmentation, scaled > 0.5)


def test_photo_resolution_boxes_are_in_the_inputs_pixels():
    rng = np.random.default_rng(6)
    size = 300
    obj = (slice(60, 200), slice(90, 260))
    image, _ = _two_colour_scene(rng, size, obj)
    image = image[:, :, :]
    truth = np.zeros((size, size), bool)
    truth[obj] = True
    # A coarse 50x50 map of the scene, as a model's map would be.
    small = np.asarray(truth.reshape(50, 6, 50, 6).mean(axis=(1, 3)))
    small = small + 0.2 * np.abs(rng.normal(size=small.shape))
    capped = localise_photo(image, small, GraphCutConfig(max_side=120))
    assert capped.mask.shape == (size, size) and capped.segmentation.shape == (size, size)
    assert np.abs(capped.box - np.array([90, 60, 260, 200])).max() <= 3  # 2.5 photo pixels per working pixel
    full = localise_photo(image, small, GraphCutConfig(max_side=0))
    assert np.abs(full.box - np.array([90, 60, 260, 200])).max() <= 1
    x0, y0, x1, y1 = capped.box
    assert capped.mask[y0:y1, x0:x1].sum() == capped.mask.sum()
    # Non-square photos: the box stays in the photo's own coordinates.
    wide = np.concatenate([image, image[:, :100]], axis=1)
    wide_map = np.concatenate([truth, np.zeros((size, 100), bool)], axis=1) + 0.1 * rng.random((size, 400))
    found = localise_photo(wide, wide_map[::4, ::4], GraphCutConfig(max_side=200))
    assert found.mask.shape == (300, 400)
    assert np.abs(found.box - np.array([90, 60, 260, 200])).max() <= 3

"""KernelSHAP against Shapley values computed by enumerating every coalition, and its invariants."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import linear_logits_fn
from saliency_jax import attribution as A
from saliency_jax.attribution.shapley import coalitions, constrained_fit, grid_segments


def _tempered(tiny_cnn):
    logits_fn, params = tiny_cnn
    return (lambda p, x: 0.02 * logits_fn(p, x)), params


def _value(logits_fn, params, image, segments, kept, c):
    keep = np.isin(segments, list(kept))
    masked = np.where(keep[..., None], np.asarray(image), 0.0).astype(np.float32)
    return float(logits_fn(params, jnp.asarray(masked)[None])[0, c])


def _shapley_by_enumeration(logits_fn, params, image, segments, c):
    """phi_j = sum over coalitions S without j of |S|! (M - |S| - 1)! / M! (v(S + j) - v(S))."""
    count = int(segments.max()) + 1
    values = {}
    for r in range(count + 1):
        for kept in itertools.combinations(range(count), r):
            values[kept] = _value(logits_fn, params, image, segments, kept, c)
    phi = np.zeros(count)
    for j in range(count):
        others = [i for i in range(count) if i != j]
        for r in range(count):
            for kept in itertools.combinations(others, r):
                weight = math.factorial(r) * math.factorial(count - r - 1) / math.factorial(count)
                phi[j] += weight * (values[tuple(sorted(kept + (j,)))] - values[kept])
    return phi, values


def _segment_values(attributions, segments):
    attributions = np.asarray(attributions)
    return np.array([attributions[segments == j][0, 0] for j in range(int(segments.max()) + 1)])


def test_the_fit_on_kernel_weighted_coalitions_is_the_shapley_values(tiny_cnn):
    # Every coalition of 4 segments, repeated in proportion to the Shapley kernel (sizes 1 and 3: 1/4 each,
    # size 2: 1/8 each): the constrained regression is then exactly the Shapley values.
    logits_fn, params = _tempered(tiny_cnn)
    segments = grid_segments(8, 8, 2)
    image = jax.random.uniform(jax.random.key(5), (8, 8, 3), minval=0.0, maxval=255.0)
    exact, values = _shapley_by_enumeration(logits_fn, params, image, segments, 2)
    rows = [np.ones(4, bool), np.zeros(4, bool)]
    scores = [values[(0, 1, 2, 3)], values[()]]
    for size, repeat in ((1, 2), (2, 1), (3, 2)):
        for kept in itertools.combinations(range(4), size):
            for _ in range(repeat):
                rows.append(np.isin(np.arange(4), kept))
                scores.append(values[kept])
    got = constrained_fit(jnp.asarray(np.stack(rows)), jnp.asarray(scores, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), exact, rtol=1e-4, atol=1e-5 * np.abs(exact).max())


def test_many_draws_approach_the_shapley_values_and_always_sum_to_the_gain(tiny_cnn):
    logits_fn, params = _tempered(tiny_cnn)
    segments = grid_segments(8, 8, (2, 3))  # 6 segments
    images = jax.random.uniform(jax.random.key(6), (2, 8, 8, 3), minval=0.0, maxval=255.0)
    classes = jnp.array([0, 3])
    got = A.kernel_shap(logits_fn, params, images, classes, key=jax.random.key(1), segments=segments,
                        num_samples=6000, batch_size=512)
    few = A.kernel_shap(logits_fn, params, images, classes, key=jax.random.key(1), segments=segments, num_samples=7)
    gain = logits_fn(params, images)[jnp.arange(2), classes] - logits_fn(params, jnp.zeros_like(images))[
        jnp.arange(2), classes]
    for b in range(2):
        exact, _ = _shapley_by_enumeration(logits_fn, params, images[b], segments, int(classes[b]))
        estimate = _segment_values(got[b], segments)
        assert np.abs(estimate - exact).max() < 0.05 * np.abs(exact).max(), (estimate, exact)
        # Efficiency holds exactly, with many draws or the fewest.
        for values in (estimate, _segment_values(few[b], segments)):
            np.testing.assert_allclose(values.sum(), float(gain[b]), rtol=1e-4, atol=1e-5)


def test_on_a_linear_model_each_segment_gets_its_own_contribution(linear_model):
    _, params = linear_model
    rng = np.random.default_rng(2)
    images = jnp.asarray(rng.uniform(0, 255, size=(2, 6, 5, 3)), jnp.float32)
    baseline = jnp.asarray(rng.uniform(0, 255, size=(6, 5, 3)), jnp.float32)
    segments = grid_segments(6, 5, (3, 2))
    classes = jnp.array([1, 2])
    got = A.kernel_shap(linear_logits_fn, params, images, classes, key=jax.random.key(0), segments=segments,
                        num_samples=20, baseline=baseline)
    contribution = params["w"][:, classes].T.reshape(2, 6, 5, 3) * (images - baseline[None])
    for b in range(2):
        want = np.array([float(contribution[b][segments == j].sum()) for j in range(6)])
        np.testing.assert_allclose(_segment_values(got[b], segments), want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
        # Every pixel of a segment, in every channel, holds the segment's value.
        for j in range(6):
            assert np.all(np.asarray(got[b])[segments == j] == _segment_values(got[b], segments)[j])


def test_coalitions_follow_the_shapley_kernel():
    count, draws = 6, 30000
    z = np.asarray(coalitions(jax.random.key(3), jnp.arange(draws, dtype=jnp.int32), count))
    assert z[0].all() and not z[1].any()
    sizes = z[2:].sum(axis=1)
    kernel = np.array([(count - 1) / (k * (count - k)) for k in range(1, count)])
    expected = kernel / kernel.sum()
    observed = np.bincount(sizes, minlength=count + 1)[1:count] / sizes.size
    np.testing.assert_allclose(observed, expected, atol=0.01)
    assert sizes.min() >= 1 and sizes.max() <= count - 1
    # Within a size, every segment is as likely as any other.
    np.testing.assert_allclose(z[2:].mean(axis=0), 0.5, atol=0.02)


def test_grid_segments_are_even_row_major_cells():
    segments = grid_segments(7, 5, (2, 3))
    assert segments.dtype == np.int32 and segments.shape == (7, 5)
    assert sorted(np.unique(segments)) == list(range(6))
    assert segments[0, 0] == 0 and segments[0, -1] == 2 and segments[-1, 0] == 3 and segments[-1, -1] == 5
    # 7 rows in 2 bands and 5 columns in 3: band sizes differ by one at most.
    rows = np.bincount(segments[:, 0] // 3)
    cols = np.bincount(segments[0, :])
    assert rows.sum() == 7 and rows.max() - rows.min() <= 1
    assert cols.sum() == 5 and cols.max() - cols.min() <= 1
    np.testing.assert_array_equal(grid_segments(224, 224, 8), np.repeat(np.repeat(np.arange(64).reshape(8, 8), 28, 0),
                                                                      28, 1))


def test_per_image_segments_and_a_jitted_call(tiny_cnn):
    logits_fn, params = _tempered(tiny_cnn)
    images = jax.random.uniform(jax.random.key(7), (2, 8, 8, 3), minval=0.0, maxval=255.0)
    both = np.stack([grid_segments(8, 8, 2), grid_segments(8, 8, 2).T])
    settings = dict(key=jax.random.key(2), num_samples=16)
    together = A.kernel_shap(logits_fn, params, images, jnp.array([1, 2]), segments=both, **settings)
    for b in range(2):
        alone = A.kernel_shap(logits_fn, params, images[b:b + 1], jnp.array([1, 2])[b:b + 1], segments=both[b],
                              **settings)
        np.testing.assert_allclose(np.asarray(together[b]), np.asarray(alone[0]), rtol=1e-4, atol=1e-6)
    jitted = jax.jit(functools.partial(A.kernel_shap, logits_fn, segments=both, num_samples=16))
    np.testing.assert_allclose(np.asarray(jitted(params, images, jnp.array([1, 2]), key=jax.random.key(2))),
                               np.asarray(together), rtol=1e-4, atol=1e-6)


def test_images_with_different_segment_counts_get_their_own_results(tiny_cnn):
    # Each image's M is its own: a 4-segment image beside an 8-segment one gets what it gets alone
    # (with the batch's M it would share its gain with 4 labels that cover no pixel).
    logits_fn, params = _tempered(tiny_cnn)
    images = jax.random.uniform(jax.random.key(3), (3, 8, 8, 3), minval=0.0, maxval=255.0)
    mixed = np.stack([grid_segments(8, 8, 2), grid_segments(8, 8, (2, 4)), grid_segments(8, 8, 2).T])
    classes = jnp.array([0, 1, 2])
    settings = dict(key=jax.random.key(5), num_samples=40, baseline=0.1)
    together = np.asarray(A.kernel_shap(logits_fn, params, images, classes, segments=mixed, **settings))
    for b in range(3):
        alone = A.kernel_shap(logits_fn, params, images[b:b + 1], classes[b:b + 1], segments=mixed[b], **settings)
        np.testing.assert_allclose(together[b], np.asarray(alone[0]), rtol=1e-4, atol=1e-6)
        count = int(mixed[b].max()) + 1
        values = [together[b][mixed[b] == j][0, 0] for j in range(count)]
        gain = (logits_fn(params, images[b:b + 1])[0, b] - logits_fn(params, jnp.full((1, 8, 8, 3), 0.1))[0, b])
        np.testing.assert_allclose(sum(values), float(gain), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"segments": np.zeros((8, 7), np.int32)}, "segments must have shape"),
    ({"segments": np.zeros((8, 8), np.float32)}, "integer labels"),
    ({"segments": np.full((8, 8), -1)}, r"labels in \[0, 4096\)"),
    ({"segments": np.zeros((8, 8), np.int32)}, "at least 2 labels"),
    ({"segments": grid_segments(8, 8, 2), "num_samples": 4}, "num_samples"),
    ({"num_samples": 64}, "num_samples"),  # the default grid on 8 x 8: 64 segments, 65 draws at least
    ({"num_samples": 100_001}, "num_samples"),
    ({"segments": np.arange(64).reshape(8, 8) * 60, "num_samples": 9000}, r"<= 8874"),  # 3781 labels: 2^25 / 3781 draws
    ({"key": None}, "key"),
])
def test_bad_arguments_name_the_argument(tiny_cnn, kwargs, match):
    logits_fn, params = _tempered(tiny_cnn)
    images = jnp.ones((1, 8, 8, 3))
    with pytest.raises(ValueError, match=match):
        A.kernel_shap(logits_fn, params, images, 0, **{"key": jax.random.key(0), **kwargs})


def test_traced_segments_are_refused(tiny_cnn):
    logits_fn, params = _tempered(tiny_cnn)
    call = jax.jit(lambda s: A.kernel_shap(logits_fn, params, jnp.ones((1, 8, 8, 3)), 0, key=jax.random.key(0),
                                           segments=s, num_samples=8))
    with pytest.raises(ValueError, match="segments must be concrete"):
        call(grid_segments(8, 8, 2))


def test_grid_segments_refuses_more_cells_than_pixels():
    with pytest.raises(ValueError, match="cells"):
        grid_segments(4, 4, 5)

"""Guided Integrated Gradients against a plain loop written from the algorithm, and its invariants."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import linear_logits_fn
from saliency_jax import attribution as A
from saliency_jax.attribution.guided_ig import nth_smallest, round_limit


def _tempered(tiny_cnn):
    logits_fn, params = tiny_cnn
    return (lambda p, x: 0.02 * logits_fn(p, x)), params


def _gradient_at(logits_fn, params, point, c):
    """dS_c/dI at one point, float64."""
    g = jax.grad(lambda z: logits_fn(params, z[None])[0, c])(jnp.asarray(point, jnp.float32))
    return np.asarray(g, np.float64)


def _simple_guided_ig(logits_fn, params, image, baseline, c, steps, fraction, max_dist):
    """One image, float64 numpy, the steps and rounds as plain loops; also returns the most rounds of a step."""
    image, baseline = np.asarray(image, np.float64), np.asarray(baseline, np.float64)
    point, credit = baseline.copy(), np.zeros_like(image)
    total = np.abs(image - baseline).sum()
    most_rounds = 0
    for k in range(1, steps + 1):
        grads = _gradient_at(logits_fn, params, point, c)
        alpha = k / steps
        low, high = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        near, far = baseline + low * (image - baseline), baseline + high * (image - baseline)
        target = total * (1 - alpha)
        marked = np.abs(grads)
        rounds = 0
        while True:
            before = point.copy()
            for i in np.ndindex(image.shape):  # lagging features catch up
                if image[i] != baseline[i] and (point[i] - baseline[i]) / (image[i] - baseline[i]) < low:
                    point[i] = near[i]
            distance = np.abs(point - image).sum()
            if abs(distance - target) <= 1e-6 * total:
                credit += (point - before) * grads
                break
            rounds += 1
            marked[point == far] = np.inf
            threshold = np.sort(marked.ravel())[int(np.floor(fraction * (marked.size - 1)))]
            chosen = (marked <= threshold) & np.isfinite(marked)
            room = np.abs(point - far)[chosen].sum()
            gamma = (distance - target) / room if room > 0 else np.inf
            if gamma > 1:
                point[chosen] = far[chosen]
            else:
                point[chosen] = point[chosen] + gamma * (far[chosen] - point[chosen])
            credit += (point - before) * grads
            if gamma <= 1:
                break
        most_rounds = max(most_rounds, rounds)
    return credit, most_rounds


@pytest.mark.parametrize("steps, fraction, max_dist, baseline", [
    (4, 0.25, 0.02, "black"),
    (6, 0.1, 0.1, "black"),
    (5, 1.0, 0.0, "black"),
    (5, 0.3, 0.05, "partial"),  # a baseline equal to the image in a quarter of the features
])
def test_guided_ig_equals_the_simple_loop(tiny_cnn, steps, fraction, max_dist, baseline):
    logits_fn, params = _tempered(tiny_cnn)
    rng = np.random.default_rng(steps)
    images = jnp.asarray(rng.uniform(0, 255, size=(2, 8, 8, 3)), jnp.float32)
    classes = jnp.array([0, 3])
    if baseline == "black":
        base = np.zeros((2, 8, 8, 3), np.float32)
    else:
        base = rng.uniform(0, 255, size=(2, 8, 8, 3)).astype(np.float32)
        same = rng.uniform(size=base.shape) < 0.25
        base[same] = np.asarray(images)[same]
    got = A.guided_integrated_gradients(logits_fn, params, images, classes, steps=steps, fraction=fraction,
                                        max_dist=max_dist, baseline=jnp.asarray(base), batch_size=1)
    for b in range(2):
        want, most_rounds = _simple_guided_ig(logits_fn, params, images[b], base[b], int(classes[b]), steps,
                                              fraction, max_dist)
        np.testing.assert_allclose(np.asarray(got[b]), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        assert np.abs(want).max() > 0
        # The rounds' cap never binds.
        assert most_rounds < round_limit(8 * 8 * 3, fraction)
        if baseline == "partial":
            assert np.all(np.asarray(got[b])[base[b] == np.asarray(images[b])] == 0)


@pytest.mark.parametrize("weights", ["random", "equal"])  # equal weights: every gradient ties
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_on_a_linear_model_it_is_weight_times_the_way(linear_model, weights, steps):
    _, params = linear_model
    if weights == "equal":
        params = {**params, "w": jnp.ones_like(params["w"])}
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.uniform(0, 255, size=(2, 6, 5, 3)), jnp.float32)
    baseline = jnp.asarray(rng.uniform(0, 255, size=(6, 5, 3)), jnp.float32)
    classes = jnp.array([1, 2])
    got = A.guided_integrated_gradients(linear_logits_fn, params, images, classes, steps=steps, baseline=baseline)
    want = params["w"][:, classes].T.reshape(2, 6, 5, 3) * (images - baseline[None])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


def test_with_no_room_to_stray_it_is_ig_by_left_riemann_sums(tiny_cnn):
    # max_dist = 0 keeps every feature on the straight line: the gradient at k / steps times the step.
    logits_fn, params = _tempered(tiny_cnn)
    images = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3), minval=0.0, maxval=255.0)
    classes = jnp.array([1, 4])
    steps = 16
    got = A.guided_integrated_gradients(logits_fn, params, images, classes, steps=steps, max_dist=0.0)
    grads = jax.vmap(lambda a: jax.vmap(lambda x, c: jax.grad(lambda z: logits_fn(params, z[None])[0, c])(a * x))(
        images, classes))(jnp.arange(steps) / steps)
    want = images * grads.mean(axis=0)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))
    # Completeness, as IG's, with many steps.
    many = A.guided_integrated_gradients(logits_fn, params, images, classes, steps=512, max_dist=0.0)
    drop = (logits_fn(params, images) - logits_fn(params, jnp.zeros_like(images)))[jnp.arange(2), classes]
    np.testing.assert_allclose(np.asarray(many.sum(axis=(1, 2, 3))), np.asarray(drop), rtol=0.02)


def test_the_path_differs_from_the_straight_line(tiny_cnn):
    # With room to stray, the attributions are not IG's (the method is not IG under another name).
    logits_fn, params = _tempered(tiny_cnn)
    images = jax.random.uniform(jax.random.key(4), (1, 8, 8, 3), minval=0.0, maxval=255.0)
    straight = A.guided_integrated_gradients(logits_fn, params, images, 2, steps=8, max_dist=0.0)
    guided = A.guided_integrated_gradients(logits_fn, params, images, 2, steps=8, max_dist=0.5)
    assert float(jnp.abs(guided - straight).max()) > 0.05 * float(jnp.abs(straight).max())


def test_an_image_equal_to_its_baseline_gets_nothing_and_returns(tiny_cnn):
    logits_fn, params = _tempered(tiny_cnn)
    images = jnp.full((2, 8, 8, 3), 90.0)
    got = jax.jit(functools.partial(A.guided_integrated_gradients, logits_fn, steps=4))(
        params, images, jnp.array([0, 1]), baseline=90.0)
    assert np.all(np.asarray(got) == 0)


def test_invalid_requests_under_jit_give_nan_and_return(tiny_cnn):
    logits_fn, params = _tempered(tiny_cnn)
    images = jax.random.uniform(jax.random.key(6), (3, 8, 8, 3), minval=0.0, maxval=255.0)
    images = images.at[1, 2, 2, 0].set(jnp.nan)
    jitted = jax.jit(functools.partial(A.guided_integrated_gradients, logits_fn, steps=3))
    got = np.asarray(jitted(params, images, jnp.array([0, 1, 5])))  # a NaN pixel; class 5 of 5
    assert np.isfinite(got[0]).all() and np.abs(got[0]).max() > 0
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all()


def test_round_limit_covers_every_fraction():
    # Each round sends at least floor(fraction (n - 1)) + 1 features to their end.
    assert round_limit(192, 0.25) == 6
    assert round_limit(150528, 0.25) == 6
    assert round_limit(10, 1.0) == 3
    assert round_limit(10, 1e-3) == 12


@pytest.mark.parametrize("seed", range(4))
def test_nth_smallest_is_the_sorted_value_with_excluded_entries_infinite(seed):
    rng = np.random.default_rng(seed)
    n = 300
    magnitude = np.abs(rng.normal(size=n) * 10.0 ** rng.integers(-30, 30, size=n)).astype(np.float32)
    magnitude[rng.uniform(size=n) < 0.2] = 0.0
    magnitude[:40] = magnitude[40]  # ties
    included = rng.uniform(size=n) < (0.5 if seed % 2 else 0.95)
    bits = jax.lax.bitcast_convert_type(jnp.asarray(magnitude), jnp.int32)
    free = np.where(included, magnitude, np.inf)
    for rank in (0, 1, 37, n // 2, int(included.sum()) - 1, int(included.sum()), n - 1):
        got = float(nth_smallest(jnp.asarray(magnitude), bits, jnp.asarray(included), rank))
        assert got == np.sort(free)[rank], rank
    assert float(nth_smallest(jnp.asarray(magnitude), bits, jnp.zeros(n, bool), 0)) == np.inf

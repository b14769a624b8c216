"""Deletion and insertion curves (Petsiuk et al., 2018) against a loop written here, and on a
constructed case whose faithful ranking is known."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from saliency_jax.evaluation import faithfulness as F


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _reference_curve(logits_fn, params, images, saliency, classes, steps, canvas, insert):
    """The curve by a plain loop: per image, per step, the first round(k HW / steps) pixels changed."""
    images, canvas = np.asarray(images, np.float64), np.asarray(canvas, np.float64)
    batch, height, width, _ = images.shape
    probabilities = np.zeros((batch, steps + 1))
    for b in range(batch):
        order = np.argsort(-np.asarray(saliency[b]).ravel(), kind="stable")
        for k in range(steps + 1):
            changed = np.zeros(height * width, bool)
            changed[order[: int(round(k * height * width / steps))]] = True
            changed = changed.reshape(height, width, 1)
            x = np.where(changed, images[b], canvas[b]) if insert else np.where(changed, canvas[b], images[b])
            logits = np.asarray(logits_fn(params, jnp.asarray(x[None], jnp.float32)), np.float64)
            probabilities[b, k] = _softmax(logits)[0, classes[b]]
    auc = np.trapezoid(probabilities, dx=1.0 / steps, axis=1)
    return probabilities, auc


@pytest.mark.parametrize("insert", [False, True])
@pytest.mark.parametrize("baseline", ["mean", 30.0])
def test_curve_equals_a_plain_loop(linear_model, getkey, insert, baseline):
    logits_fn, params = linear_model
    params = jax.tree.map(lambda p: p / 50.0, params)  # probabilities away from 0 and 1
    images = jax.random.uniform(getkey(), (2, 6, 5, 3), minval=0.0, maxval=255.0)
    saliency = jax.random.uniform(getkey(), (2, 6, 5))
    classes = np.array([1, 3])
    steps = 7  # 30 pixels in 7 steps: unequal, rounded shares
    curve_fn = F.insertion_curve if insert else F.deletion_curve
    curve = curve_fn(logits_fn, params, images, saliency, classes, steps=steps, baseline=baseline, batch_size=5)
    canvas = images.mean(axis=(1, 2), keepdims=True) * jnp.ones_like(images) if baseline == "mean" else (
        jnp.full(images.shape, baseline)
    )
    expected, auc = _reference_curve(logits_fn, params, images, saliency, classes, steps, canvas, insert)
    np.testing.assert_allclose(curve.probabilities, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(curve.auc, auc, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(curve.fractions, np.linspace(0, 1, steps + 1), atol=1e-7)


def test_blur_baseline_is_a_zero_padded_gaussian(getkey):
    images = jax.random.uniform(getkey(), (2, 9, 8, 3), minval=0.0, maxval=255.0)
    canvas = F.curve_baseline(images, "blur", blur_sigma=2.0)
    for image, ours in zip(np.asarray(images, np.float64), np.asarray(canvas)):
        np.testing.assert_allclose(
            ours, ndimage.gaussian_filter(image, [2.0, 2.0, 0], mode="constant"), rtol=1e-4, atol=1e-3
        )


def test_faithful_ranking_beats_its_reverse(linear_model, getkey):
    """A linear model's class score is sum_p W_p x_p: removing the pixels with the largest
    W_p (x_p - baseline) first lowers the probability fastest, and inserting them first raises it."""
    logits_fn, params = linear_model
    params = jax.tree.map(lambda p: p / 20.0, params)
    images = jax.random.uniform(getkey(), (3, 6, 5, 3), minval=0.0, maxval=255.0)
    classes = jnp.array([0, 2, 3])
    contribution = images * params["w"].T[classes].reshape(images.shape)  # zero baseline
    faithful = contribution.sum(-1)
    settings = dict(steps=10, baseline=0.0)
    deletion = functools.partial(F.deletion_curve, logits_fn, params, images, classes=classes, **settings)
    insertion = functools.partial(F.insertion_curve, logits_fn, params, images, classes=classes, **settings)
    assert (deletion(faithful).auc < deletion(-faithful).auc).all()
    assert (insertion(faithful).auc > insertion(-faithful).auc).all()
    # Endpoints: the clean image and the baseline.
    curve = deletion(faithful)
    probabilities = jax.nn.softmax(logits_fn(params, images))[jnp.arange(3), classes]
    np.testing.assert_allclose(curve.probabilities[:, 0], probabilities, rtol=1e-5)
    blank = jax.nn.softmax(logits_fn(params, jnp.zeros_like(images)))[jnp.arange(3), classes]
    np.testing.assert_allclose(curve.probabilities[:, -1], blank, rtol=1e-5)


def test_jit_and_chunking_do_not_change_the_curve(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = jax.random.uniform(getkey(), (3, 8, 8, 3), minval=0.0, maxval=255.0)
    saliency = jax.random.uniform(getkey(), (3, 8, 8))
    eager = F.deletion_curve(logits_fn, params, images, saliency, steps=5, batch_size=None)
    jitted = jax.jit(functools.partial(F.deletion_curve, logits_fn, steps=5, batch_size=4))(params, images, saliency)
    np.testing.assert_allclose(jitted.probabilities, eager.probabilities, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jitted.auc, eager.auc, rtol=1e-5, atol=1e-7)


def test_bad_arguments_name_the_argument(linear_model):
    logits_fn, params = linear_model
    images = jnp.ones((2, 6, 5, 3))
    saliency = jnp.ones((2, 6, 5))
    with pytest.raises(ValueError, match="saliency"):
        F.deletion_curve(logits_fn, params, images, jnp.ones((2, 6, 5, 3)))
    with pytest.raises(ValueError, match="steps"):
        F.deletion_curve(logits_fn, params, images, saliency, steps=0)
    with pytest.raises(ValueError, match="baseline"):
        F.insertion_curve(logits_fn, params, images, saliency, baseline="zeros")
    with pytest.raises(ValueError, match="baseline"):
        F.insertion_curve(logits_fn, params, images, saliency, baseline=jnp.zeros((6, 5, 1)))
    with pytest.raises(ValueError, match="blur_sigma"):
        F.insertion_curve(logits_fn, params, images, saliency, blur_sigma=0.0)
    with pytest.raises(ValueError, match="classes"):
        F.insertion_curve(logits_fn, params, images, saliency, classes=2.5)
    with pytest.raises(ValueError, match="batch_size"):
        F.insertion_curve(logits_fn, params, images, saliency, batch_size=0)


@pytest.mark.parametrize("batch_size", [None, 4, 6])
def test_both_curves_at_once_equal_each_curve_and_trace_the_model_once(tiny_cnn, getkey, batch_size):
    logits_fn, params = tiny_cnn
    images = jax.random.uniform(getkey(), (3, 8, 8, 3), minval=0.0, maxval=255.0)
    saliency = jax.random.uniform(getkey(), (3, 8, 8))
    classes = jnp.array([2, 0, 1])
    traces = []

    def counting(p, x):
        traces.append(x.shape)
        return logits_fn(p, x)

    both = jax.jit(functools.partial(F.deletion_and_insertion_curves, counting, steps=5, batch_size=batch_size))
    deletion, insertion = both(params, images, saliency, classes)
    # One trace of the model serves both curves (beside the one-image trace that counts the classes).
    assert len([shape for shape in traces if shape[0] > 1]) == 1, traces
    for curve, alone in ((deletion, F.deletion_curve), (insertion, F.insertion_curve)):
        expected = alone(logits_fn, params, images, saliency, classes, steps=5, batch_size=batch_size)
        np.testing.assert_allclose(curve.probabilities, expected.probabilities, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(curve.auc, expected.auc, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(curve.fractions, expected.fractions)
    # Deletion starts at the clean image and insertion ends there; each ends or starts at the blur.
    np.testing.assert_allclose(deletion.probabilities[:, 0], insertion.probabilities[:, -1], rtol=1e-5)
    np.testing.assert_allclose(deletion.probabilities[:, -1], insertion.probabilities[:, 0], rtol=1e-5)
    # Under jit a map with a NaN gets NaN curves, never plausible ones.
    bad = saliency.at[1, 2, 3].set(jnp.nan)
    deletion, insertion = both(params, images, bad, classes)
    for curve in (deletion, insertion):
        assert np.isnan(curve.auc[1]) and np.isfinite(np.delete(np.asarray(curve.auc), 1)).all()

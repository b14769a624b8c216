"""Class scores and top-k."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import saliency_jax as sj


def test_class_scores_are_unnormalised_logits(linear_model, getkey):
    logits_fn, params = linear_model
    images = jax.random.normal(getkey(), (3, 6, 5, 3))
    logits = logits_fn(params, images)
    np.testing.assert_allclose(sj.class_scores(logits_fn, params, images, jnp.array([2, 0, 1])),
                               logits[jnp.arange(3), jnp.array([2, 0, 1])], rtol=1e-6)
    np.testing.assert_allclose(sj.class_scores(logits_fn, params, images, 3), logits[:, 3], rtol=1e-6)


def test_top_k_orders_and_normalises(linear_model, getkey):
    logits_fn, params = linear_model
    images = jax.random.normal(getkey(), (2, 6, 5, 3))
    result = sj.top_k(logits_fn, params, images, k=4)
    assert result.classes.shape == (2, 4)
    assert bool(jnp.all(jnp.diff(result.scores, axis=1) <= 0))
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-5)  # k == K
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\]"):
        sj.top_k(logits_fn, params, images, k=5)

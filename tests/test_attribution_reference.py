"""Integrated Gradients, Grad-CAM and Grad-CAM++ on EfficientNet-Lite0 equal an independent
PyTorch implementation on the same weights (frozen by experiments/freeze_reference.py)."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import attribution as A

PATH = os.path.join(os.path.dirname(__file__), "data", "efficientnet_lite0_attribution_reference.npz")


@pytest.fixture(scope="module")
def reference():
    with np.load(PATH) as data:
        return {k: data[k] for k in data.files}


def _correlation(a, b):
    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


@pytest.mark.slow
def test_integrated_gradients_equal_pytorch(efficientnet, reference):
    images = jnp.asarray(reference["images"], jnp.float32)
    classes = jnp.asarray(reference["classes"])
    ig = jax.jit(
        functools.partial(A.integrated_gradients, efficientnet.logits_fn, steps=int(reference["ig_steps"]), batch_size=16)
    )(efficientnet.params, images, classes)
    ours = np.asarray(ig)
    for b, name in enumerate(reference["names"]):
        assert _correlation(ours[b], reference["ig_attributions"][b]) >= 0.99, name
    # The same sums: 16 steps leave a gap to S_c(x) - S_c(black) that both implementations share.
    np.testing.assert_allclose(ours.sum(axis=(1, 2, 3)), reference["ig_attribution_sums"], rtol=2e-3, atol=0.01)


@pytest.mark.slow
def test_gradcam_and_gradcam_plus_plus_equal_pytorch(efficientnet, reference):
    images = jnp.asarray(reference["images"], jnp.float32)
    classes = jnp.asarray(reference["classes"])
    layer = A.default_layer(efficientnet)
    assert layer == "head_activation"

    def both(params, images, classes):  # one compilation; the two share their forward and backward pass
        return tuple(
            method(efficientnet.logits_fn, params, images, classes, layer=layer)
            for method in (A.gradcam, A.gradcam_plus_plus)
        )

    maps = jax.jit(both)(efficientnet.params, images, classes)
    for ours, key in zip(maps, ("gradcam", "gradcam_plus_plus")):
        ours, expected = np.asarray(ours), reference[key]
        assert ours.shape == expected.shape == (3, 7, 7)
        for b, name in enumerate(reference["names"]):
            assert _correlation(ours[b], expected[b]) >= 0.99, (key, name)
        np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))

"""Equinox models: split into arrays and static parts, they are pure ``logits_fn(params, images)``.

``eqx.partition(model, eqx.is_array)`` gives the weights (the ``params`` pytree) and
the static rest; ``logits_fn`` recombines them with ``eqx.combine`` and ``vmap``s the
per-example Equinox model over the batch. Rectifiers written with
:func:`saliency_jax.backprop_rules.relu` follow the ``rule=`` of the saliency
functions, as in a Flax model.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import saliency_jax as sj
from saliency_jax.backprop_rules import relu


class EqxCNN(eqx.Module):
    """conv 3x3 (SAME) - relu - spatial mean - linear, on one ``[H, W, C]`` image."""

    conv: eqx.nn.Conv2d
    linear: eqx.nn.Linear

    def __init__(self, key, channels=3, features=4, classes=5):
        conv_key, linear_key = jax.random.split(key)
        self.conv = eqx.nn.Conv2d(channels, features, 3, padding=1, key=conv_key)
        self.linear = eqx.nn.Linear(features, classes, key=linear_key)

    def features(self, image):
        """The convolution's output before the rectifier, ``[features, H, W]``."""
        return self.conv(jnp.transpose(image, (2, 0, 1)))

    def __call__(self, image):
        return self.linear(jnp.mean(relu(self.features(image)), axis=(1, 2)))


class EqxLinear(eqx.Module):
    """A linear classifier on the flattened image: the gradient of class c is ``weight[c]``."""

    linear: eqx.nn.Linear

    def __init__(self, key, size, classes):
        self.linear = eqx.nn.Linear(size, classes, key=key)

    def __call__(self, image):
        return self.linear(image.reshape(-1))


def as_logits_fn(model):
    """``(logits_fn, params)`` of an Equinox model that takes one image."""
    params, static = eqx.partition(model, eqx.is_array)

    def logits_fn(params, images):
        return jax.vmap(eqx.combine(params, static))(images)

    return logits_fn, params


def _images(key, shape):
    return jax.random.uniform(key, shape, minval=0.0, maxval=1.0)


def test_linear_model_saliency_is_its_weight_under_jit(getkey):
    logits_fn, params = as_logits_fn(EqxLinear(getkey(), 6 * 5 * 3, 4))
    images = _images(getkey(), (3, 6, 5, 3))
    classes = jnp.array([0, 3, 1])
    maps = jax.jit(functools.partial(sj.saliency_map, logits_fn))(params, images, classes)
    weight = np.asarray(params.linear.weight)  # [classes, inputs]
    np.testing.assert_allclose(maps, np.abs(weight[np.asarray(classes)].reshape(3, 6, 5, 3)).max(-1), rtol=1e-6)
    # The default class is each image's top-1.
    top1 = np.argmax(logits_fn(params, images), axis=-1)
    result = jax.jit(functools.partial(sj.input_gradients, logits_fn))(params, images)
    np.testing.assert_array_equal(result.classes, top1)
    np.testing.assert_allclose(result.gradients, weight[top1].reshape(3, 6, 5, 3), rtol=1e-6)


def test_cnn_gradient_matches_finite_differences(getkey):
    model = EqxCNN(getkey())
    logits_fn, params = as_logits_fn(model)
    images = _images(getkey(), (2, 8, 8, 3))
    classes = jnp.array([2, 4])
    result = jax.jit(functools.partial(sj.input_gradients, logits_fn))(params, images, classes)
    maps = jax.jit(functools.partial(sj.saliency_map, logits_fn))(params, images, classes)
    np.testing.assert_allclose(maps, np.abs(np.asarray(result.gradients)).max(-1), rtol=1e-6)

    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        images64 = jnp.asarray(images, jnp.float64)
        rng = np.random.default_rng(0)
        eps = 1e-6
        for _ in range(16):
            b, i, j, c = rng.integers(2), rng.integers(8), rng.integers(8), rng.integers(3)
            bump = jnp.zeros_like(images64).at[b, i, j, c].set(eps)
            up = logits_fn(params64, images64 + bump)[b, classes[b]]
            down = logits_fn(params64, images64 - bump)[b, classes[b]]
            fd = float(up - down) / (2 * eps)
            np.testing.assert_allclose(result.gradients[b, i, j, c], fd, rtol=1e-3, atol=1e-6)
    assert float(jnp.max(jnp.abs(result.gradients))) > 1e-3  # a real signal, not zeros


def test_relu_rules_apply_to_equinox_models(getkey):
    """Deconvnet and guided rules (§4) against their definitions written out for this model.

    With ``g = W_c / (H W)`` the score's gradient w.r.t. the rectified map, the gradient
    rule back-propagates ``g * [pre > 0]`` through the convolution, deconvnet ``max(g, 0)``
    and guided ``max(g, 0) * [pre > 0]``.
    """
    model = EqxCNN(getkey())
    logits_fn, params = as_logits_fn(model)
    images = _images(getkey(), (2, 8, 8, 3)) - 0.5  # both signs before the rectifier
    classes = jnp.array([1, 3])

    def expected(image, c, rule):
        pre, pullback = jax.vjp(model.features, image)
        g = jnp.broadcast_to((model.linear.weight[c] / (8 * 8))[:, None, None], pre.shape)
        seed = {"gradient": g * (pre > 0), "deconvnet": jnp.maximum(g, 0.0), "guided": jnp.maximum(g, 0.0) * (pre > 0)}
        return pullback(seed[rule])[0]

    for rule in ("gradient", "deconvnet", "guided"):
        got = jax.jit(functools.partial(sj.input_gradients, logits_fn, rule=rule))(params, images, classes).gradients
        want = jnp.stack([expected(x, c, rule) for x, c in zip(images, classes)])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=rule)
    # The three rules differ on this model, so the comparison above tells them apart.
    deconv = expected(images[0], classes[0], "deconvnet")
    assert float(jnp.max(jnp.abs(deconv - expected(images[0], classes[0], "gradient")))) > 1e-4

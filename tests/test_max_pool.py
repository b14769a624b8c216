"""Tests for max pooling: the strided path equals ``flax.linen.max_pool`` forward and backward, ties included."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import backprop_rules
from saliency_jax.models import scaled_convnet
from saliency_jax.models.max_pool import max_pool2d
from saliency_jax.saliency import input_gradients

CASES = [
    ((2, 13, 11, 3), 3, 2, "VALID"),  # the ConvNet's overlapping 3 / 2 pools, odd sizes
    ((1, 9, 9, 2), (2, 3), (1, 2), "SAME"),
    ((3, 8, 10, 4), 2, 2, ((1, 0), (2, 1))),
    ((1, 7, 7, 1), 3, 1, "SAME"),
    ((2, 6, 5, 3), (6, 5), None, "VALID"),  # one window covers the image
]


def _images(shape, kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "ties":  # three values only: most windows hold their maximum more than once
        return jnp.asarray(rng.integers(0, 3, shape).astype(np.float32))
    if kind == "rectified":  # zeros after a rectifier, as in the ConvNet
        return jnp.asarray(np.maximum(rng.normal(size=shape), 0).astype(np.float32))
    return jnp.asarray(rng.normal(size=shape).astype(np.float32))


@functools.partial(jax.jit, static_argnames=("window", "strides", "padding", "impl"))
def _value_and_vjp(x, g, window, strides, padding, impl):
    y, vjp = jax.vjp(lambda x: max_pool2d(x, window, strides, padding, impl=impl), x)
    return y, vjp(g)[0]


def _flax(x, window, strides, padding):
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    return nn.max_pool(x, pair(window), None if strides is None else pair(strides), padding)


@pytest.mark.parametrize("kind", ["ties", "rectified", "normal"])
@pytest.mark.parametrize("shape,window,strides,padding", CASES)
def test_strided_path_equals_flax_max_pool_and_its_gradient(shape, window, strides, padding, kind):
    x = _images(shape, kind)
    want, vjp = jax.vjp(lambda x: _flax(x, window, strides, padding), x)
    g = jnp.asarray(np.random.default_rng(1).normal(size=want.shape).astype(np.float32))
    for impl in ("strided", "xla"):
        got, grad = _value_and_vjp(x, g, window, strides, padding, impl)
        np.testing.assert_array_equal(got, want, err_msg=impl)
        # Each window's cotangent goes to the same element, so only the sums of overlapping
        # windows' shares can round differently.
        np.testing.assert_allclose(grad, vjp(g)[0], rtol=1e-6, atol=1e-6, err_msg=impl)


def test_each_window_sends_its_cotangent_to_its_first_maximum():
    """Written out by hand: a 2 x 2 window of equal values sends everything to its top-left element."""
    x = jnp.asarray(np.array([[1, 1, 0], [1, 1, 2], [0, 3, 3]], np.float32)[None, :, :, None])
    g = jnp.asarray(np.array([[10, 20], [30, 40]], np.float32)[None, :, :, None])
    _, grad = _value_and_vjp(x, g, 2, 1, "VALID", "strided")
    want = np.array([[10, 0, 0], [0, 0, 20], [0, 30 + 40, 0]], np.float32)
    np.testing.assert_array_equal(grad[0, :, :, 0], want)


def test_padding_never_wins_and_gets_no_gradient():
    x = -jnp.ones((1, 4, 4, 1)) * jnp.arange(1, 17, dtype=jnp.float32).reshape(1, 4, 4, 1)
    y, grad = _value_and_vjp(x, jnp.ones((1, 4, 4, 1)), 3, 1, "SAME", "strided")
    assert np.isfinite(y).all() and float(y.max()) == -1.0
    assert grad.shape == x.shape and float(grad.sum()) == 16.0  # one unit per window, all inside


def test_transformations_match_the_reference():
    x = _images((4, 11, 11, 3), "ties", seed=2)

    def total(x, impl):
        return (max_pool2d(x, 3, 2, impl=impl) ** 2).sum()

    np.testing.assert_allclose(jax.vmap(lambda x: max_pool2d(x[None], 3, 2)[0])(x), _flax(x, 3, 2, "VALID"))
    np.testing.assert_allclose(jax.jit(jax.grad(total), static_argnums=1)(x, "strided"),
                               jax.grad(total)(x, "xla"), rtol=1e-6, atol=1e-6)
    # The backward pass is itself differentiable: a Hessian-vector product matches.
    v = _images(x.shape, "normal", seed=3)

    def hvp(impl):
        return jax.grad(lambda x: jnp.vdot(jax.grad(total)(x, impl), v))(x)

    np.testing.assert_allclose(hvp("strided"), hvp("xla"), rtol=1e-5, atol=1e-5)


def test_convnet_values_and_input_gradients_do_not_depend_on_the_pool_path(getkey):
    x = jax.random.uniform(getkey(), (3, 64, 64, 3), maxval=255.0)
    x = x.at[:, :8].set(0.0)  # flat rows: rectified zeros and tied windows in every pool
    params = scaled_convnet(6).init(getkey(), x[:1])
    results = {}
    for impl in ("strided", "xla"):
        model = scaled_convnet(6).clone(pool_impl=impl)
        for rule in backprop_rules.RULES:
            results[impl, rule] = jax.jit(functools.partial(input_gradients, model.apply, rule=rule))(params, x, None)
    for rule in backprop_rules.RULES:
        a, b = results["strided", rule], results["xla", rule]
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-6, atol=1e-5, err_msg=rule)
        np.testing.assert_allclose(a.gradients, b.gradients, rtol=1e-5, atol=1e-5 * float(jnp.abs(b.gradients).max()),
                                   err_msg=rule)
        assert float(jnp.abs(b.gradients).max()) > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(window=0), "window must be one positive int or two"),
        (dict(window=(2, 2, 2)), "window must be one positive int or two"),
        (dict(window=2, strides=(1, 0)), "strides must be one positive int or two"),
        (dict(window=2, padding="FULL"), "padding must be 'VALID', 'SAME'"),
        (dict(window=2, padding=((1, -1), (0, 0))), "padding must be"),
        (dict(window=9), "the window of 9 is larger than the padded image"),
        (dict(window=2, impl="fast"), "impl must be one of"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        max_pool2d(jnp.zeros((1, 5, 5, 2)), **kwargs)


def test_bad_rank_and_pool_impl_raise():
    with pytest.raises(ValueError, match=r"x must have shape \[B, H, W, C\]"):
        max_pool2d(jnp.zeros((5, 5, 2)), 2)
    with pytest.raises(ValueError, match="pool_impl must be one of"):
        scaled_convnet(6).clone(pool_impl="fast")


def test_benchmark_script_runs_and_checks_both_paths(experiment, tmp_path):
    bench = experiment("bench_max_pool")
    result = bench.main(["--rounds", "1", "--batch", "2", "--json", str(tmp_path / "pool.json")])
    assert set(result["cases"]) == {"train", "map", "forward"}
    for row in result["cases"].values():
        assert row["strided_ms"] > 0 and row["reduce_window_ms"] > 0
        assert row["ratio"] == pytest.approx(row["strided_ms"] / row["reduce_window_ms"])  # one round
    assert (tmp_path / "pool.json").exists()

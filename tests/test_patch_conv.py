"""Tests for the patch convolution: the matrix product over patches equals XLA's convolution."""

import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from saliency_jax.models.efficientnet_lite import StemConv
from saliency_jax.models.patch_conv import patch_conv2d, resolve_patch_impl

TOL = {"rtol": 1e-5, "atol": 1e-5}


def dense_conv(x, kernel, strides, padding):
    """The reference: XLA's convolution."""
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def primitives(fn, *args):
    return {eqn.primitive.name for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns}


@functools.partial(jax.jit, static_argnames=("strides", "padding"))
def forward_and_vjps(x, kernel, cotangent, strides, padding):
    """Output, input gradient and kernel gradient of both paths, in one compiled program."""
    results = []
    for fn in (functools.partial(patch_conv2d, impl="patches"), dense_conv):
        y, pullback = jax.vjp(lambda x, k, fn=fn: fn(x, k, strides, padding), x, kernel)
        results.append((y, *pullback(cotangent)))
    return results


@st.composite
def conv_cases(draw):
    ksize = (draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 3, 4])))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    kind = draw(st.sampled_from(["SAME", "VALID", "explicit"]))
    padding = kind
    if kind == "explicit":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    size = [draw(st.integers(1, 9)), draw(st.integers(1, 9))]
    for axis in range(2):  # grow the image until the kernel fits where the padding cannot help
        pad = sum(padding[axis]) if kind == "explicit" else 0
        if kind != "SAME":
            size[axis] = max(size[axis], ksize[axis] - pad)
    shape = (draw(st.integers(1, 3)), size[0], size[1], draw(st.integers(1, 4)))
    return shape, ksize + (shape[3], draw(st.integers(1, 5))), strides, padding, draw(st.integers(0, 2**16))


@hypothesis.settings(max_examples=15, deadline=None, derandomize=True)
@hypothesis.given(conv_cases())
def test_matches_the_convolution_and_its_gradients(case):
    x_shape, k_shape, strides, padding, seed = case
    rng = np.random.default_rng(seed)  # NumPy draws: jax.random would compile a program for every new shape
    x = rng.standard_normal(x_shape, np.float32)
    kernel = rng.standard_normal(k_shape, np.float32)
    out_shape = jax.eval_shape(functools.partial(dense_conv, strides=strides, padding=padding), x, kernel).shape
    cotangent = rng.standard_normal(out_shape, np.float32)
    (y, dx, dk), (y_ref, dx_ref, dk_ref) = forward_and_vjps(x, kernel, cotangent, strides, padding)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **TOL, err_msg="forward")
    np.testing.assert_allclose(dx, dx_ref, **TOL, err_msg="input gradient")
    atol = 1e-5 * np.sqrt(x_shape[0] * x_shape[1] * x_shape[2])  # a sum over batch * H * W products
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=atol, err_msg="kernel gradient")


def test_the_stem_shape_matches_and_has_no_convolution(getkey):
    """EfficientNet-Lite0's stem (3x3, stride 2, 3 -> 32 on 224x224): same map, no convolution on CPU."""
    x = jax.random.uniform(getkey(), (2, 224, 224, 3), minval=-1, maxval=1)
    kernel = 0.3 * jax.random.normal(getkey(), (3, 3, 3, 32))
    np.testing.assert_allclose(patch_conv2d(x, kernel, 2), dense_conv(x, kernel, (2, 2), "SAME"), **TOL)

    def input_gradient(x, kernel):
        return jax.grad(lambda x: jnp.sum(jnp.sin(patch_conv2d(x, kernel, 2, impl="patches"))))(x)

    want = jax.grad(lambda x: jnp.sum(jnp.sin(dense_conv(x, kernel, (2, 2), "SAME"))))(x)
    np.testing.assert_allclose(input_gradient(x, kernel), want, **TOL)
    assert "conv_general_dilated" not in primitives(input_gradient, x, kernel)
    assert "conv_general_dilated" in primitives(functools.partial(patch_conv2d, impl="xla"), x, kernel)


def test_vmap_and_second_derivatives_match_the_convolution(getkey):
    x = jax.random.normal(getkey(), (3, 2, 7, 6, 2))
    kernel = jax.random.normal(getkey(), (3, 3, 2, 4))
    conv = functools.partial(patch_conv2d, strides=2, impl="patches")
    np.testing.assert_allclose(
        jax.vmap(conv, in_axes=(0, None))(x, kernel),
        jnp.stack([dense_conv(xi, kernel, (2, 2), "SAME") for xi in x]),
        **TOL,
    )

    def curvature(fn):  # d/dx of the squared gradient norm: a second derivative through the conv
        def norm(x):
            g = jax.grad(lambda x: jnp.sum(jnp.tanh(fn(x, kernel))))(x)
            return jnp.sum(g**2)

        return jax.grad(norm)(x[0])

    np.testing.assert_allclose(
        curvature(conv), curvature(lambda x, k: dense_conv(x, k, (2, 2), "SAME")), rtol=1e-4, atol=1e-4
    )


def test_stem_module_keeps_nn_conv_parameters(getkey):
    """Checkpoints of ``nn.Conv`` load unchanged: same tree, same outputs."""
    import flax.linen as nn

    x = jax.random.normal(getkey(), (2, 9, 10, 3))
    conv = nn.Conv(8, (3, 3), (2, 2), padding="SAME", use_bias=False)
    params = conv.init(getkey(), x)
    for impl in ("patches", "xla"):
        stem = StemConv(8, 3, 2, impl)
        assert jax.tree.map(jnp.shape, stem.init(getkey(), x)) == jax.tree.map(jnp.shape, params)
        np.testing.assert_allclose(stem.apply(params, x), conv.apply(params, x), **TOL)


def test_auto_picks_the_path_by_backend(monkeypatch):
    assert resolve_patch_impl("patches") == "patches" and resolve_patch_impl("xla") == "xla"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert resolve_patch_impl("auto") == "patches"
    for backend in ("gpu", "tpu"):
        monkeypatch.setattr(jax, "default_backend", lambda backend=backend: backend)
        assert resolve_patch_impl("auto") == "xla"


def test_follows_dtype_promotion():
    x = jax.ShapeDtypeStruct((1, 4, 4, 2), jnp.bfloat16)
    for kernel_dtype in (jnp.bfloat16, jnp.float32):
        kernel = jax.ShapeDtypeStruct((3, 3, 2, 5), kernel_dtype)
        y = jax.eval_shape(functools.partial(patch_conv2d, impl="patches"), x, kernel)
        assert y.dtype == kernel_dtype and y.shape == (1, 4, 4, 5)


@pytest.mark.parametrize(
    "x_shape, k_shape, kwargs, match",
    [
        ((4, 4, 2), (3, 3, 2, 4), {}, "x must have shape"),
        ((1, 4, 4, 2), (3, 3, 2), {}, "kernel must have shape"),
        ((1, 4, 4, 2), (3, 3, 3, 4), {}, "kernel must have shape"),
        ((1, 4, 4, 2), (3, 3, 2, 0), {}, "positive size"),
        ((1, 4, 4, 2), (3, 3, 2, 4), {"strides": 0}, "strides"),
        ((1, 4, 4, 2), (3, 3, 2, 4), {"strides": (1, 2, 1)}, "strides"),
        ((1, 4, 4, 2), (3, 3, 2, 4), {"padding": "same"}, "padding"),
        ((1, 4, 4, 2), (3, 3, 2, 4), {"padding": ((1, -1), (0, 0))}, "padding"),
        ((1, 2, 4, 2), (3, 3, 2, 4), {"padding": "VALID"}, "output would be empty"),
        ((1, 4, 4, 2), (3, 3, 2, 4), {"impl": "cuda"}, "impl"),
    ],
)
def test_rejects_invalid_arguments(x_shape, k_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        patch_conv2d(jnp.ones(x_shape), jnp.ones(k_shape), **kwargs)

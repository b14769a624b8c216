"""Tests for the depthwise convolution: the shifted-sum path equals XLA's grouped convolution."""

import collections
import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from saliency_jax.models.depthwise import GRAD_PAD_BELOW_BYTES, PAD_BELOW_BYTES, depthwise_conv2d, resolve_impl

TOL = {"rtol": 1e-5, "atol": 1e-5}


def grouped_conv(x, kernel, strides, padding):
    """The reference: XLA's grouped convolution with one group per channel."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


# ``pad_below_bytes`` of the two forms of the shifted path: every input split into an interior and
# border strips, or every input padded first.
SPLIT, PADDED = 0, 2**40


@functools.partial(jax.jit, static_argnames=("strides", "padding", "pad_below_bytes"))
def forward_and_vjps(x, kernel, cotangent, strides, padding, pad_below_bytes):
    """Output, input gradient and kernel gradient of both paths, in one compiled program."""

    def shifted(x, kernel):
        return depthwise_conv2d(x, kernel, strides, padding, impl="shifted", pad_below_bytes=pad_below_bytes)

    def reference(x, kernel):
        return grouped_conv(x, kernel, strides, padding)

    results = []
    for fn in (shifted, reference):
        y, pullback = jax.vjp(fn, x, kernel)
        results.append((y, *pullback(cotangent)))
    return results


def assert_matches_grouped_conv(batch, height, width, channels, ksize, strides, padding, seed, pad_below_bytes):
    # NumPy draws: jax.random would compile a program for every new shape.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, height, width, channels), np.float32)
    kernel = rng.standard_normal((ksize[0], ksize[1], 1, channels), np.float32)
    out_shape = jax.eval_shape(functools.partial(grouped_conv, strides=strides, padding=padding), x, kernel)
    cotangent = rng.standard_normal(out_shape.shape, np.float32)
    padding = padding if isinstance(padding, str) else tuple(map(tuple, padding))
    (y, dx, dk), (y_ref, dx_ref, dk_ref) = forward_and_vjps(x, kernel, cotangent, strides, padding, pad_below_bytes)
    assert y.shape == y_ref.shape and dx.shape == x.shape and dk.shape == kernel.shape
    np.testing.assert_allclose(y, y_ref, **TOL, err_msg="forward")
    np.testing.assert_allclose(dx, dx_ref, **TOL, err_msg="input gradient")
    # The kernel gradient sums batch * H * W products: scale the tolerance with that count.
    atol = 1e-5 * np.sqrt(batch * height * width)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=atol, err_msg="kernel gradient")


# The grid the fast path must cover: strides 1 and 2, kernels 3 and 5, odd and even sizes,
# SAME and VALID padding (the EfficientNet-Lite0 cases and their neighbours).
@pytest.mark.parametrize("form", [SPLIT, PADDED], ids=["split", "padded"])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("ksize", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_matches_grouped_conv_on_grid(stride, ksize, padding, form):
    # Odd height, even width, so both parities are exercised in one compilation; a batch of 3,
    # since the kernel gradient is accumulated example by example.
    assert_matches_grouped_conv(
        3, 9, 8, 3, (ksize, ksize), (stride, stride), padding, seed=ksize + stride, pad_below_bytes=form
    )


@pytest.mark.parametrize(
    "ksize, strides, padding",
    [
        ((5, 5), (1, 1), "SAME"),  # two-wide strips, summed over padded copies of the rows they read
        ((5, 3), (1, 2), ((2, 3), (1, 1))),  # wide strips on one axis only, uneven padding
        ((1, 1), (1, 1), ((3, 2), (2, 3))),  # strips that read nothing but padding
        ((3, 3), (2, 2), ((4, 4), (3, 3))),
    ],
)
def test_matches_grouped_conv_with_wide_border_strips(ksize, strides, padding):
    assert_matches_grouped_conv(2, 11, 10, 3, ksize, strides, padding, seed=7, pad_below_bytes=SPLIT)


@st.composite
def conv_cases(draw):
    ksize = (draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 3, 5])))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    kind = draw(st.sampled_from(["SAME", "VALID", "explicit"]))
    if kind == "explicit":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    else:
        padding = kind
    # Sizes from 1 up; for padding that cannot fit the kernel, grow the image until it does.
    size = [draw(st.integers(1, 9)), draw(st.integers(1, 9))]
    for axis in range(2):
        pad = sum(padding[axis]) if kind == "explicit" else 0
        if kind != "SAME":
            size[axis] = max(size[axis], ksize[axis] - pad)
    return {
        "batch": draw(st.integers(1, 2)),
        "height": size[0],
        "width": size[1],
        "channels": draw(st.integers(1, 4)),
        "ksize": ksize,
        "strides": strides,
        "padding": padding,
        "seed": draw(st.integers(0, 2**16)),
        "pad_below_bytes": draw(st.sampled_from([SPLIT, PADDED])),
    }


@hypothesis.settings(max_examples=12, deadline=None, derandomize=True)
@hypothesis.given(conv_cases())
def test_matches_grouped_conv_on_random_shapes(case):
    assert_matches_grouped_conv(**case)


def _eqns(jaxpr):
    """All equations of a jaxpr, including those in sub-jaxprs."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from _eqns(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from _eqns(sub)


def _primitives(jaxpr):
    """All primitive names in a jaxpr, including those in sub-jaxprs."""
    return {eqn.primitive.name for eqn in _eqns(jaxpr)}


@pytest.mark.parametrize("impl, expects_conv", [("shifted", False), ("xla", True)])
def test_the_shifted_path_has_no_convolution_in_either_direction(impl, expects_conv):
    x = jnp.ones((1, 6, 6, 2))
    kernel = jnp.ones((3, 3, 1, 2))

    def loss(x, kernel):
        return jnp.sum(depthwise_conv2d(x, kernel, 2, "SAME", impl=impl) ** 2)

    jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, kernel)
    assert ("conv_general_dilated" in _primitives(jaxpr.jaxpr)) == expects_conv


def _joins_strips(jaxpr):
    """Whether a jaxpr joins border strips to an interior along the rows.

    (The stride-2 input gradient's phases are interleaved by stacking on new axes 2 and 3 of a
    rank-5 array; only the strips are joined along axis 1 of an image batch.)
    """
    return any(
        eqn.primitive.name == "concatenate" and eqn.params["dimension"] == 1 and eqn.outvars[0].aval.ndim == 4
        for eqn in _eqns(jaxpr)
    )


def test_the_default_pads_small_inputs_and_splits_large_ones():
    kernel = jnp.ones((3, 3, 1, 8))

    def conv(x, **kwargs):
        return depthwise_conv2d(x, kernel, 1, "SAME", impl="shifted", **kwargs)

    def strips(shape, **kwargs):
        """Whether the forward pass and the backward pass (input gradient) join border strips."""
        x = jnp.ones(shape)
        forward = _joins_strips(jax.make_jaxpr(functools.partial(conv, **kwargs))(x).jaxpr)
        _, pullback = jax.vjp(functools.partial(conv, **kwargs), x)
        backward = _joins_strips(jax.make_jaxpr(pullback)(x).jaxpr)  # stride 1: the cotangent is x-sized
        return forward, backward

    def shape_of(nbytes):
        return (1, 16, nbytes // (16 * 8 * 4), 8)

    assert GRAD_PAD_BELOW_BYTES > PAD_BELOW_BYTES
    small = shape_of(PAD_BELOW_BYTES)  # padded both ways
    middle = shape_of(PAD_BELOW_BYTES + 2 * 16 * 8 * 4)  # split forward, padded backward
    large = shape_of(GRAD_PAD_BELOW_BYTES + 2 * 16 * 8 * 4)  # split both ways
    assert strips(small) == (False, False)
    assert strips(middle) == (True, False)
    assert strips(large) == (True, True)
    # an explicit threshold applies to both directions
    assert strips(small, pad_below_bytes=0) == (True, True)
    assert strips(large, pad_below_bytes=2**40) == (False, False)


def test_auto_picks_the_path_by_backend(monkeypatch):
    assert resolve_impl("shifted") == "shifted" and resolve_impl("xla") == "xla"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert resolve_impl("auto") == "shifted"
    for backend in ("gpu", "tpu"):
        monkeypatch.setattr(jax, "default_backend", lambda backend=backend: backend)
        assert resolve_impl("auto") == "xla"
        jaxpr = jax.make_jaxpr(lambda x, k: depthwise_conv2d(x, k))(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 1, 2)))
        assert "conv_general_dilated" in _primitives(jaxpr.jaxpr)


@pytest.mark.parametrize("form", [SPLIT, PADDED], ids=["split", "padded"])
def test_transformations_match_the_grouped_conv(getkey, form):
    """jit == eager, vmap == per-example, a pullback reused and vmapped, gradients of gradients."""
    x = jax.random.normal(getkey(), (3, 2, 7, 6, 3))  # a leading axis to vmap over
    kernel = jax.random.normal(getkey(), (3, 3, 1, 3))
    shifted = functools.partial(
        depthwise_conv2d, strides=2, padding="SAME", impl="shifted", pad_below_bytes=form
    )
    reference = functools.partial(grouped_conv, strides=(2, 2), padding="SAME")

    np.testing.assert_allclose(jax.jit(shifted)(x[0], kernel), shifted(x[0], kernel), **TOL)
    batched = jax.jit(jax.vmap(shifted, in_axes=(0, None)))(x, kernel)
    np.testing.assert_allclose(batched, jax.vmap(reference, in_axes=(0, None))(x, kernel), **TOL)

    # One forward pass, many cotangents: the pullback vmapped over a stack of one-hot cotangents.
    def pullbacks(fn, x, kernel):
        y, pullback = jax.vjp(fn, x, kernel)
        eye = jnp.eye(y.size).reshape(-1, *y.shape)[:5]
        return jax.vmap(pullback)(eye)

    got = jax.jit(functools.partial(pullbacks, shifted))(x[0], kernel)
    want = jax.jit(functools.partial(pullbacks, reference))(x[0], kernel)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, **TOL)

    # Reverse over reverse: the backward pass is itself differentiable (and on the fast path).
    def grad_norm(fn, x, kernel):
        dx = jax.grad(lambda x: jnp.sum(jnp.tanh(fn(x, kernel))))(x)
        return jnp.sum(dx**2)

    got = jax.jit(jax.grad(functools.partial(grad_norm, shifted), argnums=(0, 1)))(x[0], kernel)
    want = jax.jit(jax.grad(functools.partial(grad_norm, reference), argnums=(0, 1)))(x[0], kernel)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("argnums", [(0,), (1,), (0, 1)], ids=["input", "kernel", "both"])
def test_only_the_gradients_asked_for_are_traced(getkey, argnums):
    """A saliency map differentiates the input only: the kernel's gradient is not traced, and
    the reverse; each gradient asked for still equals the grouped convolution's."""
    x = jax.random.normal(getkey(), (2, 9, 8, 3))
    kernel = jax.random.normal(getkey(), (3, 3, 1, 3))
    cotangent = jax.random.normal(getkey(), (2, 9, 8, 3))

    def loss(fn, x, kernel):
        return jnp.sum(fn(x, kernel) * cotangent)

    shifted = functools.partial(loss, functools.partial(depthwise_conv2d, strides=1, padding="SAME", impl="shifted"))
    reference = functools.partial(loss, functools.partial(grouped_conv, strides=(1, 1), padding="SAME"))
    got = jax.grad(shifted, argnums)(x, kernel)
    want = jax.grad(reference, argnums)(x, kernel)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)

    jaxpr = jax.make_jaxpr(jax.grad(shifted, argnums))(x, kernel).jaxpr
    counts = collections.Counter(eqn.primitive.name for eqn in _eqns(jaxpr))
    # The kernel's gradient loops over the batch; the input's correlates with the flipped kernel.
    assert bool({"scan", "while"} & set(counts)) == (1 in argnums)
    assert ("rev" in counts) == (0 in argnums)


def test_follows_dtype_promotion():
    x = jax.ShapeDtypeStruct((1, 4, 4, 2), jnp.bfloat16)
    for kernel_dtype, out_dtype in [(jnp.bfloat16, jnp.bfloat16), (jnp.float32, jnp.float32)]:
        kernel = jax.ShapeDtypeStruct((3, 3, 1, 2), kernel_dtype)
        y = jax.eval_shape(functools.partial(depthwise_conv2d, impl="shifted"), x, kernel)
        assert y.dtype == out_dtype


@pytest.mark.parametrize(
    "x_shape, k_shape, kwargs, match",
    [
        ((4, 4, 2), (3, 3, 1, 2), {}, "x must have shape"),
        ((1, 4, 4, 2), (3, 3, 2), {}, "kernel must have shape"),
        ((1, 4, 4, 2), (3, 3, 1, 3), {}, "kernel must have shape"),
        ((1, 4, 4, 2), (3, 3, 2, 2), {}, "kernel must have shape"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"strides": 0}, "strides"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"strides": (1, 2, 1)}, "strides"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"strides": (1.0, 1)}, "strides"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"strides": True}, "strides"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"padding": "same"}, "padding"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"padding": ((1, 1),)}, "padding"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"padding": ((1, -1), (0, 0))}, "padding"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"padding": 5}, "padding"),
        ((1, 2, 4, 2), (3, 3, 1, 2), {"padding": "VALID"}, "output would be empty"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"impl": "cuda"}, "impl"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"pad_below_bytes": -1}, "pad_below_bytes"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"pad_below_bytes": 1.5}, "pad_below_bytes"),
        ((1, 4, 4, 2), (3, 3, 1, 2), {"pad_below_bytes": True}, "pad_below_bytes"),
    ],
)
def test_rejects_invalid_arguments(x_shape, k_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        depthwise_conv2d(jnp.ones(x_shape), jnp.ones(k_shape), **kwargs)


def test_accepts_numpy_integers_for_strides_and_padding():
    x, kernel = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 1, 2))
    y = jax.eval_shape(
        functools.partial(depthwise_conv2d, strides=np.int64(2), padding=((np.int32(1), 1), (1, np.int64(1)))),
        x,
        kernel,
    )
    assert y.shape == (1, 3, 3, 2)

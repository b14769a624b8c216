"""The paper's semantics (§2 class models, §4 reconstructions), against deliberately plain references.

Each check re-derives the library's numbers with an independent implementation written
here: Adam and the closed-form optimum on a linear model, finite differences of a numpy
copy of the tiny CNN, an explicit matrix of the Fourier parametrisation built with
numpy's FFT, loops for total variation, resampling and shifting, and hand-written
backward passes (transpose convolution, switch unpooling, the three ReLU rules).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from saliency_jax import parametrization as P
from saliency_jax import regularizers as regs
from saliency_jax.backprop_rules import RULES, backprop_rule, relu, relu6
from saliency_jax.class_model import class_models
from saliency_jax.reconstruction import layer_reconstruction, layer_reconstructions

from conftest import linear_logits_fn

# --- §2 on a linear model: S_c(m + s z) = w_c . (m + s z) + b_c ---------------------------

LINEAR_SHAPE = (6, 5, 3)


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(11)
    w = rng.normal(size=(int(np.prod(LINEAR_SHAPE)), 4))
    b = rng.normal(size=(4,))
    params = {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
    return params, np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)


def test_paper_mode_is_adam_ascent_on_the_unnormalised_score_minus_l2(linear):
    """Default optimiser: Adam(learning_rate) minimising -(S_c - lambda |z|^2) from z = 0;
    the mean is added back, the image clipped only at the end, the history taken before
    each update, and the final scores are the model's on the returned images."""
    params, w, b = linear
    lam, scale, mean, lr, steps = 0.3, 2.0, 0.25, 0.05, 7
    low, high = -0.3, 0.8
    result = class_models(
        linear_logits_fn, params, jnp.arange(4), key=jax.random.key(0), steps=steps, l2_weight=lam,
        learning_rate=lr, image_shape=LINEAR_SHAPE, pixel_mean=mean, pixel_scale=scale, pixel_range=(low, high),
    )
    b1, b2, eps = 0.9, 0.999, 1e-8  # optax.adam's defaults
    z = np.zeros((4, w.shape[0]))
    m1, m2 = np.zeros_like(z), np.zeros_like(z)
    scores, objectives = [], []
    for t in range(1, steps + 1):
        s = np.einsum("kd,dk->k", mean + scale * z, w) + b  # unclipped: the ascent is not projected
        scores.append(s)
        objectives.append(s - lam * np.sum(z * z, axis=1))
        grad = -(scale * w.T - 2 * lam * z)  # d(-objective)/dz: the L2 term's gradient is 2 lambda z
        m1 = b1 * m1 + (1 - b1) * grad
        m2 = b2 * m2 + (1 - b2) * grad * grad
        z = z - lr * (m1 / (1 - b1**t)) / (np.sqrt(m2 / (1 - b2**t)) + eps)
    images = np.clip(mean + scale * z, low, high)
    assert np.any(images == high) and np.any(images == low), "the check needs pixels clipped on both sides"
    np.testing.assert_allclose(np.asarray(result.images).reshape(4, -1), images, atol=2e-5)
    np.testing.assert_allclose(result.history.scores, np.array(scores), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(result.history.objectives, np.array(objectives), rtol=1e-5, atol=1e-3)
    logits = images @ w + b[None, :]
    np.testing.assert_allclose(result.logits, logits, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(result.scores, np.diag(logits), rtol=1e-5, atol=1e-3)


def test_paper_mode_adam_converges_to_the_closed_form_optimum(linear):
    """argmax_z w_c . (m + s z) - lambda |z|^2 = s w_c / (2 lambda), reached by the default Adam."""
    params, w, _ = linear
    lam, scale, mean = 2.0, 1.5, 0.1
    result = class_models(
        linear_logits_fn, params, jnp.arange(4), key=jax.random.key(0), steps=1500, l2_weight=lam,
        learning_rate=0.01, image_shape=LINEAR_SHAPE, pixel_mean=mean, pixel_scale=scale,
    )
    z_star = scale * w.T / (2 * lam)
    z = (np.asarray(result.images).reshape(4, -1) - mean) / scale
    assert np.abs(z_star).max() > 0.5
    np.testing.assert_allclose(z, z_star, atol=5e-3)


# --- §2 on the tiny CNN: the ascent direction is the score's finite-difference gradient ---


def _np_conv_same(x, kernel, bias):
    """3x3 SAME convolution of [N, H, W, Ci] with [3, 3, Ci, Co], as nine shifted products."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for di in range(3):
        for dj in range(3):
            out += padded[:, di : di + h, dj : dj + w] @ kernel[di, dj]
    return out + bias


def _np_tiny_cnn(p, x):
    """conftest.TinyCNN in float64 numpy: conv1-relu-pool-conv2-relu-mean-fc."""
    h = np.maximum(_np_conv_same(x, p["conv1"]["kernel"], p["conv1"]["bias"]), 0)
    n, hh, ww, c = h.shape
    h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
    h = np.maximum(_np_conv_same(h, p["conv2"]["kernel"], p["conv2"]["bias"]), 0)
    return h.mean(axis=(1, 2)) @ p["fc"]["kernel"] + p["fc"]["bias"]


def test_paper_mode_ascends_the_score_gradient_of_a_cnn(tiny_cnn):
    """Two SGD steps: z1 = lr s dS(m), z2 = z1 + lr (s dS(m + s z1) - 2 lambda z1), with dS written
    out by hand (at the constant start image every pooling window is a tie: the gradient is
    the subgradient of the first maximum, which finite differences cannot see)."""
    logits_fn, params = tiny_cnn
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    lam, scale, mean, lr = 0.2, 1.5, 0.5, 0.1
    classes = np.arange(5)
    result = class_models(
        logits_fn, params, jnp.asarray(classes), key=jax.random.key(0), steps=2, optimizer=optax.sgd(lr),
        l2_weight=lam, image_shape=(8, 8, 3), pixel_mean=mean, pixel_scale=scale,
    )

    def score_seed(a2, cls=classes):  # dS_c / d a2 for S_c = mean(relu(a2)) . fc[:, c], one class per image
        fc = p["fc"]["kernel"][:, cls].T  # [K, channels]
        return (a2 > 0) * fc[:, None, None, :] / (a2.shape[1] * a2.shape[2])

    z = np.zeros((5, 8, 8, 3))
    for _ in range(2):
        grad, _ = _np_reconstruct_conv2(p, mean + scale * z, score_seed, "gradient")
        z = z + lr * (scale * grad - 2 * lam * z)
    assert np.abs(z).max() > 1e-2
    np.testing.assert_allclose(result.images, mean + scale * z, atol=1e-5)
    np.testing.assert_allclose(result.scores, np.diag(_np_tiny_cnn(p, mean + scale * z)), atol=1e-5)
    # Away from ties the hand-written gradient is the finite-difference one.
    x = mean + scale * z[:1]
    eps, basis = 1e-5, np.eye(192).reshape(192, 8, 8, 3)
    fd = (_np_tiny_cnn(p, x + eps * basis)[:, 0] - _np_tiny_cnn(p, x - eps * basis)[:, 0]) / (2 * eps)
    by_hand, _ = _np_reconstruct_conv2(p, x, functools.partial(score_seed, cls=classes[:1]), "gradient")
    np.testing.assert_allclose(by_hand[0], fd.reshape(8, 8, 3), atol=1e-7)


# --- the regularised mode's pieces, one by one ----------------------------------------------


def _fourier_matrix(shape, decay=1.0):
    """The Fourier parametrisation as an explicit matrix [H*W*C, variables], from numpy's FFT."""
    height, width, channels = shape
    var_shape = (height, width // 2 + 1, channels, 2)
    scale = P.spectrum_scale(height, width, decay).astype(np.float64)[:, :, None] * np.sqrt(0.5)
    mixing = P.colour_mixing_matrix().astype(np.float64)
    columns = []
    for e in np.eye(int(np.prod(var_shape))):
        v = e.reshape(var_shape)
        signal = np.fft.irfft2((v[..., 0] + 1j * v[..., 1]) * scale, s=(height, width), axes=(0, 1), norm="ortho")
        columns.append(np.einsum("hwd,cd->hwc", signal, mixing).reshape(-1))
    return np.stack(columns, axis=1), var_shape


def _np_tv_gradient(z, weight):
    """d/dz of weight * sum over the [H-1, W-1] cells of (dx^2 + dy^2), by a plain loop."""
    grad = np.zeros_like(z)
    for i in range(z.shape[0] - 1):
        for j in range(z.shape[1] - 1):
            dx = z[i, j + 1] - z[i, j]
            dy = z[i + 1, j] - z[i, j]
            grad[i, j + 1] += 2 * weight * dx
            grad[i + 1, j] += 2 * weight * dy
            grad[i, j] -= 2 * weight * (dx + dy)
    return grad


@pytest.mark.parametrize("shape", [(6, 5, 3), (5, 6, 3)], ids=["odd-width", "even-width"])
def test_fourier_parametrisation_against_numpy_fft(shape):
    """to_image is numpy's irfft2 mixed by the colour root; its JAX pullback is the matrix's
    transpose; from_image is its inverse on images; the colour mixing is invertible."""
    param = P.fourier_parametrization(shape)
    matrix, var_shape = _fourier_matrix(shape)
    rng = np.random.default_rng(0)
    v = rng.normal(size=var_shape)
    image = np.asarray(param.to_image(jnp.asarray(v, jnp.float32)), np.float64)
    np.testing.assert_allclose(image.reshape(-1), matrix @ v.reshape(-1), atol=1e-5)
    u = rng.normal(size=shape)
    (pulled,) = jax.vjp(param.to_image, param.init())[1](jnp.asarray(u, jnp.float32))
    np.testing.assert_allclose(np.asarray(pulled).reshape(-1), matrix.T @ u.reshape(-1), atol=1e-5)
    z = rng.normal(size=shape)
    back = np.asarray(param.to_image(param.from_image(jnp.asarray(z, jnp.float32))))
    np.testing.assert_allclose(back, z, atol=1e-5)
    mixing = P.colour_mixing_matrix().astype(np.float64)
    np.testing.assert_allclose(np.linalg.inv(mixing) @ mixing, np.eye(3), atol=1e-6)


def test_regularised_mode_ascent_through_fourier_variables_with_tv_and_clipping(linear):
    """Two SGD steps on the Fourier variable v, image z = T v: the gradient is
    T^T (s w_c - 2 lambda z - dTV(z)), and the image is clipped after each update."""
    params, w, _ = linear
    lam, tv, scale, mean, lr, low, high = 0.1, 0.3, 2.0, 0.25, 0.2, -0.6, 0.6
    result = class_models(
        linear_logits_fn, params, jnp.arange(4), key=jax.random.key(0), steps=2, mode="regularised",
        parametrization="fourier", optimizer=optax.sgd(lr), l2_weight=lam,
        regularizer=regs.compose(regs.total_variation(tv), regs.clip_pixels(low, high)),
        image_shape=LINEAR_SHAPE, pixel_mean=mean, pixel_scale=scale,
    )
    matrix, _ = _fourier_matrix(LINEAR_SHAPE)
    z = np.zeros((4, int(np.prod(LINEAR_SHAPE))))
    for _ in range(2):
        tv_grads = np.stack([_np_tv_gradient(zi.reshape(LINEAR_SHAPE), tv).reshape(-1) for zi in z])
        grad_z = scale * w.T - 2 * lam * z - tv_grads  # d objective / d z
        z = np.clip(z + lr * grad_z @ matrix @ matrix.T, low, high)  # z + T (lr T^T g), then projected
    assert np.any(z == high) and np.any(z != high)
    np.testing.assert_allclose(np.asarray(result.images).reshape(4, -1), mean + scale * z, atol=1e-4)


def _np_total_variation(z, beta):
    total = 0.0
    for i in range(z.shape[0] - 1):
        for j in range(z.shape[1] - 1):
            for c in range(z.shape[2]):
                dx = z[i, j + 1, c] - z[i, j, c]
                dy = z[i + 1, j, c] - z[i, j, c]
                total += (dx * dx + dy * dy) ** (beta / 2)
    return total


@pytest.mark.parametrize("beta", [2.0, 1.0, 1.5])
def test_total_variation_is_the_loop_and_its_gradient(beta):
    z = np.random.default_rng(1).normal(size=(5, 4, 2))
    penalty = regs.total_variation(0.7, beta=beta).penalty
    assert float(penalty(jnp.asarray(z, jnp.float32))) == pytest.approx(0.7 * _np_total_variation(z, beta), rel=1e-5)
    grad = np.asarray(jax.grad(penalty)(jnp.asarray(z, jnp.float32)))
    eps, fd = 1e-6, np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        e = np.zeros_like(z)
        e[idx] = eps
        fd[idx] = 0.7 * (_np_total_variation(z + e, beta) - _np_total_variation(z - e, beta)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, atol=1e-4)
    if beta == 2.0:
        np.testing.assert_allclose(grad, _np_tv_gradient(z, 0.7), atol=1e-5)


def _np_resampling(n, factor):
    """Rows: each output pixel of a rescale about the centre, as weights on the input pixels.

    Output pixel centre i + 1/2 comes from input coordinate (i + 1/2 - n (1 - f) / 2) / f; a
    triangle kernel (stretched by 1/f when shrinking, to antialias) weighs the input pixels,
    normalised; samples outside the image give zero (the mean image)."""
    rows = np.zeros((n, n))
    stretch = min(factor, 1.0)
    for i in range(n):
        u = (i + 0.5 - n * (1 - factor) / 2) / factor
        if 0 <= u <= n:
            rows[i] = np.maximum(0.0, 1 - np.abs((u - 0.5 - np.arange(n)) * stretch))
            rows[i] /= rows[i].sum()
    return rows


@pytest.mark.parametrize("factor", [1.0, 1.15, 0.85, 0.6])
def test_rescale_is_resampling_about_the_centre(factor):
    z = np.random.default_rng(2).normal(size=(9, 8, 3))
    want = np.einsum("ij,jkc->ikc", _np_resampling(9, factor), z)
    want = np.einsum("kl,ilc->ikc", _np_resampling(8, factor), want)
    np.testing.assert_allclose(regs.rescale(jnp.asarray(z, jnp.float32), factor), want, atol=1e-5)


def _reflect(i, n):
    return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)


def test_translate_is_a_reflected_shift_and_refuses_shifts_beyond_its_padding():
    z = np.random.default_rng(3).normal(size=(6, 7, 2)).astype(np.float32)
    for dy, dx in [(2, -1), (-2, 2), (0, 0), (1, 0)]:
        want = np.array([[z[_reflect(i - dy, 6), _reflect(j - dx, 7)] for j in range(7)] for i in range(6)])
        np.testing.assert_array_equal(regs.translate(jnp.asarray(z), dy, dx, max_shift=2), want)
    # A shift beyond max_shift used to wrap and clamp inside dynamic_slice: +5 came out as -2.
    for dy in (5, -3):
        with pytest.raises(ValueError, match="dy must be an integer >= -2 and <= 2"):
            regs.translate(jnp.asarray(z), dy, 0, max_shift=2)
    with pytest.raises(ValueError, match="dx must be an integer"):
        regs.translate(jnp.asarray(z), 0, 1.5, max_shift=2)
    # Traced shifts cannot be checked: they saturate at the bound, in their own direction.
    shifted = jax.jit(functools.partial(regs.translate, max_shift=2))(jnp.asarray(z), 5, -4)
    np.testing.assert_array_equal(shifted, regs.translate(jnp.asarray(z), 2, -2, max_shift=2))


def test_jitter_is_the_translate_its_key_draws():
    z = jnp.asarray(np.random.default_rng(4).normal(size=(6, 7, 2)), jnp.float32)
    for seed in range(5):
        key = jax.random.key(seed)
        shift = jax.random.randint(key, (2,), -2, 3)
        want = regs.translate(z, int(shift[0]), int(shift[1]), max_shift=2)
        np.testing.assert_array_equal(regs.jitter(2).transform(key, z), want)
        np.testing.assert_array_equal(jax.jit(regs.jitter(2).transform)(key, z), want)


# --- §4: the three ReLU rules through conv, ReLU and max-pool, written out by hand ---------


def _np_conv_same_transpose(r, kernel):
    """The adjoint of :func:`_np_conv_same` (without bias): flipped filters, channels swapped."""
    h, w = r.shape[1:3]
    out = np.zeros(r.shape[:1] + (h + 2, w + 2, kernel.shape[2]))
    for di in range(3):
        for dj in range(3):
            out[:, di : di + h, dj : dj + w] += r @ kernel[di, dj].T
    return out[:, 1:-1, 1:-1]


def _np_rule(pre, r, rule, upper=np.inf):
    forward_open = (pre > 0) & (pre < upper)
    if rule == "gradient":
        return r * forward_open
    if rule == "deconvnet":
        return r * (r > 0)
    return r * forward_open * (r > 0)


def _np_reconstruct_conv2(p, x, seed_fn, rule):
    """Back from conv2 (pre-activation) to the input of the tiny CNN: transpose conv2, unpool
    to the first maximum of each window (the forward switch), the ReLU rule at conv1, transpose
    conv1. ``seed_fn(a2)`` gives the signal placed on conv2's output."""
    a1 = _np_conv_same(x, p["conv1"]["kernel"], p["conv1"]["bias"])
    h1 = np.maximum(a1, 0)
    n, hh, ww, c = h1.shape
    windows = h1.reshape(n, hh // 2, 2, ww // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, hh // 2, ww // 2, c, 4)
    switch = np.argmax(windows, axis=-1)  # the first maximum, row-major in the window
    pooled = np.take_along_axis(windows, switch[..., None], axis=-1)[..., 0]
    a2 = _np_conv_same(pooled, p["conv2"]["kernel"], p["conv2"]["bias"])
    r = _np_conv_same_transpose(seed_fn(a2), p["conv2"]["kernel"])
    unpooled = np.zeros_like(windows)
    np.put_along_axis(unpooled, switch[..., None], r[..., None], axis=-1)
    r = unpooled.reshape(n, hh // 2, ww // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(h1.shape)
    r = _np_rule(a1, r, rule)
    ties = int(np.sum(np.sum(windows == pooled[..., None], axis=-1) > 1))
    return _np_conv_same_transpose(r, p["conv1"]["kernel"]), ties


def test_layer_reconstructions_are_the_hand_written_backward_passes(tiny_cnn):
    """Whole maps seeded by their activations and single neurons seeded by one, under every rule;
    windows where several ReLU outputs tie at zero exercise the switches."""
    logits_fn, params = tiny_cnn
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    images = np.asarray(jax.random.normal(jax.random.key(5), (2, 8, 8, 3)))
    channels, (i, j) = [0, 3, 5], (1, 2)
    x = images.astype(np.float64)
    results = {}
    for rule in RULES:
        maps = layer_reconstructions(logits_fn, params, jnp.asarray(images), jnp.array(channels), layer="conv2",
                                     rule=rule)
        for n, c in enumerate(channels):
            def seed(a2, c=c):
                out = np.zeros_like(a2)
                out[..., c] = a2[..., c]
                return out

            want, ties = _np_reconstruct_conv2(p, x, seed, rule)
            assert ties > 0
            np.testing.assert_allclose(maps.signals[:, n], want, atol=1e-5)
        neuron = layer_reconstruction(logits_fn, params, jnp.asarray(images), 2, layer="conv2", rule=rule,
                                      neuron=(i, j), weighting="ones")

        def one(a2):
            out = np.zeros_like(a2)
            out[:, i, j, 2] = 1.0
            return out

        want, _ = _np_reconstruct_conv2(p, x, one, rule)
        np.testing.assert_allclose(neuron.signals, want, atol=1e-6)
        results[rule] = want
    # The rules differ here only because the ReLU does; and they do differ.
    assert np.abs(results["gradient"] - results["deconvnet"]).max() > 1e-3
    assert np.abs(results["deconvnet"] - results["guided"]).max() > 1e-3


@pytest.mark.parametrize("rule", RULES)
def test_reconstructions_compose_with_vmap_and_jit(tiny_cnn, rule):
    logits_fn, params = tiny_cnn
    images = jax.random.normal(jax.random.key(6), (3, 8, 8, 3))

    def one(x):
        return layer_reconstruction(logits_fn, params, x[None], 4, layer="conv2", rule=rule, neuron="max").signals[0]

    batch = layer_reconstruction(logits_fn, params, images, 4, layer="conv2", rule=rule, neuron="max").signals
    assert float(jnp.max(jnp.abs(batch))) > 0
    np.testing.assert_allclose(jax.jit(jax.vmap(one))(images), batch, rtol=1e-5, atol=1e-6)


# --- second order through the rules ----------------------------------------------------------

MLP_SIZES = (5, 7, 6, 3)


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(7)
    return [rng.normal(size=(a, b)) for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:])] + [rng.normal(size=(5,))]


def _jax_mlp(x, w1, w2, w3):
    h = relu(x @ w1)
    h = jnp.tanh(h @ w2)
    return relu6(3 * h + 1.0) @ w3


def _np_mlp_signal(x, w1, w2, w3, rule, cls=1):
    """The rule's back-propagated signal of class ``cls`` through relu - tanh - relu6, by hand."""
    a1 = x @ w1
    t = np.tanh(np.maximum(a1, 0) @ w2)
    r = _np_rule(3 * t + 1.0, w3[:, cls], rule, upper=6.0)
    r = w2 @ (3 * r * (1 - t * t))
    return w1 @ _np_rule(a1, r, rule)


@pytest.mark.parametrize("rule", RULES)
def test_second_order_derivatives_through_the_rules(mlp, rule):
    """The rule's signal, its gradient w.r.t. the input and a weight (reverse over reverse) and
    its Jacobian (forward over reverse, jax.hessian's order) match the hand-written signal and
    its central differences; forward mode straight through the rectifier is refused, not wrong."""
    w1, w2, w3, x = mlp
    v = np.random.default_rng(8).normal(size=x.shape)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)

    def signal(x, w1, w2, w3):
        with backprop_rule(rule):
            return jax.grad(lambda y: _jax_mlp(y, w1, w2, w3)[1])(x)

    np.testing.assert_allclose(signal(f32(x), f32(w1), f32(w2), f32(w3)), _np_mlp_signal(x, w1, w2, w3, rule),
                               atol=1e-5)
    eps = 1e-6

    def central(fn, a, direction):
        return (fn(a + eps * direction) - fn(a - eps * direction)) / (2 * eps)

    gx, gw2 = jax.grad(lambda x, w2: jnp.vdot(signal(x, f32(w1), w2, f32(w3)), f32(v)), argnums=(0, 1))(f32(x), f32(w2))
    fd_x = np.array([central(lambda a: _np_mlp_signal(a, w1, w2, w3, rule) @ v, x, e) for e in np.eye(x.size)])
    np.testing.assert_allclose(gx, fd_x, atol=2e-5)
    fd_w2 = np.array([central(lambda a: _np_mlp_signal(x, w1, a, w3, rule) @ v, w2, e.reshape(w2.shape))
                      for e in np.eye(w2.size)]).reshape(w2.shape)
    np.testing.assert_allclose(gw2, fd_w2, atol=5e-5)
    jac = jax.jacfwd(lambda y: signal(y, f32(w1), f32(w2), f32(w3)))(f32(x))
    fd_jac = np.stack([central(lambda a: _np_mlp_signal(a, w1, w2, w3, rule), x, e) for e in np.eye(x.size)], axis=1)
    np.testing.assert_allclose(jac, fd_jac, atol=2e-5)
    if rule != "gradient":
        with backprop_rule(rule), pytest.raises(TypeError, match="forward-mode"):
            jax.jvp(lambda y: _jax_mlp(y, f32(w1), f32(w2), f32(w3)), (f32(x),), (f32(v),))


# --- a known limit: traces that JAX caches keep the rule they were made with ------------------

_W = np.abs(np.random.default_rng(10).normal(size=(4, 4))).astype(np.float32) * np.array([1, 1, -1, 1], np.float32)


def _block(x):  # one Python function object on every call, as a module-level helper is
    return relu(x @ _W)


def test_a_cached_control_flow_body_follows_the_rule():
    # JAX caches the traces of lax.cond / lax.scan / jax.checkpoint bodies by function object and
    # trace context; the rule is part of that context, so a reused body is traced again under a new rule
    x = jnp.array([1.0, -0.5, 0.3, 2.0])
    signs = jnp.array([1.0, -1.0, 1.0, -1.0])

    def plain(y):
        return jnp.sum(_block(y) * signs)

    def checkpointed(y):
        return jnp.sum(jax.checkpoint(_block)(y) * signs)

    for rule in ("gradient", "deconvnet"):
        with backprop_rule(rule):
            want = jax.grad(plain)(x)
            got = jax.grad(checkpointed)(x)
        np.testing.assert_allclose(got, want, rtol=1e-6)

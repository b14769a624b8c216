"""Hostile arguments to the attribution methods, the regularisers and the parametrisations.

Each one gets a ``ValueError`` naming the argument, or, where the argument is
valid, the right result at a cost that follows the image (never a hang, runaway
memory, NaN maps or a plausible wrong answer).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from saliency_jax import attribution as A
from saliency_jax import parametrization as P
from saliency_jax import regularizers as regs


def _images(key, shape=(2, 8, 8, 3)):
    return jax.random.uniform(key, shape, minval=0.0, maxval=255.0)


def _blur_reference(image, sigma, mode):
    """scipy's Gaussian filter as float64 tap sums (every tap, folded for ``"reflect"``), for any sigma."""
    out = np.asarray(image, np.float64)
    radius = int(4 * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    for axis in (0, 1):
        n = out.shape[axis]
        i, j = np.arange(n)[:, None], np.arange(n)[None, :]
        if mode == "constant":
            matrix = np.exp(-0.5 * ((j - i) / sigma) ** 2) / g.sum()
        else:
            folded = np.bincount(t % (2 * n), weights=g, minlength=2 * n)
            matrix = (folded[(j - i) % (2 * n)] + folded[(-j - 1 - i) % (2 * n)]) / g.sum()
        out = np.moveaxis(np.tensordot(matrix, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return out


# --- the blur and Blur IG: cost follows the image, not sigma ----------------------------------


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_gaussian_blur_cost_does_not_grow_with_max_sigma(mode, getkey):
    images = _images(getkey(), (1, 8, 6, 3))
    plain = A.gaussian_blur(images, 1.0, mode=mode)
    # A bound of 1e30 once meant a 8e30-tap kernel.
    np.testing.assert_array_equal(A.gaussian_blur(images, 1.0, mode=mode, max_sigma=1e30), plain)


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_gaussian_blur_of_a_kernel_wider_than_the_image(mode, getkey):
    """Past 64 taps per pixel the kernel's sums are taken in closed form: still scipy's blur."""
    image = _images(getkey(), (1, 8, 6, 3))[0]
    sigmas = np.array([100.0, 129.0, 1000.0, 1e5])  # 8 px: tap by tap up to sigma 128
    blurred = A.gaussian_blur(jnp.broadcast_to(image, (4, 8, 6, 3)), jnp.asarray(sigmas), mode=mode, max_sigma=1e5)
    for sigma, ours in zip(sigmas, np.asarray(blurred)):
        expected = _blur_reference(image, sigma, mode)
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(
        blurred[2], ndimage.gaussian_filter(np.asarray(image, np.float64), [1000, 1000, 0], mode=mode), rtol=1e-5
    )
    # Far past the image, reflection spreads every pixel evenly: the mean image.
    if mode == "reflect":
        wide = A.gaussian_blur(image[None], 3e38, mode=mode)[0]
        np.testing.assert_allclose(wide, np.broadcast_to(image.mean(axis=(0, 1)), image.shape), rtol=1e-5)


def test_blur_ig_with_a_huge_max_sigma_or_grad_step_stays_small(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (1, 8, 8, 3))
    for settings in ({"max_sigma": 1e30}, {"max_sigma": 1.0, "grad_step": 1e30}):
        out = A.blur_integrated_gradients(logits_fn, params, images, 1, steps=2, **settings)
        assert out.shape == images.shape and bool(jnp.isfinite(out).all())


def test_blur_ig_past_the_exact_taps_on_the_linear_model(linear_model, getkey):
    """Linear model: BlurIG = -sum_i ds_i * dx/ds(s_i) * W, with sigmas whose kernels pass 64 taps per pixel."""
    logits_fn, params = linear_model
    images = _images(getkey(), (1, 6, 5, 3))
    steps, max_sigma, grad_step = 2, 600.0, 50.0
    w = np.asarray(params["w"]).T[1].reshape(images.shape[1:])
    image = np.asarray(images[0], np.float64)
    sigmas = np.arange(steps + 1) * max_sigma / steps

    def blur(s):
        return _blur_reference(image, s, "constant") if s > 0 else image

    expected = sum(
        -(sigmas[i + 1] - sigmas[i]) * (blur(sigmas[i] + grad_step) - blur(sigmas[i])) / grad_step * w
        for i in range(steps)
    )
    ours = A.blur_integrated_gradients(logits_fn, params, images, 1, steps=steps, max_sigma=max_sigma,
                                       grad_step=grad_step)
    np.testing.assert_allclose(ours[0], expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize(
    "settings, argument",
    [
        ({"max_sigma": 1e39}, "max_sigma"),  # finite in float64, inf in float32
        ({"grad_step": 1e39}, "grad_step"),
        ({"max_sigma": 3e38, "grad_step": 3e38}, "max_sigma"),
        ({"sqrt": "no"}, "sqrt"),
        ({"sqrt": 1}, "sqrt"),
    ],
)
def test_blur_ig_refuses(tiny_cnn, getkey, settings, argument):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match=argument):
        A.blur_integrated_gradients(logits_fn, params, _images(getkey()), 1, steps=2, **settings)


def test_blur_ig_takes_numpy_bools(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey())
    np.testing.assert_array_equal(
        A.blur_integrated_gradients(logits_fn, params, images, 1, steps=2, max_sigma=2.0, sqrt=np.True_),
        A.blur_integrated_gradients(logits_fn, params, images, 1, steps=2, max_sigma=2.0, sqrt=True),
    )


@pytest.mark.parametrize(
    "kwargs, argument",
    [({"max_sigma": 1e39}, "max_sigma"), ({"max_sigma": 1.0, "sigma": 2.0}, "sigma"), ({"sigma": "2"}, "sigma")],
)
def test_gaussian_blur_refuses(getkey, kwargs, argument):
    kwargs = {"sigma": 1.0, **kwargs}
    with pytest.raises(ValueError, match=argument):
        A.gaussian_blur(_images(getkey()), kwargs.pop("sigma"), **kwargs)


# --- the wrappers ------------------------------------------------------------------------------


def test_vargrad_needs_two_samples(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images, key = _images(getkey()), getkey()
    with pytest.raises(ValueError, match="num_samples"):
        A.vargrad(logits_fn, params, images, 1, key=key, num_samples=1)  # its variance would be 0
    assert A.smoothgrad(logits_fn, params, images, 1, key=key, num_samples=1).shape == images.shape


def test_noise_wrappers_refuse_a_noise_scale_float32_cannot_hold(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match="noise_scale"):
        A.smoothgrad(logits_fn, params, _images(getkey()), 1, key=getkey(), num_samples=2, noise_scale=1e39)


def test_flip_shift_needs_a_bool(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey())
    with pytest.raises(ValueError, match="flips"):
        A.flip_shift_average(logits_fn, params, images, 1, shifts=(0,), flips="no")
    # One unflipped, unshifted copy is the gradient itself (to float rounding: the two are
    # compiled separately, and XLA may sum in another order on another CPU).
    np.testing.assert_allclose(
        A.flip_shift_average(logits_fn, params, images, 1, shifts=(0,), flips=np.False_),
        A.gradient(logits_fn, params, images, 1),
        rtol=1e-5,
        atol=1e-7,
    )


def test_for_classes_needs_a_method():
    with pytest.raises(ValueError, match="method"):
        A.for_classes("gradient")


# --- RISE's masks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"grid": 0}, "grid"),
        ({"grid": 9}, "grid"),  # larger than the 8x8 image, as rise refuses
        ({"grid": 2.0}, "grid"),
        ({"p": 2.0}, r"^p must"),
        ({"p": 0.0}, r"^p must"),
        ({"image_shape": (8.5, 8)}, "image_shape"),
        ({"image_shape": (8,)}, "image_shape"),
        ({"key": 0}, "key"),
        ({"num_masks": 0}, "num_masks"),
    ],
)
def test_rise_masks_refuses(getkey, kwargs, argument):
    kwargs = {"key": getkey(), "num_masks": 2, "image_shape": (8, 8), **kwargs}
    with pytest.raises(ValueError, match=argument):
        A.rise_masks(kwargs.pop("key"), kwargs.pop("num_masks"), kwargs.pop("image_shape"), **kwargs)


# --- baselines -------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["black", 1 + 2j, True, 1e39, np.full((8, 8, 3), 1e39)])
def test_integrated_gradients_refuses_a_bad_baseline(tiny_cnn, getkey, baseline):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match="baseline"):
        A.integrated_gradients(logits_fn, params, _images(getkey()), 1, steps=2, baseline=baseline)


@pytest.mark.parametrize("name", ["occlusion", "rise"])
def test_perturbation_baselines(tiny_cnn, getkey, name):
    logits_fn, params = tiny_cnn
    images, key = _images(getkey()), getkey()
    settings = {"patch": 4, "stride": 4} if name == "occlusion" else {"num_masks": 4, "grid": 2}
    method = A.METHODS[name].fn

    def call(baseline):
        return method(logits_fn, params, images, 1, key=key, baseline=baseline, **settings)

    for zero in (jnp.float32(0), np.array(0.0), np.float32(0)):  # concrete 0-d arrays are numbers
        np.testing.assert_array_equal(call(zero), call(0.0))
    for bad in (1e39, float("inf"), "0", True):
        with pytest.raises(ValueError, match="baseline") as info:
            call(bad)
        assert " ," not in str(info.value)


# --- attribution_map's size ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(4,), 8.0, (8, 8, 8), (8, 0), True, "8", 100_000, (2**14, 2**14 + 1)])
def test_attribution_map_refuses_a_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        A.attribution_map(jnp.ones((1, 4, 4)), size=size)


def test_attribution_map_reduces_low_precision_in_float32():
    # 300 in float16: its square (90,000) and a sum over 256 channels (76,800) pass float16's 65,504
    for reduction, expected in [("l2", 300 * np.sqrt(3)), ("sum_abs", 900.0), ("sum", 900.0), ("max_abs", 300.0)]:
        maps = A.attribution_map(jnp.full((1, 2, 2, 3), 300, jnp.float16), reduction=reduction)
        assert maps.dtype == jnp.float32
        np.testing.assert_allclose(maps, expected, rtol=1e-6)
    np.testing.assert_allclose(A.attribution_map(jnp.full((1, 1, 1, 256), 300, jnp.float16), reduction="sum"), 76800)
    np.testing.assert_array_equal(A.attribution_map(np.full((1, 1, 1, 2), -3, np.int8)), [[[3.0]]])
    with pytest.raises(ValueError, match="attributions must be real numbers"):
        A.attribution_map(jnp.ones((1, 2, 2, 3), jnp.complex64))


def test_attribution_map_takes_integer_sizes():
    maps = jnp.ones((1, 4, 4))
    assert A.attribution_map(maps, size=np.int64(8)).shape == (1, 8, 8)
    assert A.attribution_map(maps, size=[6, np.int32(8)]).shape == (1, 6, 8)
    assert A.attribution_map(maps, size=np.array([6, 8])).shape == (1, 6, 8)


# --- regularisers -------------------------------------------------------------------------------


def _shifted(reg, key, shape=(16, 16, 3)):
    z = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    return reg.transform(key, z)


def test_integer_settings_take_numpy_integers(getkey):
    key = getkey()
    np.testing.assert_array_equal(_shifted(regs.jitter(np.int64(2)), key), _shifted(regs.jitter(2), key))
    z = jnp.asarray(np.random.default_rng(1).normal(size=(16, 16, 3)), jnp.float32)
    np.testing.assert_array_equal(
        regs.blur_every(np.int64(2), 1.0).project(key, z, jnp.int32(1)),
        regs.blur_every(2, 1.0).project(key, z, jnp.int32(1)),
    )


def test_scalar_settings_take_concrete_0d_arrays():
    z = jnp.arange(12.0).reshape(2, 2, 3)
    for weight in (jnp.float32(0.5), np.array(0.5), np.float32(0.5)):
        np.testing.assert_allclose(regs.l2_penalty(weight).penalty(z), regs.l2_penalty(0.5).penalty(z))


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: regs.jitter(True), "pixels"),
        (lambda: regs.blur_every(True, 1.0), "every"),
        (lambda: regs.blur_every(2**40, 1.0), "every"),
        (lambda: regs.clip_pixels("a", 1.0), "low"),
        (lambda: regs.clip_pixels(0.0, None), "high"),
        (lambda: regs.l2_penalty(1e39), "weight"),  # finite in float64, inf in float32
        (lambda: regs.total_variation(1e39), "weight"),
    ],
)
def test_regularizers_refuse(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("pixels", [16, 10**10])
def test_jitter_wider_than_the_image_names_pixels(getkey, pixels):
    with pytest.raises(ValueError, match="pixels"):
        _shifted(regs.jitter(pixels), getkey())


# --- parametrisations ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8.5, 8, 3), (8, 8, "3"), (8.0, 8, 3), (8, True, 3), None, "abc", (8, 8)])
def test_parametrizations_refuse_a_shape_that_is_not_integers(shape):
    with pytest.raises(ValueError, match="image_shape"):
        P.pixel_parametrization(shape)
    with pytest.raises(ValueError, match="image_shape"):
        P.fourier_parametrization(shape)


def test_parametrizations_take_numpy_integer_shapes():
    shape = (np.int64(8), np.int32(8), 3)
    assert P.pixel_parametrization(shape).image_shape == (8, 8, 3)
    assert P.fourier_parametrization(shape).image_shape == (8, 8, 3)


@pytest.mark.parametrize("decay", [float("inf"), float("nan"), 1000.0, "1", None, -1.0])
def test_fourier_refuses_a_decay_float32_cannot_follow(decay):
    with pytest.raises(ValueError, match="decay"):
        P.fourier_parametrization((8, 8, 3), decay=decay)


def test_fourier_refuses_a_string_decorrelate():
    with pytest.raises(ValueError, match="decorrelate"):
        P.fourier_parametrization((8, 8, 3), decorrelate="no")
    assert P.fourier_parametrization((8, 8, 1), decorrelate=np.False_).image_shape == (8, 8, 1)


@pytest.mark.parametrize("shape, decay", [((8, 8, 3), 39.0), ((1, 2, 3), 1e4)])
def test_fourier_with_a_large_valid_decay_is_finite_and_invertible(shape, decay):
    param = P.fourier_parametrization(shape, decay=decay)
    variable = jnp.ones((shape[0], shape[1] // 2 + 1, 3, 2))
    image = param.to_image(variable)
    assert bool(jnp.isfinite(image).all())
    z = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    np.testing.assert_allclose(param.to_image(param.from_image(z)), z, rtol=1e-4, atol=1e-4)


def test_occlusion_takes_a_0d_patch_and_names_an_array_baseline(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey())
    expected = A.occlusion(logits_fn, params, images, 1, patch=4, stride=4)
    np.testing.assert_array_equal(A.occlusion(logits_fn, params, images, 1, patch=jnp.int32(4), stride=np.int64(4)),
                                  expected)
    with pytest.raises(ValueError, match=r"^baseline must be a finite number, got an array of shape \(8, 8, 3\)$"):
        A.occlusion(logits_fn, params, images, 1, patch=4, stride=4, baseline=np.zeros((8, 8, 3)))


@pytest.mark.parametrize("key", [0, np.zeros(2, np.float32), jax.random.split(jax.random.key(0), 2)])
def test_flip_shift_names_a_bad_key(tiny_cnn, getkey, key):
    """Once a TypeError from inside JAX's PRNG."""
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match="^key must be"):
        A.flip_shift_average(logits_fn, params, _images(getkey()), 1, key=key)

"""Tests for saliency_jax.parametrization: invertibility, the zero start, the 1/f spectrum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import parametrization as P

SHAPES = [(8, 8, 3), (9, 7, 3), (6, 10, 1)]


def _param(kind, shape):
    if kind == "pixels":
        return P.pixel_parametrization(shape)
    return P.fourier_parametrization(shape, decorrelate=shape[-1] == 3)


@pytest.mark.parametrize("kind", ["pixels", "fourier"])
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_and_zero_start(kind, shape):
    param = _param(kind, shape)
    z = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    to_image, from_image = jax.jit(param.to_image), jax.jit(param.from_image)
    np.testing.assert_allclose(to_image(from_image(z)), z, atol=1e-5)
    image = to_image(param.init())
    assert image.shape == shape and image.dtype == jnp.float32
    np.testing.assert_array_equal(image, 0.0)


@pytest.mark.parametrize("shape", SHAPES)
def test_fourier_is_linear(shape):
    param = _param("fourier", shape)
    rng = np.random.default_rng(1)
    a, b = (jnp.asarray(rng.normal(size=param.init().shape), jnp.float32) for _ in range(2))
    to_image = jax.jit(param.to_image)
    np.testing.assert_allclose(to_image(2 * a - b), 2 * to_image(a) - to_image(b), atol=1e-4)


def test_spectrum_scale_is_one_over_f_with_unit_rms():
    scale = P.spectrum_scale(32, 32, decay=1.0)
    assert scale.shape == (32, 17)
    assert float(np.sqrt(np.mean(scale**2))) == pytest.approx(1.0, rel=1e-5)
    # 1/f: twice the frequency, half the amplitude; DC floored at one cycle per image.
    assert scale[0, 2] / scale[0, 4] == pytest.approx(2.0, rel=1e-5)
    assert scale[0, 0] == pytest.approx(scale[0, 1], rel=1e-5)
    np.testing.assert_allclose(P.spectrum_scale(16, 16, decay=0.0), 1.0, rtol=1e-6)


def test_white_spectrum_gives_unit_variance_pixels():
    param = P.fourier_parametrization((64, 64, 1), decay=0.0, decorrelate=False)
    variable = jax.random.normal(jax.random.key(0), param.init().shape)
    image = param.to_image(variable)
    # The orthonormal FFT keeps energy; only the discarded imaginary parts of the
    # self-conjugate coefficients make the variance a little less than 1.
    assert 0.85 < float(jnp.var(image)) < 1.15


def test_low_frequencies_move_the_image_more():
    param = P.fourier_parametrization((32, 32, 1), decorrelate=False)
    low = param.init().at[0, 1, 0, 0].set(1.0)
    high = param.init().at[0, 8, 0, 0].set(1.0)
    assert float(jnp.std(param.to_image(low))) == pytest.approx(8 * float(jnp.std(param.to_image(high))), rel=1e-3)


def test_colour_mixing_is_a_normalised_covariance_root():
    mixing = P.colour_mixing_matrix()
    np.testing.assert_allclose(mixing, mixing.T, atol=1e-6)
    assert float(np.linalg.norm(mixing, axis=0).max()) == pytest.approx(1.0, rel=1e-5)
    product = mixing @ mixing.T
    cov = P.NATURAL_RGB_COVARIANCE
    np.testing.assert_allclose(product / product[0, 0], cov / cov[0, 0], rtol=1e-4)
    # Channels are strongly correlated: the luminance direction dominates.
    values = np.linalg.eigvalsh(cov)
    assert values[-1] > 5 * values[-2]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="image_shape"):
        P.pixel_parametrization((8, 8))
    with pytest.raises(ValueError, match="decorrelate"):
        P.fourier_parametrization((8, 8, 1))
    with pytest.raises(ValueError, match="decay"):
        P.fourier_parametrization((8, 8, 3), decay=-1.0)
    with pytest.raises(ValueError, match="parametrization must be one of"):
        P.make_parametrization("wavelets", (8, 8, 3))
    with pytest.raises(ValueError, match="image_shape is"):
        P.make_parametrization(P.pixel_parametrization((8, 8, 3)), (9, 9, 3))
    with pytest.raises(ValueError, match="positive definite"):
        P.colour_mixing_matrix(-np.eye(3))


@pytest.mark.parametrize(
    "covariance, match",
    [
        ([[1, 5, 5], [0, 1, 5], [0, 0, 1]], r"^covariance must be symmetric, got covariance\[0, 1\] = 5 but "
                                             r"covariance\[1, 0\] = 0"),  # once the identity
        (np.tril(P.NATURAL_RGB_COVARIANCE), "^covariance must be symmetric"),
        (np.ones((3, 3)), "^covariance must be positive definite"),  # singular: its root cannot be inverted
        (np.diag([1.0, 1.0, -1.0]), "^covariance must be positive definite"),
        ([[1.0, np.nan], [np.nan, 1.0]], "^covariance contains NaN"),
        ("abc", r"^covariance must be a \[C, C\] matrix of numbers, got dtype <U3"),
        ([[1, 0], [0]], r"^covariance must be a \[C, C\] matrix of numbers"),
        (np.eye(3)[:2], r"^covariance must be a square \[C, C\] matrix"),
        (np.zeros((0, 0)), r"^covariance must be a square \[C, C\] matrix with C >= 1"),
    ],
    ids=["upper-triangular", "lower-triangular", "singular", "indefinite", "nan", "string", "ragged", "not-square",
         "empty"],
)
def test_colour_mixing_matrix_refuses_what_is_not_a_covariance(covariance, match):
    with pytest.raises(ValueError, match=match):
        P.colour_mixing_matrix(covariance)


def test_colour_mixing_matrix_takes_a_covariance_with_rounding():
    samples = np.random.default_rng(0).normal(size=(3, 200))
    covariance = np.cov(samples)
    covariance[0, 1] *= 1 + 1e-12  # np.cov's own rounding may leave such asymmetries
    mixing = P.colour_mixing_matrix(covariance)
    product = mixing.astype(np.float64) @ mixing.T
    np.testing.assert_allclose(product / product[0, 0], covariance / covariance[0, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("height, width, name", [(0, 5, "height"), (5, 0, "width"), (2.5, 5, "height"),
                                                 (5, "5", "width"), (True, 5, "height")])
def test_max_decay_refuses_sizes_that_are_not_positive_integers(height, width, name):
    """max_decay(0, 5) was a ZeroDivisionError."""
    with pytest.raises(ValueError, match=f"^{name} must be an integer >= 1"):
        P.max_decay(height, width)
    assert P.max_decay(np.int64(8), 8) == pytest.approx(P.max_decay(8, 8))

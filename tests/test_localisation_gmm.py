"""Colour mixtures: fitted with scikit-learn, deterministic, with the few-colours fallback."""

import numpy as np
import pytest

from saliency_jax.localisation import GraphCutConfig, Seeds, colour_costs, fit_colour_model, fit_colour_models


def _two_colour_image(rng):
    image = np.zeros((20, 20, 3))
    image[:, :10] = [220, 30, 30]
    image[:, 10:] = [30, 200, 40]
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255)


def test_each_model_prefers_its_own_colour():
    rng = np.random.default_rng(0)
    image = _two_colour_image(rng)
    left = np.zeros((20, 20), bool)
    left[:, :4] = True
    right = np.zeros((20, 20), bool)
    right[:, 14:] = True
    models = fit_colour_models(image, Seeds(left, right, 1.0, 0.0))
    fg_cost, bg_cost = colour_costs(models, image)
    assert fg_cost.shape == bg_cost.shape == (20, 20)
    # Every red pixel is cheaper as foreground, every green one as background.
    assert (fg_cost[:, :10] < bg_cost[:, :10]).all()
    assert (fg_cost[:, 10:] > bg_cost[:, 10:]).all()
    # The costs are negative log-likelihoods: exp(-cost) integrates to 1 over [0, 1]^3,
    # so they equal -score_samples of the models on colours / 255.
    np.testing.assert_allclose(fg_cost.ravel(), -models.foreground.score_samples(image.reshape(-1, 3) / 255))


def test_fit_is_deterministic_and_uses_the_seed():
    pixels = np.random.default_rng(1).random((3000, 3))
    a = fit_colour_model(pixels, seed=3)
    b = fit_colour_model(pixels, seed=3)
    c = fit_colour_model(pixels, seed=4)
    np.testing.assert_array_equal(a.means_, b.means_)
    assert not np.array_equal(a.means_, c.means_)


def test_subsampling_caps_the_fitted_pixels():
    pixels = np.random.default_rng(1).random((5000, 3))
    model = fit_colour_model(pixels, max_samples=50, num_components=5)
    assert model.n_components == 5
    assert np.isfinite(model.score_samples(pixels)).all()


@pytest.mark.parametrize("count, distinct, expected", [(1, 1, 1), (3, 3, 3), (40, 2, 2), (40, 40, 5)])
def test_fewer_distinct_colours_than_components_fall_back_to_one_component_each(count, distinct, expected):
    colours = np.random.default_rng(2).random((distinct, 3))
    pixels = colours[np.arange(count) % distinct]
    model = fit_colour_model(pixels, num_components=5)
    assert model.n_components == expected
    assert np.isfinite(model.score_samples(pixels)).all()
    # A flat colour is far more likely than a distant one.
    assert model.score_samples(pixels[:1]) > model.score_samples(1 - pixels[:1])


def test_empty_or_misshapen_pixels_raise():
    with pytest.raises(ValueError, match=r"pixels must have shape \[N, 3\]"):
        fit_colour_model(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"pixels must have shape \[N, 3\]"):
        fit_colour_model(np.zeros((10, 4)))


def test_config_settings_reach_the_mixtures():
    rng = np.random.default_rng(0)
    image = _two_colour_image(rng)
    fg = np.zeros((20, 20), bool)
    fg[:, :10] = True
    models = fit_colour_models(image, Seeds(fg, ~fg, 1.0, 0.0), GraphCutConfig(num_components=2, gmm_reg_covar=0.01))
    assert models.foreground.n_components == models.background.n_components == 2
    # reg_covar is a floor on every variance.
    assert (np.diagonal(models.foreground.covariances_, axis1=1, axis2=2) >= 0.01).all()


def _seeded_two_colour_image():
    image = _two_colour_image(np.random.default_rng(0))
    left = np.zeros((20, 20), bool)
    left[:, :4] = True
    right = np.zeros((20, 20), bool)
    right[:, 14:] = True
    return image, Seeds(left, right, 1.0, 0.0)


def test_colour_models_read_images_on_the_scale_localise_reads():
    """A 0-1 float image was divided by 255 again: costs of near-black colours, silently wrong."""
    image, seeds = _seeded_two_colour_image()
    models = fit_colour_models(image, seeds)
    expected = colour_costs(models, image)
    for same in (image / 255.0, (image / 255.0).astype(np.float32)):
        np.testing.assert_allclose(colour_costs(models, same), expected, rtol=1e-5)
        np.testing.assert_allclose(colour_costs(fit_colour_models(same, seeds), image), expected, rtol=1e-5)
    # uint8 on 0-255; grey images are repeated to three channels, as localise does.
    whole = np.round(image).astype(np.uint8)
    np.testing.assert_allclose(colour_costs(models, whole), colour_costs(models, whole.astype(np.float64)))
    grey = image.mean(axis=-1)
    np.testing.assert_allclose(colour_costs(models, grey), colour_costs(models, np.repeat(grey[..., None], 3, -1)))
    grey_models = fit_colour_models(grey, seeds)
    assert grey_models.foreground.means_.shape[1] == 3
    # 0/1 integer seeds are masks, not pixel indices.
    int_seeds = Seeds(seeds.foreground.astype(int), seeds.background.astype(np.uint8), 1.0, 0.0)
    np.testing.assert_array_equal(fit_colour_models(image, int_seeds).foreground.means_, models.foreground.means_)

"""Hostile input to the localisation: a clear ValueError naming the argument, never a hang or a wrong result."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from saliency_jax.localisation import (
    GraphCutConfig,
    Seeds,
    build_graph,
    colour_costs,
    contrast_weights,
    fit_colour_model,
    fit_colour_models,
    graphcut_segment,
    largest_component,
    localise,
    localise_classes,
    localise_many,
    localise_photo,
    log_likelihood,
    most_salient_component,
    quantile_seeds,
    saliency_prior,
    support_mask,
)


def _graph_inputs():
    """A 4x4 image, costs that prefer the centre as foreground, and seeds of a ramp map."""
    image = np.random.default_rng(0).uniform(0, 255, (4, 4, 3))
    fg, bg = np.ones((4, 4)), np.zeros((4, 4))
    fg[1:3, 1:3], bg[1:3, 1:3] = 0.0, 5.0
    return image, fg, bg, quantile_seeds(np.arange(16.0).reshape(4, 4))


def _scene(size=24):
    """A red square on a green background and a map peaking on the square."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    obj = (abs(yy - size // 2) < size // 4) & (abs(xx - size // 2) < size // 4)
    image = np.where(obj[..., None], [200, 40, 30], [50, 160, 60]) + rng.normal(0, 10, (size, size, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    saliency = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size**2 / 16)) + 0.1 * rng.random((size, size))
    return image, saliency


# --- GraphCut: nothing non-finite reaches max-flow -------------------------------------------------


@pytest.mark.parametrize(
    "change, name",
    [
        (lambda a: a.update(image=np.full((4, 4, 3), np.nan)), "image"),
        (lambda a: a["image"].__setitem__((0, 0, 0), np.inf), "image"),
        (lambda a: a["foreground_cost"].__setitem__((1, 1), np.nan), "foreground_cost"),
        (lambda a: a["background_cost"].__setitem__((1, 1), -np.inf), "background_cost"),
        (lambda a: a.update(pairwise_weight=np.inf, hard_seeds="both"), "pairwise_weight"),
        (lambda a: a.update(pairwise_weight=np.nan), "pairwise_weight"),
        (lambda a: a.update(pairwise_weight=-50.0), "pairwise_weight"),
        (lambda a: a.update(pairwise_weight="50"), "pairwise_weight"),
        (lambda a: a.update(neighbourhood=6), "neighbourhood"),
        (lambda a: a.update(neighbourhood=4.0), "neighbourhood"),
        (lambda a: a.update(hard_seeds=["both"]), "hard_seeds"),
        (lambda a: a.update(foreground_cost=np.ones((3, 4))), r"foreground_cost must have the image's height"),
        (lambda a: a.update(background_cost=np.zeros((4, 4, 1))), r"background_cost must have the image's height"),
        (lambda a: a.update(image=np.zeros((4, 4, 4))), r"image must have shape \[H, W, 3\]"),
        (lambda a: a.update(image=np.zeros((0, 4, 3))), "image must not be empty"),
        (lambda a: a.update(hard_seeds="both", seeds=Seeds(np.eye(3, dtype=bool), np.eye(3, dtype=bool), 1, 0)),
         "seeds.foreground must have the image's height"),
    ],
    ids=["nan-image", "inf-pixel", "nan-fg-cost", "inf-bg-cost", "inf-weight-hard", "nan-weight", "negative-weight",
         "string-weight", "neighbourhood-6", "float-neighbourhood", "list-hard-seeds", "fg-cost-shape",
         "bg-cost-shape", "four-channels", "empty", "seed-shape"],
)
def test_build_graph_refuses_bad_input_naming_the_argument(change, name):
    image, fg, bg, seeds = _graph_inputs()
    args = dict(image=image, foreground_cost=fg, background_cost=bg, seeds=seeds, pairwise_weight=50.0,
                neighbourhood=8, hard_seeds="none")
    change(args)
    with pytest.raises(ValueError, match=name):
        build_graph(args.pop("image"), args.pop("foreground_cost"), args.pop("background_cost"), args.pop("seeds"),
                    **args)


def test_graphcut_of_the_audits_reproducers_raises_instead_of_hanging():
    # Max-flow never returns on these (nor does Ctrl-C stop it): run them where a
    # regression times out instead of hanging the suite.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("saliency_jax")
        package.__path__ = [{os.path.join(root, "saliency_jax")!r}]
        sys.modules["saliency_jax"] = package
        import numpy as np
        from saliency_jax.localisation import graphcut_segment, quantile_seeds
        fg = np.ones((4, 4)); bg = np.zeros((4, 4)); fg[1:3, 1:3] = 0; bg[1:3, 1:3] = 5
        seeds = quantile_seeds(np.arange(16.).reshape(4, 4))
        image = np.random.default_rng(0).uniform(0, 255, (4, 4, 3))
        for args, kwargs in [((np.full((4, 4, 3), np.nan), fg, bg, seeds), {{}}),
                             ((image, fg, bg, seeds), dict(pairwise_weight=np.inf, hard_seeds="both")),
                             ((image * 1e200, fg, bg, seeds), dict(pairwise_weight=2.0)),
                             ((image, fg, bg, seeds), dict(pairwise_weight=2.0))]:
            try:
                print("MASK", graphcut_segment(*args, **kwargs).astype(int).ravel().tolist())
            except ValueError as error:
                print("ERROR", error)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ERROR image contains NaN")
    assert lines[1].startswith("ERROR pairwise_weight must be a finite number >= 0")
    # A huge but finite image cuts as the same image at the usual scale.
    assert lines[2].startswith("MASK") and lines[2] == lines[3]


def test_contrast_weights_of_huge_or_tiny_images_are_those_of_the_image():
    image = _graph_inputs()[0]
    expected = contrast_weights(image, 50.0, 8)
    for scale in (1e200, 1e-200, -1.0):
        for (offset, weights), (same_offset, same) in zip(contrast_weights(image * scale, 50.0, 8), expected):
            assert offset == same_offset
            np.testing.assert_allclose(weights, same, rtol=1e-12)
    with pytest.raises(ValueError, match="neighbourhood must be 4 or 8"):
        contrast_weights(image, 50.0, 6)


def test_costs_whose_capacities_overflow_are_refused():
    image, fg, bg, seeds = _graph_inputs()
    huge = np.where(fg > 0, 1e308, -1e308)
    with pytest.raises(ValueError, match="foreground_cost, background_cost and pairwise_weight are too large"):
        build_graph(image, huge, -huge, seeds)
    with pytest.raises(ValueError, match="too large"):
        build_graph(image, fg, bg, seeds, pairwise_weight=1e308, hard_seeds="both")


def test_a_grey_image_cuts_like_its_colour_copy():
    image, fg, bg, seeds = _graph_inputs()
    grey = image.mean(axis=-1)
    colour = np.repeat(grey[..., None], 3, axis=-1)
    np.testing.assert_array_equal(graphcut_segment(grey, fg, bg, seeds, pairwise_weight=2.0),
                                  graphcut_segment(colour, fg, bg, seeds, pairwise_weight=2.0))


# --- GraphCutConfig and the other settings: numpy scalars in, plain numbers stored --------------------


@pytest.mark.parametrize(
    "field, value, plain",
    [
        ("num_components", np.int64(3), 3),
        ("seed", np.uint8(7), 7),
        ("max_side", np.array(40), 40),
        ("neighbourhood", np.int32(4), 4),
        ("foreground_quantile", np.float32(0.5), 0.5),
        ("support", np.float64(0.25), 0.25),
        ("saliency_weight", np.float32(2.0), 2.0),
        ("pairwise_weight", np.array(10.0), 10.0),
        ("gmm_reg_covar", np.float64(0.01), 0.01),
    ],
)
def test_config_accepts_numpy_scalars_and_stores_plain_numbers(field, value, plain):
    config = GraphCutConfig(**{field: value})
    assert type(getattr(config, field)) is type(plain) and getattr(config, field) == plain
    assert config == GraphCutConfig(**{field: plain}) and hash(config) == hash(GraphCutConfig(**{field: plain}))


@pytest.mark.parametrize(
    "field, value",
    [
        ("gmm_reg_covar", np.inf),
        ("gmm_reg_covar", 1e300),
        ("gmm_reg_covar", 1.5),
        ("gmm_reg_covar", np.nan),
        ("num_components", np.float64(3.0)),
        ("num_components", "3"),
        ("seed", True),
        ("seed", np.bool_(True)),
        ("max_side", np.array([40])),
        ("foreground_quantile", "0.9"),
        ("foreground_quantile", np.nan),
        ("support", True),
        ("support", np.float32(np.inf)),
        ("saliency_weight", np.inf),
        ("connectivity", 2.0),
        ("component", ["largest"]),
    ],
)
def test_config_refuses_bad_numbers_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        GraphCutConfig(**{field: value})


def test_a_bounded_reg_covar_still_localises():
    image, saliency = _scene()
    assert localise(image, saliency, GraphCutConfig(gmm_reg_covar=1.0)).mask.any()
    with pytest.raises(ValueError, match="reg_covar must be a finite number in"):
        fit_colour_model(np.zeros((4, 3)), reg_covar=np.inf)
    with pytest.raises(ValueError, match="pixels contains 12 NaN"):
        fit_colour_model(np.full((4, 3), np.nan))


def test_localise_many_accepts_numpy_counts_and_refuses_booleans():
    image, saliency = _scene(12)
    [found] = localise_many([image], [saliency], processes=np.int64(1), chunksize=np.int64(1))
    np.testing.assert_array_equal(found.box, localise(image, saliency).box)
    with pytest.raises(ValueError, match="chunksize must be an integer >= 1"):
        localise_many([image], [saliency], processes=1, chunksize=True)
    with pytest.raises(ValueError, match="processes must be None or an integer >= 1"):
        localise_many([image], [saliency], processes=True)


def test_localise_many_refuses_one_image_and_bad_settings_naming_them():
    image, saliency = _scene(12)
    # One image and map were once taken as lists of rows: "image 0: saliency must have shape [H, W]".
    with pytest.raises(ValueError, match=r"saliency_maps must be N maps .* got one map .* call localise"):
        localise_many([image], saliency, processes=1)
    with pytest.raises(ValueError, match=r"images must be N images .* got one image .* call localise"):
        localise_many(image, [saliency], processes=1)
    with pytest.raises(ValueError, match="progress must be True or False, got 'no'"):
        localise_many([image], [saliency], processes=1, progress="no")
    with pytest.raises(ValueError, match="start_method must be one of .* got 'bogus'"):
        localise_many([image], [saliency], processes=2, start_method="bogus")


@pytest.mark.parametrize("value", ["0.9", np.array([0.9]), None, np.nan, True, 1.0])
def test_quantile_seeds_refuse_a_bad_quantile_naming_it(value):
    with pytest.raises(ValueError, match="foreground_quantile must be a finite number in"):
        quantile_seeds(np.arange(16.0).reshape(4, 4), value)


def test_quantile_seeds_accept_numpy_quantiles():
    saliency = np.arange(16.0).reshape(4, 4)
    expected = quantile_seeds(saliency, 0.75, 0.25)
    found = quantile_seeds(saliency, np.float32(0.75), np.array(0.25))
    np.testing.assert_array_equal(found.foreground, expected.foreground)
    np.testing.assert_array_equal(found.background, expected.background)


def test_prior_and_support_check_their_settings():
    saliency = np.arange(16.0).reshape(4, 4)
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        saliency_prior(saliency, -1.0)
    with pytest.raises(ValueError, match=r"support must be a finite number in \[0, 1\)"):
        support_mask(saliency, 1.5)


# --- classes of localise_classes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "classes",
    [[1.7, 2.2], [1.0, 2.0], [True, False], [-1, 2], [[1], [2]], ["a", "b"], [1, [2]], 3],
    ids=["fractions", "whole-floats", "bools", "negative", "nested", "strings", "ragged", "scalar"],
)
def test_localise_classes_refuses_classes_that_are_not_ids(classes):
    image, saliency = _scene(12)
    with pytest.raises(ValueError, match=r"^classes must be a sequence of class ids \(integers >= 0\)"):
        localise_classes(image, np.stack([saliency, saliency.T]), classes)


def test_localise_classes_accepts_integer_arrays():
    image, saliency = _scene(12)
    found = localise_classes(image, np.stack([saliency, saliency.T]), np.array([7, 3], np.uint8))
    assert found.classes.dtype == np.int64 and found.classes.tolist() == [7, 3]


# --- the map's scale and the image's scale -----------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-50, 1e-30, 1e30, 1e39, 1e300])
@pytest.mark.parametrize("max_side", [8, 12, 0], ids=["both-resized", "map-at-working-size", "map-resized"])
def test_photo_localisation_does_not_depend_on_the_maps_scale(scale, max_side):
    image, saliency = _scene()
    small = saliency[::2, ::2]  # a map of another size than the photo: always resized
    config = GraphCutConfig(max_side=max_side)
    expected = localise_photo(image, small, config).box
    np.testing.assert_array_equal(localise_photo(image, small * scale, config).box, expected)


def test_a_constant_map_at_photo_resolution_is_reported_as_constant():
    image, _ = _scene()
    with pytest.raises(ValueError, match=r"saliency is constant \(every value is 1e\+39\)"):
        localise_photo(image, np.full((6, 6), 1e39), GraphCutConfig(max_side=12))


def test_a_map_beyond_float64s_range_keeps_its_ranking():
    saliency = np.array([[1.7e308, -1.7e308, 1e308, 1e308]])
    np.testing.assert_array_equal(most_salient_component(np.array([[1, 0, 1, 1]], bool), saliency),
                                  [[False, False, True, True]])
    np.testing.assert_array_equal(support_mask(saliency, 0.4), [[False, True, False, False]])
    np.testing.assert_allclose(saliency_prior(saliency, 1.0)[1], [[1.0, 0.0, 2.7 / 3.4, 2.7 / 3.4]])


def test_float_images_follow_the_readers_scale_rule():
    # As saliency_jax.io reads images: floats all within [0, 1] are on 0-1, others on 0-255.
    image, saliency = _scene()
    expected = localise(image, saliency).box
    for same in (image.astype(np.float64), image / 255.0, (image / 255.0).astype(np.float32)):
        np.testing.assert_array_equal(localise(same, saliency).box, expected)
        np.testing.assert_array_equal(localise_photo(same, saliency, GraphCutConfig(max_side=12)).box,
                                      localise_photo(image, saliency, GraphCutConfig(max_side=12)).box)
    with pytest.raises(ValueError, match=r"image must be on the 0-255 scale \(or, for floats, all within \[0, 1\]\)"):
        localise(image - 256.0, saliency)


# --- colour models and components: a clear error instead of a deep traceback or a wrong answer ---------


def test_most_salient_component_refuses_a_non_finite_map():
    """One NaN pixel once made every total NaN, and the 1-pixel component won over the 171-pixel one."""
    mask = np.zeros((20, 20), bool)
    mask[0, 0] = True  # 1 pixel, first in row-major order
    mask[5:14, 1:20] = True  # 9 x 19 = 171 pixels
    saliency = np.ones((20, 20))
    saliency[5:14, 1:20] = 2.0
    big = most_salient_component(mask, saliency)
    assert big.sum() == 171 and not big[0, 0]
    for bad in (np.nan, np.inf, -np.inf):
        saliency[10, 10] = bad
        with pytest.raises(ValueError, match="^saliency contains 1 NaN or infinite values"):
            most_salient_component(mask, saliency)


def _colour_inputs():
    image = np.random.default_rng(0).uniform(0, 255, (20, 30, 3))
    fg = np.zeros((20, 30), bool)
    fg[:5, :5] = True
    bg = np.zeros((20, 30), bool)
    bg[10:, 10:] = True
    seeds = Seeds(fg, bg, 1.0, 0.0)
    return image, seeds, fit_colour_models(image, seeds)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda image, seeds, models: fit_colour_models(image, Seeds(seeds.foreground[:10], seeds.background, 1, 0)),
         r"^seeds.foreground must have the image's height and width \(20, 30\), got shape \(10, 30\)"),
        (lambda image, seeds, models: fit_colour_models(image, (seeds.foreground, seeds.background)),
         "^seeds must be Seeds"),
        (lambda image, seeds, models: fit_colour_models(image, Seeds(seeds.foreground, np.zeros((20, 30)), 1, 0)),
         "^seeds.background must select at least one pixel"),
        (lambda image, seeds, models: fit_colour_models(image, seeds, None), "^config must be a GraphCutConfig"),
        (lambda image, seeds, models: fit_colour_models(image[..., :2], seeds), r"^image must have shape \[H, W, 3\]"),
        (lambda image, seeds, models: fit_colour_models(image - 300, seeds), "^image must be on the 0-255 scale"),
        (lambda image, seeds, models: colour_costs(models, image[..., 0:2]), r"^image must have shape \[H, W, 3\]"),
        (lambda image, seeds, models: colour_costs(models, np.full((4, 4), np.nan)), "^image contains NaN"),
        (lambda image, seeds, models: colour_costs(models.foreground, image), "^models must be ColourModels"),
        (lambda image, seeds, models: log_likelihood(models.foreground, np.zeros(3)),
         r"^colours must have shape \[N, 3\], got shape \(3,\)"),
        (lambda image, seeds, models: log_likelihood(models.foreground, np.zeros((5, 4))),
         r"^colours must have shape \[N, 3\], got shape \(5, 4\)"),
        (lambda image, seeds, models: log_likelihood(models.foreground, np.full((5, 3), np.nan)),
         "^colours contains 15 NaN"),
        (lambda image, seeds, models: log_likelihood("abc", np.zeros((5, 3))), "^model must be a GaussianMixture"),
        (lambda image, seeds, models: fit_colour_model("abc"), r"^pixels must be \[N, 3\] colours \(numbers\)"),
        (lambda image, seeds, models: fit_colour_model(image.reshape(-1, 3)),
         r"^pixels must be colours scaled to \[0, 1\]"),
        (lambda image, seeds, models: most_salient_component(seeds.foreground, "abc"),
         r"^saliency must be a real-valued \[H, W\] map"),
        (lambda image, seeds, models: most_salient_component(seeds.foreground, np.ones((20, 3))),
         r"^saliency must have the mask's shape \(20, 30\)"),
        (lambda image, seeds, models: most_salient_component(seeds.foreground, np.ones((20, 30)), 2.0),
         "^connectivity must be 1 or 2"),
        (lambda image, seeds, models: largest_component(np.zeros((0, 0), bool)),
         r"^mask must have at least one pixel, got shape \(0, 0\)"),
        (lambda image, seeds, models: most_salient_component(np.zeros((0, 3), bool), np.zeros((0, 3))),
         "^mask must have at least one pixel"),
        (lambda image, seeds, models: largest_component(np.full((3, 3), np.nan)), "^mask contains 9 NaN"),
    ],
    ids=["seed-shape", "seed-tuple", "empty-seed", "config-none", "two-channels", "out-of-scale", "costs-two-channels",
         "costs-nan", "costs-one-model", "colours-1d", "colours-4-columns", "colours-nan", "model-string",
         "pixels-string", "pixels-0-255", "map-string", "map-shape", "float-connectivity", "empty-mask",
         "empty-mask-salient", "nan-mask"],
)
def test_colour_models_and_components_refuse_bad_input_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(*_colour_inputs())


def test_a_grey_image_gets_the_costs_of_its_colour_copy():
    """colour_costs on a grey image was "cannot reshape array of size 600 into shape (20,30)"."""
    image, seeds, models = _colour_inputs()
    grey = image.mean(axis=-1)
    np.testing.assert_array_equal(colour_costs(models, grey), colour_costs(models, np.repeat(grey[..., None], 3, -1)))
    np.testing.assert_array_equal(colour_costs(models, grey[..., None]), colour_costs(models, grey))


def test_localise_classes_names_maps_of_different_sizes():
    image = np.zeros((8, 9, 3), np.uint8)
    saliency = np.arange(72, dtype=float).reshape(8, 9)
    with pytest.raises(ValueError, match=r"saliency_maps must have shape \[N, H, W\].*shapes \[\(7, 9\), \(8, 9\)\]"):
        localise_classes(image, [saliency, saliency[:-1]], [1, 2])  # was numpy's "inhomogeneous shape"

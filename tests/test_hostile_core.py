"""Hostile and careless input to the gradient core: class ids, scores, layers, class models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import saliency_jax as sj
from saliency_jax import _checks
from saliency_jax.evaluation import faithfulness
from saliency_jax.types import Classifier

BIG = 2**32 + 1  # int32 would wrap it to the valid class 1


@pytest.fixture(scope="module")
def images():
    return jnp.asarray(np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)), jnp.float32)


@pytest.mark.parametrize("call", ["class_gradients", "class_saliency_maps", "for_classes"])
def test_class_ids_beyond_int32_are_refused_not_wrapped(tiny_cnn, images, call):
    logits_fn, params = tiny_cnn
    classes = np.array([BIG], np.int64)
    fns = {
        "class_gradients": lambda: sj.class_gradients(logits_fn, params, images, classes),
        "class_saliency_maps": lambda: sj.class_saliency_maps(logits_fn, params, images, classes),
        "for_classes": lambda: sj.for_classes(sj.gradient)(logits_fn, params, images, classes),
    }
    with pytest.raises(ValueError, match="classes must be"):
        fns[call]()


def test_class_models_and_reconstructions_refuse_ids_beyond_int32(tiny_cnn, images):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match="classes must be"):
        sj.class_models(logits_fn, params, np.array([BIG]), key=jax.random.key(0), steps=1, image_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="classes must be"):
        sj.saliency_map(logits_fn, params, images, 2**40)  # a Python int too large for int32
    with pytest.raises(ValueError, match="channels must be in"):
        sj.layer_reconstructions(logits_fn, params, images, np.array([BIG]), layer="conv2")


@pytest.mark.parametrize("classes", [7, -1, 2.7, True, np.array([1, 2])])
def test_layer_gradients_checks_its_classes(tiny_cnn, images, classes):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match="classes"):
        sj.layer_gradients(logits_fn, params, images, classes, layer="conv2")


def test_layer_gradients_checks_its_images(tiny_cnn, images):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\]"):
        sj.layer_gradients(logits_fn, params, images[0], 1, layer="conv2")
    with pytest.raises(ValueError, match="images contains NaN"):
        sj.layer_gradients(logits_fn, params, images.at[0, 0, 0, 0].set(jnp.nan), 1, layer="conv2")


def test_layer_gradients_under_jit_give_nan_for_invalid_classes(tiny_cnn, images):
    logits_fn, params = tiny_cnn
    fn = jax.jit(lambda c: sj.layer_gradients(logits_fn, params, images, c, layer="conv2")[1])
    good = np.asarray(fn(jnp.array([1, 2, 3])))
    bad = np.asarray(fn(jnp.array([1, 7, -1])))
    np.testing.assert_array_equal(bad[0], good[0])
    assert np.isnan(bad[1:]).all()
    assert np.isfinite(good).all() and np.abs(good).max() > 0


@pytest.mark.parametrize("classes", [2.7, -1, True, 7, np.array([1, 2])])
def test_select_scores_refuses_what_is_not_a_class_of_each_row(classes):
    logits = jnp.arange(15.0).reshape(3, 5)
    with pytest.raises(ValueError, match="classes must"):
        sj.select_scores(logits, classes)


def test_select_scores_under_jit_gives_nan_never_another_class():
    logits = jnp.arange(15.0).reshape(3, 5)
    np.testing.assert_array_equal(sj.select_scores(logits, np.array([0, 4, 2])), [0.0, 9.0, 12.0])
    scores = np.asarray(jax.jit(sj.select_scores)(logits, jnp.array([-1, 5, 2])))
    assert np.isnan(scores[:2]).all() and scores[2] == 12.0
    with pytest.raises(ValueError, match=r"logits must have shape \[B, K\]"):
        sj.select_scores(jnp.arange(5.0), 1)


def test_class_models_under_jit_give_nan_images_for_invalid_classes(tiny_cnn):
    logits_fn, params = tiny_cnn
    run = jax.jit(functools.partial(sj.class_models, logits_fn, steps=3, image_shape=(8, 8, 3), pixel_mean=100.0))
    result = run(params, jnp.array([3, 7, -2]), key=jax.random.key(0))
    images, scores = np.asarray(result.images), np.asarray(result.scores)
    assert np.isfinite(images[0]).all() and np.isfinite(scores[0])
    assert np.isnan(images[1:]).all() and np.isnan(scores[1:]).all()
    alone = sj.class_models(logits_fn, params, np.array([3]), key=jax.random.key(0), steps=3, image_shape=(8, 8, 3),
                            pixel_mean=100.0)
    np.testing.assert_allclose(images[0], np.asarray(alone.images)[0], rtol=1e-5, atol=1e-4)


def test_reconstructions_under_jit_give_nan_for_invalid_channels_and_positions(tiny_cnn, images):
    logits_fn, params = tiny_cnn

    @jax.jit
    def signals(channels, neuron):
        return sj.layer_reconstructions(logits_fn, params, images[:1], channels, layer="conv2",
                                        neuron=neuron).signals

    good = np.asarray(signals(jnp.array([1, 2]), jnp.array([1, 1])))
    assert np.isfinite(good).all() and np.abs(good).max() > 0
    bad_channel = np.asarray(signals(jnp.array([1, -1]), jnp.array([1, 1])))
    np.testing.assert_array_equal(bad_channel[0, 0], good[0, 0])
    assert np.isnan(bad_channel[0, 1]).all()
    assert np.isnan(np.asarray(signals(jnp.array([1, 2]), jnp.array([9, 9])))).all()  # the layer is 4x4


def test_images_beyond_float32_are_refused(tiny_cnn, images):
    logits_fn, params = tiny_cnn
    huge = np.full((1, 8, 8, 3), 1e39)  # finite in float64, infinite in float32
    for fn in (sj.input_gradients, sj.saliency_map, functools.partial(sj.class_saliency_maps, classes=[1])):
        with pytest.raises(ValueError, match="beyond float32's range"):
            fn(logits_fn, params, huge) if fn is not sj.saliency_map else fn(logits_fn, params, huge, 1)


def test_bfloat16_images_are_read_as_float32(tiny_cnn, images):
    logits_fn, params = tiny_cnn
    low = images.astype(jnp.bfloat16)
    expected = sj.input_gradients(logits_fn, params, low.astype(jnp.float32), 1).gradients
    np.testing.assert_array_equal(sj.input_gradients(logits_fn, params, low, 1).gradients, expected)


def test_integer_logits_are_refused(images):
    params = {"w": jnp.ones((8 * 8 * 3, 4))}

    def integer_logits(p, x):
        return (x.reshape(x.shape[0], -1) @ p["w"]).astype(jnp.int32)

    with pytest.raises(ValueError, match="floating-point logits"):
        sj.input_gradients(integer_logits, params, images, 1)


def test_a_wrong_logits_shape_names_the_images_of_the_pass(tiny_cnn, images):
    logits_fn, params = tiny_cnn

    def one_row(p, x):
        return logits_fn(p, x)[:1]

    with pytest.raises(ValueError, match=r"\[2, K\] for 2 images"):
        sj.input_gradients(one_row, params, images, 1, images_per_pass=2)


@pytest.mark.parametrize("value", [np.int64(3), np.array(3), jnp.array(3), np.uint8(3)])
def test_integer_settings_take_numpy_and_zero_d_integers(value):
    assert _checks.check_int(value, "k", 1) == 3


@pytest.mark.parametrize("value", [np.True_, np.array(True), np.array(2.5), np.array([3]), "3"])
def test_integer_settings_refuse_what_is_not_one_integer(value):
    with pytest.raises(ValueError, match="k must be an integer"):
        _checks.check_int(value, "k", 1)


@pytest.mark.parametrize("value", [np.float32(0.5), np.array(0.5), jnp.array(0.5), np.int64(1)])
def test_number_settings_take_numpy_and_zero_d_numbers(value):
    assert _checks.check_number(value, "q", low=0.0, high=1.0) == pytest.approx(float(value))


def test_top_k_takes_a_numpy_integer(tiny_cnn, images):
    logits_fn, params = tiny_cnn
    assert sj.top_k(logits_fn, params, images, k=np.int64(2)).classes.shape == (3, 2)


@pytest.mark.parametrize("settings", [
    {"image_shape": (8.7, 8, 3)}, {"image_shape": (8, 8, "3")}, {"image_shape": 8}, {"image_shape": (8, 8, True)},
    {"pixel_mean": float("nan")}, {"pixel_mean": "a"}, {"learning_rate": 1e39}, {"l2_weight": 1e39},
    {"l2_weight": 1.8e38}, {"learning_rate": 1.1e6}, {"l2_weight": 1.1e6},  # 1.8e38 once gave NaN images
    {"pixel_range": (0, 255, 1)}, {"pixel_range": (1e39, 1e40)}, {"pixel_range": "ab"},
])
def test_class_model_settings_are_checked_by_name(tiny_cnn, settings):
    logits_fn, _ = tiny_cnn
    name = next(iter(settings))
    with pytest.raises(ValueError, match=name):
        sj.class_model_ascent(logits_fn, **{"image_shape": (8, 8, 3), **settings})


@pytest.mark.parametrize("mode", ["paper", "regularised"])
def test_class_model_step_weights_at_their_bound_stay_finite(mode):
    # a linear model, whose gradient is non-zero at the zero image the ascent starts from
    weights = jax.random.normal(jax.random.key(3), (32 * 32 * 3, 5))

    def logits_fn(w, images):
        return images.reshape(images.shape[0], -1) @ w

    for l2_weight in (1e6, 0.0):
        result = sj.class_models(logits_fn, weights, np.array([1, 2]), key=jax.random.key(0), steps=5, mode=mode,
                                 image_shape=(32, 32, 3), l2_weight=l2_weight, learning_rate=1e6)
        images = np.asarray(result.images)
        assert np.isfinite(images).all() and np.isfinite(np.asarray(result.scores)).all()
        assert np.abs(images).max() > 1e3  # the steps were taken


def test_class_model_takes_numpy_sizes(tiny_cnn):
    logits_fn, params = tiny_cnn
    shape = (np.int64(8), np.int64(8), np.int64(3))
    result = sj.class_models(logits_fn, params, np.array([1]), key=jax.random.key(0), steps=2, image_shape=shape)
    assert result.images.shape == (1, 8, 8, 3)


def test_layer_functions_refuse_a_jitted_model_by_name(tiny_cnn, images):
    logits_fn, params = tiny_cnn
    jitted = jax.jit(logits_fn)
    for call in (lambda: sj.list_layers(jitted, params, images),
                 lambda: sj.layer_activations(jitted, params, images, layer="conv2"),
                 lambda: sj.layer_gradients(jitted, params, images, 1, layer="conv2"),
                 lambda: sj.layer_reconstruction(jitted, params, images, 1, layer="conv2", rule="deconvnet")):
        with pytest.raises(ValueError, match="must not be jax.jit-wrapped"):
            call()


@pytest.mark.parametrize("key", [None, 0, np.zeros(3, np.uint32)])
def test_class_models_name_a_bad_key(tiny_cnn, key):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match="key must be"):
        sj.class_models(logits_fn, params, np.array([1]), key=key, steps=1, image_shape=(8, 8, 3))


# --- every model output is checked where the library calls the model ----------------------------


_WRONG_OUTPUTS = {
    "a class axis too many": lambda logits: logits[..., None],
    "one row for the batch": lambda logits: logits[:1],
    "one score per image": lambda logits: logits[:, 0],
}


def _calls(images):
    key = jax.random.key(0)
    maps = jnp.asarray(np.random.default_rng(1).uniform(size=images.shape[:3]), jnp.float32)
    return {
        "rise": lambda f, p: sj.rise(f, p, images, np.array([0, 1, 2]), key=key, num_masks=8, grid=2),
        "rise, top-1": lambda f, p: sj.rise(f, p, images, None, key=key, num_masks=8, grid=2),
        "occlusion": lambda f, p: sj.occlusion(f, p, images, np.array([0, 1, 2]), patch=4, stride=4),
        "integrated_gradients, top-1": lambda f, p: sj.integrated_gradients(f, p, images, None, steps=2),
        "smoothgrad, top-1": lambda f, p: sj.smoothgrad(f, p, images, None, key=key, num_samples=1),
        "top_k": lambda f, p: sj.top_k(f, p, images, k=1),
        "class_scores": lambda f, p: sj.class_scores(f, p, images, 1),
        "deletion_curve": lambda f, p: faithfulness.deletion_curve(f, p, images, maps, np.array([0, 1, 2]), steps=4),
        "insertion_curve, top-1": lambda f, p: faithfulness.insertion_curve(f, p, images, maps, None, steps=4),
    }


@pytest.mark.parametrize("wrong", list(_WRONG_OUTPUTS))
def test_a_model_output_that_is_not_one_row_of_logits_per_image_is_refused(tiny_cnn, images, wrong):
    """Each call once gave plausible curves, maps or top classes, or an error about arguments never passed."""
    logits_fn, params = tiny_cnn
    bad = functools.partial(lambda f, p, x: _WRONG_OUTPUTS[wrong](f(p, x)), logits_fn)
    for name, call in _calls(images).items():
        call(logits_fn, params)  # the call itself is right
        with pytest.raises(ValueError, match=r"logits_fn must return logits of shape \[B, K\]"):
            call(bad, params)
            pytest.fail(name)


def test_class_models_refuse_integer_logits_and_an_empty_class_list(tiny_cnn):
    logits_fn, params = tiny_cnn

    def integer_logits(p, x):
        return logits_fn(p, x).astype(jnp.int32)

    with pytest.raises(ValueError, match="floating-point logits"):  # the ascent once stayed at its start
        sj.class_models(integer_logits, params, [1], key=jax.random.key(0), steps=1, image_shape=(8, 8, 3))
    classifier = Classifier(logits_fn, params, 8, tuple(map(str, range(10))), 127.0, 128.0)
    with pytest.raises(ValueError, match=r"classes must be .* non-empty \[K\] array, got shape \(0,\)"):
        sj.classifier_class_models(classifier, np.array([], int), key=jax.random.key(0), steps=1)


@pytest.mark.parametrize("call, argument", [
    (lambda f, p, x: sj.smoothgrad(f, p, x, 1, key=jax.random.key(0), num_samples=10**12), "num_samples"),
    (lambda f, p, x: sj.rise(f, p, x, 1, key=jax.random.key(0), num_masks=2**31), "num_masks"),
    (lambda f, p, x: sj.integrated_gradients(f, p, x, 1, steps=2**40), "steps"),
    (lambda f, p, x: sj.blur_integrated_gradients(f, p, x, 1, steps=2**21), "steps"),
    (lambda f, p, x: sj.class_models(f, p, [1], key=jax.random.key(0), steps=10**12, image_shape=(8, 8, 3)), "steps"),
])
def test_counts_past_what_a_run_can_index_are_refused_by_name(tiny_cnn, images, call, argument):
    """Once an overflow deep inside a jitted call, or numpy allocating terabytes."""
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match=rf"^{argument} must be an integer >= \d and <= \d+, got"):
        call(logits_fn, params, images)


def test_non_finite_gradients_are_named_as_the_model_s(tiny_cnn, images):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match="logits_fn's gradient at these images is NaN or infinite"):
        sj.saliency_map(lambda p, x: logits_fn(p, x) * jnp.nan, params, images, 1)


@pytest.mark.parametrize("variables", [None, {"params": {}}, [1, 2]])
def test_efficientnet_names_variables_that_are_not_its_own(variables):
    """Once "argument of type 'NoneType' is not iterable" from inside Flax."""
    from saliency_jax.models.efficientnet_lite import EfficientNetLite0, make_logits_fn

    logits_fn = make_logits_fn(EfficientNetLite0())
    with pytest.raises(ValueError, match="^variables must be the model's variables, a mapping with 'params'"):
        logits_fn(variables, jnp.zeros((1, 224, 224, 3)))


def test_rule_and_objective_arrays_are_named_not_numpy_s_ambiguity(tiny_cnn):
    from saliency_jax.backprop_rules import check_rule

    with pytest.raises(ValueError, match="rule must be one of"):
        check_rule(np.array(["guided", "gradient"]))  # was "The truth value of an array ... is ambiguous"
    logits_fn, _ = tiny_cnn
    with pytest.raises(ValueError, match="objective must be one of"):
        sj.class_model_ascent(logits_fn, image_shape=(8, 8, 3), objective=np.array(["score", "softmax"]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(pixel_mean=0, pixel_scale=0, pixel_range=(0, 1)), "pixel_scale"),  # was ZeroDivisionError
    (dict(pixel_mean=0, pixel_scale=1, pixel_range=(0, 1, 2)), "pixel_range must be"),  # was an unpacking error
    (dict(pixel_mean=0, pixel_scale=1, pixel_range=(1, 0)), "pixel_range must be"),
    (dict(pixel_mean=0, pixel_scale=1e-40, pixel_range=(0, 255)), "pixel_scale must keep pixel_range"),
])
def test_pixel_bounds_name_the_argument_at_fault(kwargs, match):
    from saliency_jax.class_model import default_regularizer, pixel_bounds

    with pytest.raises(ValueError, match=match):
        pixel_bounds(**kwargs)
    with pytest.raises(ValueError, match=match):
        default_regularizer(**kwargs)
    assert pixel_bounds(10.0, 2.0, (0, 255)) == (-5.0, 122.5)


def test_odd_model_and_callback_settings_are_named(tiny_cnn):
    from saliency_jax.class_model import class_model_ascent, run_in_chunks
    from saliency_jax.models import class_id, scaled_convnet

    with pytest.raises(ValueError, match="conv_features must be a sequence of integers >= 1 and <= 1048576"):
        scaled_convnet(3, width=1e20)  # once accepted, then a TypeError inside MLIR at init
    with pytest.raises(ValueError, match="class_names must be a sequence of strings"):
        class_id("b", ("a", None))  # was an AttributeError
    logits_fn, params = tiny_cnn
    ascent = class_model_ascent(logits_fn, image_shape=(8, 8, 3))
    state = ascent.init(params, np.array([1]), key=jax.random.key(0))
    with pytest.raises(ValueError, match="on_chunk must be None or a function"):
        run_in_chunks(ascent, params, state, 5, chunk=2, on_chunk=3)  # was a TypeError after the first chunk

"""Input gradients and saliency maps (paper §3, §3.1)."""

import functools
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import saliency_jax as sj
from saliency_jax.backprop_rules import RuleNotAppliedWarning

from conftest import TinyCNN


def _images(key, shape=(3, 8, 8, 3)):
    return jax.random.uniform(key, shape, minval=0.0, maxval=255.0)


def test_linear_model_gradient_is_its_weight_column(linear_model, getkey):
    logits_fn, params = linear_model
    images = _images(getkey(), (3, 6, 5, 3))
    classes = jnp.array([0, 3, 1])
    result = sj.input_gradients(logits_fn, params, images, classes)
    expected = params["w"].T[classes].reshape(3, 6, 5, 3)
    np.testing.assert_allclose(result.gradients, expected, rtol=1e-6)
    np.testing.assert_allclose(sj.saliency_map(logits_fn, params, images, classes), np.abs(expected).max(-1), rtol=1e-6)


def test_default_class_is_top1(linear_model, getkey):
    logits_fn, params = linear_model
    images = _images(getkey(), (4, 6, 5, 3))
    result = sj.input_gradients(logits_fn, params, images)
    np.testing.assert_array_equal(result.classes, jnp.argmax(logits_fn(params, images), -1))


def test_grey_map_is_abs_gradient():
    def logits_fn(params, images):
        return jnp.stack([jnp.sum(images * params, axis=(1, 2, 3)), -jnp.sum(images, axis=(1, 2, 3))], -1)

    w = jnp.arange(20.0).reshape(1, 4, 5, 1) - 10.0
    maps = sj.saliency_map(logits_fn, w, jnp.ones((2, 4, 5, 1)), 0)
    np.testing.assert_allclose(maps, jnp.broadcast_to(jnp.abs(w[..., 0]), (2, 4, 5)))


def test_gradient_matches_finite_differences(tiny_cnn):
    logits_fn, params = tiny_cnn
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        image = jax.random.uniform(jax.random.key(3), (1, 8, 8, 3), jnp.float64)
        grad = jax.grad(lambda x: logits_fn(params64, x)[0, 2])(image)
        rng = np.random.default_rng(0)
        eps = 1e-6
        for _ in range(12):
            i, j, c = rng.integers(8), rng.integers(8), rng.integers(3)
            bump = jnp.zeros_like(image).at[0, i, j, c].set(eps)
            fd = (logits_fn(params64, image + bump)[0, 2] - logits_fn(params64, image - bump)[0, 2]) / (2 * eps)
            np.testing.assert_allclose(grad[0, i, j, c], fd, rtol=1e-5, atol=1e-8)
    # and the library (float32) agrees with the float64 gradient
    ours = sj.input_gradients(logits_fn, params, image.astype(jnp.float32), 2).gradients
    np.testing.assert_allclose(ours, grad, rtol=1e-4, atol=1e-6)


def test_jit_equals_eager(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey())
    eager = sj.saliency_map(logits_fn, params, images, jnp.array([0, 1, 2]))
    jitted = jax.jit(functools.partial(sj.saliency_map, logits_fn))(params, images, jnp.array([0, 1, 2]))
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-7)


def test_batch_equals_per_example_vmap(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (4, 8, 8, 3))
    classes = jnp.array([4, 0, 2, 2])
    batched = sj.input_gradients(logits_fn, params, images, classes).gradients
    per_example = jax.vmap(lambda x, c: jax.grad(lambda y: logits_fn(params, y[None])[0, c])(x))(images, classes)
    np.testing.assert_allclose(batched, per_example, rtol=1e-5, atol=1e-7)


def test_many_classes_equal_one_at_a_time(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    classes = jnp.array([[3, 0, 4], [1, 1, 2]])
    many = sj.class_gradients(logits_fn, params, images, classes)
    assert many.shape == (2, 3, 8, 8, 3)
    for b in range(2):
        for k in range(3):
            one = sj.input_gradients(logits_fn, params, images[b : b + 1], classes[b, k]).gradients[0]
            np.testing.assert_allclose(many[b, k], one, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        sj.class_saliency_maps(logits_fn, params, images, classes), np.abs(many).max(-1), rtol=1e-6
    )
    # [N] classes mean the same classes for every image
    np.testing.assert_allclose(sj.class_gradients(logits_fn, params, images, classes[0]),
                               sj.class_gradients(logits_fn, params, images, jnp.stack([classes[0]] * 2)), rtol=1e-6)


@pytest.mark.parametrize("rule", ["gradient", "guided"])
def test_classes_per_pass_does_not_change_the_gradients(tiny_cnn, getkey, rule):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    classes = jnp.array([[3, 0, 4, 1, 2], [1, 4, 4, 0, 3]])
    together = sj.class_gradients(logits_fn, params, images, classes, rule=rule, classes_per_pass=5)
    for per_pass in (1, 2, 3, 9, None):  # 2 and 3 leave classes over for a last, smaller pass
        got = jax.jit(sj.class_gradients, static_argnums=0, static_argnames=("rule", "classes_per_pass"))(
            logits_fn, params, images, classes, rule=rule, classes_per_pass=per_pass
        )
        np.testing.assert_allclose(got, together, rtol=1e-5, atol=1e-7, err_msg=f"classes_per_pass={per_pass}")
        # the maps are reduced inside each pass: the same max_c |w| whatever the grouping
        maps = jax.jit(sj.class_saliency_maps, static_argnums=0, static_argnames=("rule", "classes_per_pass"))(
            logits_fn, params, images, classes, rule=rule, classes_per_pass=per_pass
        )
        assert maps.shape == (2, 5, 8, 8)
        np.testing.assert_allclose(maps, np.abs(together).max(-1), rtol=1e-5, atol=1e-7)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="classes_per_pass"):
            sj.class_saliency_maps(logits_fn, params, images, classes, classes_per_pass=bad)


@pytest.mark.parametrize("rule", ["gradient", "guided"])
def test_class_functions_in_passes_of_images_give_the_same_gradients(tiny_cnn, getkey, rule):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (3, 8, 8, 3))
    classes = jnp.array([[3, 0, 4], [1, 4, 4], [2, 2, 0]])
    together = sj.class_gradients(logits_fn, params, images, classes, rule=rule, classes_per_pass=3, images_per_pass=3)
    static = ("rule", "classes_per_pass", "images_per_pass")
    for images_per_pass in (1, 2):  # 2 leaves one image for a last pass
        for classes_per_pass in (1, 2, None):
            settings = dict(rule=rule, classes_per_pass=classes_per_pass, images_per_pass=images_per_pass)
            got = jax.jit(sj.class_gradients, static_argnums=0, static_argnames=static)(
                logits_fn, params, images, classes, **settings)
            np.testing.assert_allclose(got, together, rtol=1e-5, atol=1e-7, err_msg=str(settings))
            maps = sj.class_saliency_maps(logits_fn, params, images, classes, **settings)
            np.testing.assert_allclose(maps, np.abs(together).max(-1), rtol=1e-5, atol=1e-7, err_msg=str(settings))
    seen = []

    def recording(p, x):
        seen.append(x.shape[0])
        return logits_fn(p, x)

    sj.class_saliency_maps(recording, params, images, classes, images_per_pass=2)
    assert sorted(seen) == [1, 2]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="images_per_pass must be an integer >= 1"):
            sj.class_saliency_maps(logits_fn, params, images, classes, images_per_pass=bad)
    with pytest.raises(ValueError, match=r"classes must be in \[0, 5\)"):
        sj.class_saliency_maps(logits_fn, params, images, classes + 2, images_per_pass=2)


def test_jitted_calls_return_nan_for_invalid_requests(tiny_cnn):
    """Under jit the values are unknown while tracing: an invalid request must not look like a map."""
    logits_fn, params = tiny_cnn
    images = np.asarray(jax.random.uniform(jax.random.key(3), (3, 8, 8, 3)), np.float32)
    jitted = jax.jit(sj.saliency_map, static_argnums=0)
    maps = np.asarray(jitted(logits_fn, params, images, jnp.array([1, 5, -1])))
    assert np.isfinite(maps[0]).all() and maps[0].max() > 0
    assert np.isnan(maps[1]).all() and np.isnan(maps[2]).all()
    nan_image = images.copy()
    nan_image[1, 2, 3, 0] = np.nan
    maps = np.asarray(jitted(logits_fn, params, nan_image, jnp.array([1, 1, 1])))
    assert np.isfinite(maps[[0, 2]]).all() and np.isnan(maps[1]).all()
    for images_per_pass in (None, 2):
        many = jax.jit(functools.partial(sj.class_saliency_maps, logits_fn, images_per_pass=images_per_pass))(
            params, images, jnp.array([[0, 9]] * 3))
        assert np.isfinite(np.asarray(many[:, 0])).all() and np.isnan(np.asarray(many[:, 1])).all()
    # eager calls refuse the same requests
    with pytest.raises(ValueError, match="classes must be in"):
        sj.saliency_map(logits_fn, params, images, jnp.array([1, 5, -1]))
    with pytest.raises(ValueError, match="NaN"):
        sj.saliency_map(logits_fn, params, nan_image, 1)


def test_a_jitted_model_takes_every_rule(tiny_cnn):
    logits_fn, params = tiny_cnn
    images = np.asarray(jax.random.normal(jax.random.key(3), (2, 8, 8, 3)))
    jitted = jax.jit(logits_fn)
    for rule in ("guided", "deconvnet", "gradient"):
        want = sj.saliency_map(logits_fn, params, images, rule=rule)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuleNotAppliedWarning)
            for _ in range(2):  # traced under the rule, then from JAX's cache
                np.testing.assert_allclose(sj.saliency_map(jitted, params, images, rule=rule), want, rtol=1e-6)
                np.testing.assert_allclose(
                    sj.saliency_map(functools.partial(jitted), params, images, rule=rule), want, rtol=1e-6)
    assert not np.allclose(sj.saliency_map(jitted, params, images, rule="guided"),
                           sj.saliency_map(jitted, params, images))  # the rules differ on this model


def test_a_jitted_model_with_a_non_gradient_rule_is_refused_where_the_rule_is_no_cache_key(tiny_cnn, monkeypatch):
    from saliency_jax import backprop_rules

    logits_fn, params = tiny_cnn
    images = np.ones((1, 8, 8, 3), np.float32)
    monkeypatch.setattr(backprop_rules, "_RULE_IN_CACHE_KEY", False)
    with pytest.raises(ValueError, match="un-jitted logits_fn"):
        sj.saliency_map(jax.jit(logits_fn), params, images, rule="guided")
    with pytest.raises(ValueError, match="un-jitted logits_fn"):
        sj.saliency_map(functools.partial(jax.jit(logits_fn)), params, images, rule="deconvnet")
    # the gradient rule needs no context, so a jitted model is fine there
    np.testing.assert_allclose(sj.saliency_map(jax.jit(logits_fn), params, images),
                               sj.saliency_map(logits_fn, params, images), rtol=1e-6)


class _NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.dense = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.dense(jnp.mean(sj.relu(self.conv(x)), axis=(1, 2)))


def _check_against_manual_grad(logits_fn, params, images):
    classes = jnp.array([1, 2])
    ours = sj.input_gradients(logits_fn, params, images, classes).gradients
    manual = jax.grad(lambda x: jnp.sum(jnp.take_along_axis(logits_fn(params, x), classes[:, None], 1)))(images)
    np.testing.assert_allclose(ours, manual, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(ours).sum()) > 0


def test_works_with_flax_linen(getkey):
    module = TinyCNN(num_classes=3)
    variables = module.init(getkey(), jnp.zeros((1, 8, 8, 3)))
    _check_against_manual_grad(functools.partial(module.apply, train=False), variables, _images(getkey(), (2, 8, 8, 3)))


def test_works_with_flax_nnx(getkey):
    graphdef, state = nnx.split(_NNXNet(nnx.Rngs(0)))

    def logits_fn(params, images):
        return nnx.merge(graphdef, params)(images)

    _check_against_manual_grad(logits_fn, state, _images(getkey(), (2, 8, 8, 3)))


def test_works_with_plain_function(getkey):
    w = jax.random.normal(getkey(), (3, 3))

    def logits_fn(params, images):
        return jnp.tanh(jnp.mean(images, axis=(1, 2)) / 255.0) @ params

    _check_against_manual_grad(logits_fn, w, _images(getkey(), (2, 8, 8, 3)))


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((8, 8, 3), np.float32), "rank 4"),
        (np.zeros((1, 8, 8, 4), np.float32), "channels"),
        (np.full((1, 8, 8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((0, 8, 8, 3), np.float32), "empty"),
    ],
)
def test_bad_images_raise(tiny_cnn, images, match):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match=match) as info:
        sj.saliency_map(logits_fn, params, images)
    assert "images" in str(info.value)


@pytest.mark.parametrize("classes", [5, -1, [0, 7]])
def test_class_out_of_range_raises(tiny_cnn, classes):
    logits_fn, params = tiny_cnn
    with pytest.raises(ValueError, match=r"classes must be in \[0, 5\)"):
        sj.saliency_map(logits_fn, params, np.zeros((2, 8, 8, 3), np.float32), jnp.asarray(classes))


def test_bad_rule_and_wrong_class_shape_raise(tiny_cnn):
    logits_fn, params = tiny_cnn
    images = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="rule must be one of"):
        sj.saliency_map(logits_fn, params, images, rule="backwards")
    with pytest.raises(ValueError, match="classes must be a scalar or have shape"):
        sj.saliency_map(logits_fn, params, images, jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class ids"):
        sj.saliency_map(logits_fn, params, images, 1.5)
    with pytest.raises(ValueError, match=r"classes must have shape \[B, N\]"):
        sj.class_gradients(logits_fn, params, images, jnp.array([[0], [1], [2]]))


@pytest.mark.parametrize("rule", ["gradient", "guided"])
def test_images_per_pass_does_not_change_the_gradients(tiny_cnn, getkey, rule):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (5, 8, 8, 3))
    for classes in (jnp.array([3, 0, 4, 1, 2]), 2, None):
        together = sj.input_gradients(logits_fn, params, images, classes, rule=rule, images_per_pass=5)
        # 2 and 3 leave images over for a last, smaller pass; every pass size with one form of
        # classes, a pass size that leaves images over with the others.
        for per_pass in (1, 2, 3, 9) if classes is None else (3,):
            jitted = jax.jit(sj.input_gradients, static_argnums=0, static_argnames=("rule", "images_per_pass"))
            got = jitted(logits_fn, params, images, classes, rule=rule, images_per_pass=per_pass)
            np.testing.assert_allclose(got.gradients, together.gradients, rtol=1e-5, atol=1e-7,
                                       err_msg=f"images_per_pass={per_pass}")
            np.testing.assert_array_equal(got.classes, together.classes)
            np.testing.assert_allclose(got.logits, together.logits, rtol=1e-5, atol=1e-6)
            maps = sj.saliency_map(logits_fn, params, images, classes, rule=rule, images_per_pass=per_pass)
            np.testing.assert_allclose(maps, np.abs(together.gradients).max(-1), rtol=1e-5, atol=1e-7)


def test_images_per_pass_runs_the_model_on_that_many_images(tiny_cnn):
    logits_fn, params = tiny_cnn
    seen = []

    def recording(p, x):
        seen.append(x.shape[0])  # runs while tracing: one entry per traced pass
        return logits_fn(p, x)

    images = np.ones((7, 8, 8, 3), np.float32)
    sj.input_gradients(recording, params, images, 1, images_per_pass=3)
    assert sorted(seen) == [1, 3]  # passes of 3 in a lax.map (traced once), then the 1 left over
    seen.clear()
    sj.saliency_map(recording, params, images, 1, images_per_pass=7)
    assert seen == [7]


def test_images_per_pass_keeps_invalid_requests_apart(tiny_cnn):
    logits_fn, params = tiny_cnn
    images = np.array(jax.random.uniform(jax.random.key(3), (5, 8, 8, 3)), np.float32)
    images[3, 1, 1, 1] = np.nan
    jitted = jax.jit(functools.partial(sj.saliency_map, logits_fn, images_per_pass=2))
    maps = np.asarray(jitted(params, images, jnp.array([1, 5, 0, 2, 4])))
    assert np.isnan(maps[[1, 3]]).all()
    valid = images[[0, 2, 4]]
    expected = sj.saliency_map(logits_fn, params, valid, jnp.array([1, 0, 4]), images_per_pass=3)
    assert np.all(np.max(expected, axis=(1, 2)) > 0)
    np.testing.assert_allclose(maps[[0, 2, 4]], expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"classes must be in \[0, 5\)"):
        sj.saliency_map(logits_fn, params, valid, jnp.array([1, 5, 0]), images_per_pass=2)
    with pytest.raises(ValueError, match="classes must be a scalar or have shape"):
        sj.saliency_map(logits_fn, params, valid, jnp.array([0, 1]), images_per_pass=2)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="images_per_pass must be an integer >= 1"):
            sj.saliency_map(logits_fn, params, valid, 1, images_per_pass=bad)


def test_default_images_per_pass_is_per_backend_and_device_count():
    # this process has several host devices (conftest), where a batch is often sharded: all at once
    assert jax.device_count() > 1 and sj.default_images_per_pass() == sj.saliency.ALL_IMAGES
    code = "import saliency_jax as sj, saliency_jax.saliency as s; print(sj.default_images_per_pass(), s.ROWS_PER_PASS)"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    got, rows = out.stdout.split()
    assert got == rows == "2"

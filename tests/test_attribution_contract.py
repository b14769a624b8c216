"""The contract every attribution method keeps, parametrised over one registry of all of them.

Shape, finiteness, jit == eager (with the key a traced argument), batched ==
per-example (chunked rows, with padding, against one image at a time), the
companion form == one call per class, and bad inputs raising ``ValueError``
naming the argument.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TinyCNN
from saliency_jax import attribution as A
from saliency_jax.reconstruction import list_layers


def _last_feature_map() -> str:
    """TinyCNN's last layer with [B, h, w, k] output (the Grad-CAM layer)."""
    module = TinyCNN()
    params = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    layers = list_layers(functools.partial(module.apply, train=False), params, jnp.zeros((1, 8, 8, 3)))
    return [layer.name for layer in layers if len(layer.shape) == 4][-1]


LAYER = _last_feature_map()

# Small settings for the 8x8 TinyCNN; every registered method appears once, and a
# wrapper around a method with its own expansions once more.
SETTINGS = {
    "gradient": {},
    "gradient-x-input": {},
    "integrated-gradients": {"steps": 5},
    "blur-ig": {"steps": 4, "max_sigma": 3.0},
    "guided-ig": {"steps": 3, "fraction": 0.2, "baseline": 40.0},
    "gradient-shap": {"num_samples": 3, "noise_scale": 0.05, "baselines": jnp.stack([jnp.zeros((8, 8, 3)),
                                                                                     jnp.full((8, 8, 3), 128.0)])},
    "gradcam": {"layer": LAYER},
    "gradcam++": {"layer": LAYER},
    "guided-gradcam": {"layer": LAYER},
    "crop-gradcam": {"layer": LAYER, "grid": ((0.5, 2), (1.0, 1))},
    "occlusion": {"patch": 3, "stride": 2},
    "kernel-shap": {"num_samples": 9, "segments": np.arange(64, dtype=np.int32).reshape(8, 8) // 16},
    "rise": {"num_masks": 12, "grid": 3},
    "smoothgrad": {"num_samples": 3},
    "squaregrad": {"num_samples": 3},
    "vargrad": {"num_samples": 3},
    "flip-shift": {"shifts": (0, 2)},
}
CASES = [(name, A.METHODS[name].fn, SETTINGS[name]) for name in A.METHODS] + [
    ("smoothgrad(ig)", A.smoothgrad, {"method": A.integrated_gradients, "steps": 3, "num_samples": 2}),
    ("flip-shift(gradcam)", A.flip_shift_average, {"method": A.gradcam, "layer": LAYER, "shifts": (0, 2)}),
]
IDS = [c[0] for c in CASES]

BATCH_SIZE = 2  # smaller than the batch of 3, so rows are chunked and the last chunk padded


def test_registry_names_every_method():
    assert set(SETTINGS) == set(A.METHODS)
    assert all(m.output in ("pixels", "layer") for m in A.METHODS.values())


def _close(actual, expected, rtol=2e-4):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _expected_shape(name, settings, images):
    if name in ("gradcam", "gradcam++", "flip-shift(gradcam)"):
        return images.shape[:1] + (4, 4)
    if name == "crop-gradcam":
        return images.shape[:3]
    return images.shape


@pytest.fixture(scope="module")
def setup(tiny_cnn):
    logits_fn, params = tiny_cnn
    images = jax.random.uniform(jax.random.key(5), (3, 8, 8, 3), minval=0.0, maxval=255.0)
    return logits_fn, params, images, jax.random.key(11)


def _tempered(name, logits_fn):
    """TinyCNN's softmax is saturated on 0-255 images; the crop map weighs by it, so soften the logits."""
    if name != "crop-gradcam":
        return logits_fn
    return lambda params, images: 0.02 * logits_fn(params, images)


@pytest.mark.parametrize("name,method,settings", CASES, ids=IDS)
def test_contract(setup, name, method, settings):
    logits_fn, params, images, key = setup
    logits_fn = _tempered(name, logits_fn)
    classes = jnp.array([0, 3, 1])

    # Eager, with every argument concrete.
    eager = method(logits_fn, params, images, classes, key=key, batch_size=BATCH_SIZE, **settings)
    assert eager.shape == _expected_shape(name, settings, images)
    assert eager.dtype == jnp.float32
    assert bool(jnp.isfinite(eager).all())
    assert float(jnp.abs(eager).max()) > 0
    if name == "crop-gradcam":  # every image's map is lit (the tempered softmax is not saturated)
        assert bool((eager.max(axis=(1, 2)) > 0).all())

    # jit with the settings bound; params, images, classes and the key traced.
    jitted = jax.jit(functools.partial(method, logits_fn, batch_size=BATCH_SIZE, **settings))
    _close(jitted(params, images, classes, key=key), eager)

    # Each image alone gives its row of the batch.
    for i in range(images.shape[0]):
        _close(jitted(params, images[i : i + 1], classes[i : i + 1], key=key)[0], eager[i])

    # The companion form: classes [B, N] -> [B, N, ...], equal to one call per class.
    many = jnp.array([[0, 2], [3, 3], [1, 4]])
    companion = jax.jit(functools.partial(A.for_classes(method), logits_fn, batch_size=BATCH_SIZE, **settings))
    together = companion(params, images, many, key=key)
    assert together.shape == images.shape[:1] + (2,) + eager.shape[1:]
    for n in range(many.shape[1]):
        _close(together[:, n], jitted(params, images, many[:, n], key=key))


# Forward passes of the model in one method: occlusion scores the clean images apart from the occluded copies;
# Guided Grad-CAM back-propagates under two rules (plain to the layer, guided to the pixels), each traced apart.
MODEL_PASSES = {"occlusion": 2, "guided-gradcam": 2}


@pytest.mark.parametrize("name,method,settings", CASES, ids=IDS)
def test_a_compilation_traces_the_model_once_per_pass(setup, name, method, settings):
    # The rows are chunked (BATCH_SIZE < 3 images), so a loop runs over them; its body replays
    # the one trace of the model instead of tracing it again after a trace for the loop's shapes
    # (seconds per compilation for EfficientNet-Lite0). The shape-only traces (the class count,
    # a layer's shape) are kept by JAX per model, so a second compilation shows the method's own.
    logits_fn, params, images, key = setup
    traces = []

    def counting(p, x):
        traces.append(x.shape)
        return logits_fn(p, x)

    classes = jnp.array([0, 3, 1])
    for _ in range(2):
        traces.clear()
        jitted = jax.jit(functools.partial(method, counting, batch_size=BATCH_SIZE, **settings))
        jitted.trace(params, images, classes, key=key)
    assert len(traces) == MODEL_PASSES.get(name, 1), traces


def test_layer_methods_take_a_model_that_cannot_be_hashed(setup):
    # A layer's shape is kept per hashable model; any other callable is traced for it every time.
    logits_fn, params, images, key = setup

    class Unhashable:
        __hash__ = None

        def __call__(self, p, x):
            return 0.02 * logits_fn(p, x)

    classes = jnp.array([0, 3, 1])
    for name in ("gradcam", "crop-gradcam"):
        method, settings = A.METHODS[name].fn, SETTINGS[name]
        got = method(Unhashable(), params, images, classes, batch_size=BATCH_SIZE, **settings)
        _close(got, method(_tempered("crop-gradcam", logits_fn), params, images, classes, batch_size=BATCH_SIZE,
                           **settings))
        assert float(jnp.abs(got).max()) > 0


# Each way the classes are resolved: the gradient's own, the shared one, a wrapper's.
TOP1_CASES = [c for c in CASES if c[0] in ("gradient", "integrated-gradients", "smoothgrad", "flip-shift(gradcam)")]


@pytest.mark.parametrize("name,method,settings", TOP1_CASES, ids=[c[0] for c in TOP1_CASES])
def test_default_class_is_top1(setup, name, method, settings):
    logits_fn, params, images, key = setup
    top1 = jnp.argmax(logits_fn(params, images), axis=-1)
    jitted = jax.jit(functools.partial(method, logits_fn, batch_size=BATCH_SIZE, **settings))
    _close(jitted(params, images, key=key), jitted(params, images, top1, key=key))


@pytest.mark.parametrize("name,method,settings", CASES, ids=IDS)
def test_bad_common_arguments_name_the_argument(setup, name, method, settings):
    logits_fn, params, images, key = setup
    call = functools.partial(method, logits_fn, params, key=key, **settings)
    with pytest.raises(ValueError, match="classes"):
        call(images, 285.7)  # not a class id
    with pytest.raises(ValueError, match="classes"):
        call(images, jnp.array([0, 1]))  # two classes for three images
    with pytest.raises(ValueError, match="classes"):
        call(images, 5)  # TinyCNN has 5 classes
    with pytest.raises(ValueError, match="images"):
        call(images[0], 0)  # no batch axis
    with pytest.raises(ValueError, match="batch_size"):
        call(images, 0, batch_size=0)


BAD_SETTINGS = [
    ("integrated-gradients", {"steps": 1}, "steps"),
    ("integrated-gradients", {"steps": 4.5}, "steps"),
    ("integrated-gradients", {"baseline": jnp.zeros((8, 8, 2))}, "baseline"),
    ("integrated-gradients", {"baseline": jnp.zeros((2, 8, 8, 3))}, "baseline"),
    ("integrated-gradients", {"rule": "guidedd"}, "rule"),
    ("blur-ig", {"steps": 1}, "steps"),
    ("gradient-shap", {"num_samples": 0}, "num_samples"),
    ("gradient-shap", {"num_samples": 2.5}, "num_samples"),
    ("gradient-shap", {"noise_scale": -0.1}, "noise_scale"),
    ("gradient-shap", {"baselines": jnp.zeros((8, 8, 2))}, "baselines"),
    ("gradient-shap", {"baselines": jnp.zeros((2, 8, 8, 2))}, "baselines"),
    ("gradient-shap", {"baselines": jnp.zeros((0, 8, 8, 3))}, "baselines"),
    ("gradient-shap", {"baselines": jnp.full((2, 8, 8, 3), jnp.nan)}, "baselines"),
    ("gradient-shap", {"baselines": "black"}, "baselines"),
    ("gradient-shap", {"key": None}, "key"),
    ("gradient-shap", {"rule": "guidedd"}, "rule"),
    ("blur-ig", {"max_sigma": 0.0}, "max_sigma"),
    ("guided-ig", {"steps": 0}, "steps"),
    ("guided-ig", {"steps": 2.5}, "steps"),
    ("guided-ig", {"fraction": 0.0}, "fraction"),
    ("guided-ig", {"fraction": 1e-4}, "fraction"),  # one feature per round: hours per map
    ("guided-ig", {"fraction": 1.5}, "fraction"),
    ("guided-ig", {"max_dist": -0.1}, "max_dist"),
    ("guided-ig", {"max_dist": float("nan")}, "max_dist"),
    ("guided-ig", {"baseline": jnp.zeros((8, 8, 2))}, "baseline"),
    ("guided-ig", {"rule": "guidedd"}, "rule"),
    ("gradcam", {"layer": "Conv_9"}, "layer"),
    ("gradcam", {"layer": None}, "layer"),
    ("gradcam", {"layer": ""}, "layer"),  # the whole model: no spatial axes
    ("gradcam++", {"layer": "nope"}, "layer"),
    ("guided-gradcam", {"layer": None}, "layer"),
    ("guided-gradcam", {"upsample": "area"}, "upsample"),
    ("crop-gradcam", {"layer": None}, "layer"),
    ("crop-gradcam", {"grid": ((0.0, 2),)}, "grid"),
    ("crop-gradcam", {"grid": ((1.5, 2),)}, "grid"),
    ("crop-gradcam", {"grid": ((0.5, 0),)}, "grid"),
    ("crop-gradcam", {"grid": ((0.5, 2.5),)}, "grid"),
    ("crop-gradcam", {"grid": ()}, "grid"),
    ("occlusion", {"patch": 9}, "patch"),
    ("occlusion", {"patch": (2, 9)}, "patch"),
    ("occlusion", {"stride": 0}, "stride"),
    ("occlusion", {"baseline": jnp.zeros((8, 8, 3))}, "baseline"),
    ("kernel-shap", {"num_samples": 4}, "num_samples"),
    ("kernel-shap", {"segments": np.ones((3, 8, 7), np.int32)}, "segments"),
    ("kernel-shap", {"key": None}, "key"),
    ("kernel-shap", {"baseline": jnp.zeros((8, 8, 2))}, "baseline"),
    ("rise", {"num_masks": 2.5}, "num_masks"),
    ("rise", {"num_masks": 0}, "num_masks"),
    ("rise", {"p": 0.0}, r"^p must"),
    ("rise", {"grid": 9}, "grid"),
    ("rise", {"key": None}, "key"),
    ("smoothgrad", {"num_samples": 2.5}, "num_samples"),
    ("smoothgrad", {"num_samples": "16"}, "num_samples"),
    ("smoothgrad", {"noise_scale": -0.1}, "noise_scale"),
    ("smoothgrad", {"key": None}, "key"),
    ("smoothgrad", {"method": "gradient"}, "method"),
    ("vargrad", {"num_samples": 0}, "num_samples"),
    ("smoothgrad", {"method": A.integrated_gradients, "steps": 1}, "steps"),
    ("flip-shift", {"shifts": ()}, "shifts"),
    ("flip-shift", {"shifts": (-1,)}, "shifts"),
    ("flip-shift", {"method": A.gradcam, "layer": LAYER, "shifts": (1,)}, "shifts"),
]


@pytest.mark.parametrize("name,bad,argument", BAD_SETTINGS, ids=[f"{n}-{a}" for n, _, a in BAD_SETTINGS])
def test_bad_settings_name_the_argument(setup, name, bad, argument):
    logits_fn, params, images, key = setup
    settings = {"key": key, **SETTINGS[name], **bad}
    with pytest.raises(ValueError, match=argument):
        A.METHODS[name].fn(logits_fn, params, images, jnp.array([0, 1, 2]), **settings)


def test_companion_rejects_bad_classes(setup):
    logits_fn, params, images, _ = setup
    companion = A.for_classes(A.gradient)
    with pytest.raises(ValueError, match="classes"):
        companion(logits_fn, params, images, None)
    with pytest.raises(ValueError, match="classes"):
        companion(logits_fn, params, images, jnp.zeros((2, 2), jnp.int32))  # 2 rows for 3 images
    with pytest.raises(ValueError, match="classes"):
        companion(logits_fn, params, images, jnp.array([[0, 7]] * 3))  # class 7 of 5
    with pytest.raises(ValueError, match="classes"):
        companion(logits_fn, params, images, np.array([1.5, 2.0]))


@pytest.mark.parametrize("name,method,settings", CASES, ids=IDS)
def test_jitted_invalid_requests_give_nan_not_a_plausible_map(setup, name, method, settings):
    logits_fn, params, images, key = setup
    run = jax.jit(functools.partial(method, logits_fn, batch_size=BATCH_SIZE, **settings))
    out = np.asarray(run(params, images, jnp.array([1, 5, -1]), key=key))
    assert np.isfinite(out[0]).all()
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()
    bad = np.asarray(images).copy()
    bad[2, 1, 1, 0] = np.nan
    out = np.asarray(run(params, bad, jnp.array([1, 1, 1]), key=key))
    assert np.isfinite(out[:2]).all() and np.isnan(out[2]).all()

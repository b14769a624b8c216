"""Named localisation variants: the crop map against a plain loop, what variant_maps returns."""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import attribution as attr
from saliency_jax.evaluation import localisation_variants as lv
from saliency_jax.localisation import GraphCutConfig
from saliency_jax.types import Classifier
from conftest import TinyCNN


@pytest.fixture(scope="module")
def tiny():
    module = TinyCNN()
    params = module.init(jax.random.key(3), jnp.zeros((1, 8, 8, 3)))
    return Classifier(functools.partial(module.apply, train=False), params, 8, tuple("abcde"),
                      feature_layer="conv2")


def test_crop_boxes_are_evenly_spaced():
    boxes = attr.crop_boxes(10, 10, ((0.5, 3), (1.0, 1)))
    # side 5 at positions linspace(0, 5, 3) = 0, 2.5 -> 2 (round half to even), 5
    expected = [(y, x, 5, 5) for y in (0, 2, 5) for x in (0, 2, 5)] + [(0, 0, 10, 10)]
    np.testing.assert_array_equal(boxes, expected)
    assert len(attr.crop_boxes(224, 224)) == 25 + 16 + 9 + 1
    # A rectangle: crops keep its aspect; positions per axis from edge to edge.
    np.testing.assert_array_equal(attr.crop_boxes(10, 20, ((0.5, 2),)),
                                  [(0, 0, 5, 10), (0, 10, 5, 10), (5, 0, 5, 10), (5, 10, 5, 10)])


def test_crop_map_equals_a_plain_loop(tiny):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    classes = np.array([1, 4])
    grid = ((0.5, 3), (1.0, 1))
    got = lv.crop_gradcam_maps(tiny, images, classes, grid=grid, batch_size=4)

    expected = np.zeros((2, 8, 8))
    for i in range(2):
        for y, x, side, _ in attr.crop_boxes(8, 8, grid):
            crop = jax.image.resize(jnp.asarray(images[i, y : y + side, x : x + side]), (8, 8, 3), "bilinear")[None]
            p = float(jax.nn.softmax(tiny.logits_fn(tiny.params, crop))[0, classes[i]])
            cam = np.asarray(attr.gradcam(tiny.logits_fn, tiny.params, crop, int(classes[i]), layer="conv2"))[0]
            if cam.max() <= 0:
                continue
            piece = p * np.asarray(jax.image.resize(jnp.asarray(cam / cam.max()), (side, side), "bilinear"))
            expected[i, y : y + side, x : x + side] = np.maximum(expected[i, y : y + side, x : x + side], piece)
    assert got.shape == (2, 8, 8) and got.dtype == np.float32
    assert expected.max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_variant_maps_returns_the_named_map_and_config(tiny):
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    classes = np.array([0, 2])
    maps, config = lv.variant_maps(tiny, images, classes, "crops")
    assert config == lv.VARIANTS["crops"].config and config.support > 0
    np.testing.assert_allclose(maps, lv.crop_gradcam_maps(tiny, images, classes), rtol=1e-6)
    maps, config = lv.variant_maps(tiny, images, classes, "paper")
    assert config == GraphCutConfig()
    gradient = np.asarray(attr.attribution_map(attr.gradient(tiny.logits_fn, tiny.params, images, classes)))
    np.testing.assert_allclose(maps, gradient, rtol=1e-5, atol=1e-7)


def test_every_variant_is_valid_and_the_default_is_one_of_them():
    assert lv.DEFAULT_VARIANT in lv.VARIANTS
    assert lv.VARIANTS["paper"] == lv.Variant("gradient", GraphCutConfig(), lv.VARIANTS["paper"].description)
    for name, variant in lv.VARIANTS.items():
        assert variant.seed_map.partition("+")[0] in lv.BASE_MAPS, name
    assert all(name in lv.variant_help() for name in lv.VARIANTS)


def test_bad_requests_raise_naming_the_argument(tiny):
    images = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="variant"):
        lv.variant_maps(tiny, images, [0], "nonsense")
    with pytest.raises(ValueError, match="seed_map"):
        lv.seed_maps(tiny, images, [0], "crops+contrast")
    with pytest.raises(ValueError, match="feature_layer"):
        lv.crop_gradcam_maps(tiny._replace(feature_layer=None), images, [0])
    with pytest.raises(ValueError, match="images"):
        lv.crop_gradcam_maps(tiny, np.zeros((1, 8, 6, 3), np.float32), [0])


def test_crop_seed_maps_run_one_pass_of_crops_per_call_on_one_cpu(tiny, monkeypatch):
    """Two crops per model call where the model runs passes of two; 16 or more elsewhere."""
    from saliency_jax import saliency

    calls = []
    monkeypatch.setattr(lv, "crop_gradcam_maps", lambda clf, images, classes, *, batch_size: calls.append(batch_size)
                        or np.zeros(images.shape[:3], np.float32))
    images = np.zeros((1, 8, 8, 3), np.float32)
    lv.seed_maps(tiny, images, [1], "crops", batch_size=8)
    monkeypatch.setattr(saliency, "default_images_per_pass", lambda: 2)
    lv.seed_maps(tiny, images, [1], "crops", batch_size=8)
    lv.seed_maps(tiny, images, [1], "crops", batch_size=32)
    assert calls == [16, 2, 2]


@pytest.mark.parametrize("seed_map", ["gradient", "smoothgrad", "gradcam", "ig"])
def test_seed_maps_fill_the_last_call_and_compile_one_batch_shape(tiny, seed_map):
    """5 images at batch_size 2: calls of 2, 2 and 2 (one copy), equal to calls of 2, 2 and 1."""

    def traced_shapes(images, classes):
        """How often a fresh copy of the model is traced at each shape (the jitted maps are cached per model)."""
        shapes = collections.Counter()

        def logits_fn(params, x):
            shapes[x.shape] += 1
            return tiny.logits_fn(params, x)

        maps = lv.seed_maps(tiny._replace(logits_fn=logits_fn), images, classes, seed_map, key=key, batch_size=2)
        return maps, shapes

    rng = np.random.default_rng(5)
    images = rng.uniform(0, 255, (5, 8, 8, 3)).astype(np.float32)
    classes = np.array([0, 1, 2, 3, 4])
    key = jax.random.key(7)
    got, shapes = traced_shapes(images, classes)
    assert shapes == traced_shapes(images[:2], classes[:2])[1]  # traced as for one call of 2: compiled once

    # Calls of 2, 2 and 1 images, every one with the same key.
    compute = lv._jitted(seed_map, tiny.logits_fn, "conv2", 8, 2)
    expected = np.concatenate([
        np.asarray(compute(tiny.params, jnp.asarray(images[s : s + 2]), jnp.asarray(classes[s : s + 2]), key))
        for s in (0, 2, 4)
    ])
    assert got.shape == (5, 8, 8) and np.abs(expected).max() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed_map", ["smoothgrad", "gradcam*smoothgrad", "smoothgrad+contrast"])
def test_noisy_seed_maps_do_not_depend_on_the_batch(tiny, seed_map):
    # Each call was keyed by its first image's key: an image's SmoothGrad noise changed with its
    # position, its neighbours and batch_size.
    rng = np.random.default_rng(6)
    images = rng.uniform(0, 255, (3, 8, 8, 3)).astype(np.float32)
    classes = np.array([2, 0, 4])
    key = jax.random.key(11)
    together = lv.seed_maps(tiny, images, classes, seed_map, key=key, batch_size=2)
    for i in range(3):
        alone = lv.seed_maps(tiny, images[i : i + 1], classes[i : i + 1], seed_map, key=key, batch_size=1)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-5, atol=1e-7)
    assert not np.allclose(together, lv.seed_maps(tiny, images, classes, seed_map, key=jax.random.key(12)))


def test_seed_maps_want_square_images_at_the_models_size(tiny):
    # A 8 x 6 batch gave Grad-CAM and SmoothGrad maps stretched to 8 x 8; a 16 x 16 one a map of the
    # wrong scale for the model.
    for shape in ((1, 8, 6, 3), (1, 16, 16, 3)):
        for seed_map in ("gradcam", "smoothgrad", "crops"):
            with pytest.raises(ValueError, match=r"images must be \[B, S, S, C\] at the model's input size \(8 x 8"):
                lv.seed_maps(tiny, np.zeros(shape, np.float32), [1], seed_map)


def test_crop_maps_check_their_classes_and_images(tiny):
    images = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    for classes, message in (([7], r"classes must be in \[0, 5\)"), ([0.7], "integer class ids"),
                             (np.array([2**32 + 1]), "class ids"), ([1, 2, 3], "classes must be")):
        with pytest.raises(ValueError, match=message):  # NaN maps, class 0, class 1, numpy's broadcast error
            lv.crop_gradcam_maps(tiny, images, classes)
    with pytest.raises(ValueError, match="images contains NaN"):
        lv.crop_gradcam_maps(tiny, np.full_like(images, np.nan), [1])


def test_contrast_maps_compile_once_per_model(tiny):
    images = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    lv.seed_maps(tiny, images, [1], "gradient+contrast")
    before = lv._jitted.cache_info()
    lv.seed_maps(tiny, images, [1], "gradient+contrast")
    after = lv._jitted.cache_info()
    assert after.misses == before.misses and after.hits > before.hits  # a new wrapper per call missed


@pytest.mark.parametrize("change, message", [
    (dict(classes=[7, 7]), r"classes must be in \[0, 5\)"),  # once all -inf maps, "non-negative" as documented
    (dict(classes=[-1, -1]), r"classes must be in \[0, 5\)"),
    (dict(classes=[1.9, 2.9]), "classes must be integer class ids"),  # once read as 1 and 2
    (dict(classes=np.array([2**32 + 1, 2**32 + 2])), "classes must be class ids"),  # once wrapped to 1 and 2
    (dict(classes=[1]), r"classes must be a scalar or have shape \[2\]"),
    (dict(images=np.full((2, 8, 8, 3), np.nan, np.float32)), "images contains NaN"),  # once all -inf maps
    (dict(variant=["paper"]), "variant must be one of"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(key=3), "key must be a PRNG key"),
])
def test_variant_maps_refuse_what_they_cannot_map_naming_it(tiny, change, message):
    request = dict(images=np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32),
                   classes=[1, 2], variant="paper", batch_size=8, key=None, **{})
    request.update(change)
    with pytest.raises(ValueError, match=message):
        lv.variant_maps(tiny, request.pop("images"), request.pop("classes"), request.pop("variant"), **request)


@pytest.mark.parametrize("seed_map", [None, "gradient+", "nope+contrast"])
def test_seed_maps_name_an_unknown_seed_map(tiny, seed_map):
    with pytest.raises(ValueError, match="seed_map must be one of"):
        lv.seed_maps(tiny, np.zeros((1, 8, 8, 3), np.float32), [1], seed_map)


def test_contrast_weights_check_their_counts(tiny):
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    for others in (0, 5):  # once a ZeroDivisionError, and a message naming k
        with pytest.raises(ValueError, match=r"others must be an integer >= 1 and <= 4"):
            lv.contrast_weights(tiny, images, [1, 2], others=others)
    with pytest.raises(ValueError, match=r"classes must be a scalar or have shape \[2\]"):  # once a zero row
        lv.contrast_weights(tiny, images, [1])

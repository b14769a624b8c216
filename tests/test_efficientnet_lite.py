"""The EfficientNet-Lite0 port against the PyTorch reference, on real photos."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import saliency_jax as sj
from saliency_jax.io import bundled_photo, resize_image
from saliency_jax.models.efficientnet_lite import (
    EfficientNetLite0,
    PointwiseConv,
    convert_torch_state_dict,
    load_efficientnet_lite0,
)


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


def test_saliency_maps_match_the_pytorch_reference(efficientnet, reference_outputs):
    maps = jax.jit(functools.partial(sj.saliency_map, efficientnet.logits_fn))(
        efficientnet.params, reference_outputs["images"].astype(np.float32)
    )
    for ours, ref in zip(np.asarray(maps), reference_outputs["saliency"]):
        assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.999
        np.testing.assert_allclose(ours.sum(), ref.sum(), rtol=1e-2)


def test_depthwise_paths_agree(efficientnet, reference_outputs):
    xla = load_efficientnet_lite0(depthwise_impl="xla")
    images = reference_outputs["images"][:1].astype(np.float32)
    np.testing.assert_allclose(
        jax.jit(xla.logits_fn)(xla.params, images),
        jax.jit(efficientnet.logits_fn)(efficientnet.params, images),
        atol=1e-3,
    )


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

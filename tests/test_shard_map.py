"""Every method inside ``jax.shard_map``: the same maps as on one device, shard by shard.

Inside ``shard_map`` an array a function makes for itself (a zero offset to
differentiate, a loop's first carry, a class model's zero image) is replicated
over the mesh, while the images are split. A replicated value's gradient is summed
over the shards, so without care Grad-CAM and the class models silently mix the
images of different devices, and loops refuse to trace. Each test runs a method on
a batch split over two of the forced CPU devices and compares it with the
unsplit batch.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import saliency_jax as sj
from saliency_jax import parallel
from saliency_jax.attribution import grid_segments
from saliency_jax.models.depthwise import depthwise_conv2d

AXIS = "shards"


class DepthwiseNet(nn.Module):
    """Stem, ReLU6, a stride-2 depthwise convolution on the CPU's custom VJP, a named feature layer."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jax.nn.relu6(nn.Conv(8, (3, 3), name="stem")(x / 64.0 - 2.0))
        kernel = self.param("dw", nn.initializers.normal(0.5), (3, 3, 1, 8))
        x = depthwise_conv2d(x, kernel, (2, 2), "SAME", impl="shifted")
        x = sj.relu6(nn.Conv(12, (1, 1), name="features")(x))
        return nn.Dense(5, name="fc")(jnp.mean(x, axis=(1, 2)))


@pytest.fixture(scope="module")
def net():
    module = DepthwiseNet()
    params = module.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    images = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)), jnp.float32)
    return functools.partial(module.apply, train=False), params, images, jnp.array([0, 1, 2, 3])


def _mesh():
    return jax.make_mesh((2,), (AXIS,), devices=jax.devices()[:2])


def _split(fn, *args):
    """``fn(params, *args)`` with every arg split over two devices along its first axis, params replicated."""
    mesh = _mesh()
    sharded = [jax.device_put(a, NamedSharding(mesh, P(AXIS))) for a in args]
    specs = (P(),) + (P(AXIS),) * len(args)
    return lambda params: jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(AXIS)))(params, *sharded)


def _both(fn, params, *args):
    whole = jax.tree.map(np.asarray, jax.jit(fn)(params, *args))
    split = jax.tree.map(np.asarray, _split(fn, *args)(params))
    return whole, split


def _assert_same(whole, split):
    for w, s in zip(jax.tree.leaves(whole), jax.tree.leaves(split)):
        scale = float(np.abs(w).max())
        assert scale > 0, "the comparison needs a non-zero result"
        np.testing.assert_allclose(s, w, rtol=1e-4, atol=1e-5 * scale)


def test_vary_like_leaves_arrays_alone_outside_shard_map():
    x = jnp.ones(3)
    assert parallel.vary_like(x, jnp.zeros(2)) is x
    assert parallel.varying_axes(x, {"a": jnp.zeros(1)}) == frozenset()


def test_vary_like_makes_a_made_zero_per_shard():
    # The gradient with respect to a zero made inside shard_map is the shard's own only once it varies.
    def grads(x, *, cast):
        zero = jnp.zeros(x.shape[1:])
        offset = parallel.vary_like(zero, x) if cast else zero
        assert (parallel.varying_axes(offset) == frozenset({AXIS})) == cast
        return jax.grad(lambda o: jnp.sum((x + o[None]) ** 2))(offset)[None]

    x = jnp.arange(8.0).reshape(4, 2)
    mesh = _mesh()
    run = lambda cast: jax.jit(jax.shard_map(functools.partial(grads, cast=cast), mesh=mesh, in_specs=P(AXIS),
                                             out_specs=P(AXIS)))(jax.device_put(x, NamedSharding(mesh, P(AXIS))))
    per_shard = 2 * x.reshape(2, 2, 2).sum(axis=1)
    np.testing.assert_allclose(run(True), per_shard)
    np.testing.assert_allclose(run(False), per_shard.sum(axis=0, keepdims=True).repeat(2, axis=0))


def test_depthwise_gradients_inside_shard_map(net):
    _, _, images, _ = net
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 1, 3))

    def grads(kernel, x):
        loss = lambda x, k: jnp.sum(depthwise_conv2d(x, k, (2, 2), "SAME", impl="shifted") ** 2)
        dx, dk = jax.grad(loss, argnums=(0, 1))(x, kernel)
        # Inside shard_map the replicated kernel's gradient comes back summed over the shards.
        assert not parallel.varying_axes(dk)
        return dx, dk[None]

    whole = jax.tree.map(np.asarray, jax.jit(grads)(kernel, images))
    split = jax.tree.map(np.asarray, _split(grads, images)(kernel))
    np.testing.assert_allclose(split[0], whole[0], rtol=1e-5, atol=1e-3)
    # Summed over the shards, the kernel's gradient is the whole batch's, on every shard.
    np.testing.assert_allclose(split[1][0], whole[1][0], rtol=1e-4)
    np.testing.assert_allclose(split[1][1], whole[1][0], rtol=1e-4)


@pytest.mark.parametrize(
    "method, settings",
    [
        ("gradient", {}),
        ("integrated-gradients", {"steps": 6, "batch_size": 4}),  # several chunks in a scan
        ("gradient-shap", {"num_samples": 5, "batch_size": 4, "noise_scale": 0.1}),
        ("guided-ig", {"steps": 4, "batch_size": 1}),  # a scan of steps around a scan of chunks
        ("gradcam", {"layer": "features"}),
        ("gradcam++", {"layer": "features"}),
        ("guided-gradcam", {"layer": "features"}),
        ("rise", {"num_masks": 12, "batch_size": 8, "grid": 4}),
        ("flip-shift", {}),
        ("occlusion", {"patch": 8, "stride": 8, "batch_size": 2}),
        ("kernel-shap", {"num_samples": 20, "batch_size": 8, "segments": grid_segments(16, 16, 4)}),
    ],
)
def test_methods_inside_shard_map_equal_the_whole_batch(net, method, settings):
    logits_fn, params, images, classes = net
    spec = sj.METHODS[method]
    if spec.needs_key:
        settings = {**settings, "key": jax.random.key(2)}
    fn = lambda p, x, c: spec.fn(logits_fn, p, x, c, **settings)
    _assert_same(*_both(fn, params, images, classes))


def test_layer_gradients_inside_shard_map_are_each_images_own(net):
    logits_fn, params, images, classes = net
    fn = lambda p, x, c: sj.layer_gradients(logits_fn, p, x, c, layer="features")
    _assert_same(*_both(fn, params, images, classes))


def test_class_maps_and_reconstructions_inside_shard_map(net):
    logits_fn, params, images, _ = net
    many = jnp.array([[0, 1], [2, 3], [4, 0], [1, 2]])
    _assert_same(*_both(lambda p, x, c: sj.class_saliency_maps(logits_fn, p, x, c), params, images, many))
    rec = lambda p, x: sj.layer_reconstructions(logits_fn, p, x, [0, 5], layer="features", rule="deconvnet").signals
    _assert_same(*_both(rec, params, images))


@pytest.mark.parametrize("mode", ["paper", "regularised"])
def test_class_models_inside_shard_map_equal_the_whole_batch(net, mode):
    logits_fn, params, _, classes = net

    def fn(p, c):
        result = sj.class_models(logits_fn, p, c, key=jax.random.key(3), steps=3, mode=mode, image_shape=(16, 16, 3))
        return result.images

    _assert_same(*_both(fn, params, classes))

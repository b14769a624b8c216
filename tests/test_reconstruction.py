"""Tests of layer reconstructions (paper §4): deconvnet = back-propagation except at the ReLU."""

import contextlib
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal as sp_signal

from saliency_jax.backprop_rules import RULES, RuleNotAppliedWarning
from saliency_jax.reconstruction import (
    Layer,
    layer_activations,
    layer_reconstruction,
    layer_reconstructions,
    layer_vjp,
    list_layers,
    top_activated_channels,
)
from saliency_jax.saliency import input_gradients

from conftest import Pool, TinyCNN

# --- the two layers the paper treats: convolution and max-pooling -----------------------


def _no_rectifier(rule):
    """A layer without rectifiers pulls back alike under every rule, which is reported for the other rules."""
    return contextlib.nullcontext() if rule == "gradient" else pytest.warns(RuleNotAppliedWarning)


class OneConv(nn.Module):
    strides: int = 1
    padding: str = "VALID"

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), strides=self.strides, padding=self.padding, use_bias=True, name="conv")(x)
        return jnp.mean(x, axis=(1, 2))


def _flipped_filter_convolution(signal, kernel, strides, pad_lo, height, width):
    """Zeiler & Fergus' deconvnet layer, written by hand: the transpose convolution.

    The signal is spread back to the input grid (zeros between strided positions), then
    correlated with the filters flipped in both spatial axes and with input and output
    channels swapped, over the full extent, and cropped where the forward pass padded.
    """
    b, h, w, cout = signal.shape
    kh, kw, cin, _ = kernel.shape
    spread = np.zeros((b, (h - 1) * strides + 1, (w - 1) * strides + 1, cout))
    spread[:, ::strides, ::strides] = signal
    flipped = kernel[::-1, ::-1]  # [kh, kw, cin, cout]
    out = np.zeros((b, spread.shape[1] + kh - 1, spread.shape[2] + kw - 1, cin))
    for n in range(b):
        for i in range(cin):
            for o in range(cout):
                padded = np.pad(spread[n, :, :, o], ((kh - 1, kh - 1), (kw - 1, kw - 1)))
                out[n, :, :, i] += sp_signal.correlate2d(padded, flipped[:, :, i, o], mode="valid")
    out = out[:, pad_lo[0] : pad_lo[0] + height, pad_lo[1] : pad_lo[1] + width]
    # A strided forward pass may not reach the last rows: they get no signal.
    full = np.zeros((b, height, width, cin))
    full[:, : out.shape[1], : out.shape[2]] = out
    return full


@pytest.mark.parametrize(
    "strides, padding, pad_lo",
    # Padding before the image on a 9 x 10 input (SAME with stride 2 pads 2 rows but 1 column).
    [(1, "VALID", (0, 0)), (1, "SAME", (1, 1)), (2, "SAME", (1, 0)), (2, "VALID", (0, 0))],
)
@pytest.mark.parametrize("rule", RULES)
def test_convolution_reconstruction_is_flipped_filter_convolution(strides, padding, pad_lo, rule, getkey):
    module = OneConv(strides, padding)
    images = jax.random.normal(getkey(), (2, 9, 10, 3))
    params = module.init(getkey(), images)
    logits_fn = functools.partial(module.apply, train=False)
    with _no_rectifier(rule):
        features, reconstruct = layer_vjp(logits_fn, params, images, layer="conv", rule=rule)
    r = jax.random.normal(getkey(), features.shape)
    kernel = np.asarray(params["params"]["conv"]["kernel"], np.float64)
    want = _flipped_filter_convolution(np.asarray(r, np.float64), kernel, strides, pad_lo, 9, 10)
    np.testing.assert_allclose(reconstruct(r), want, rtol=1e-5, atol=1e-5)


class OnePool(nn.Module):
    window: int = 2
    stride: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Pool(self.window, self.stride, name="pool")(x)
        return x.reshape(x.shape[0], -1)


def _switch_unpooling(images, signal, window, stride):
    """Zeiler & Fergus' unpooling, written by hand: each pooled signal goes back to the
    position that won the max in the forward pass (its "switch"); overlaps add up."""
    images, signal = np.asarray(images), np.asarray(signal)
    out = np.zeros_like(images, np.float64)
    b, h, w, c = signal.shape
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    patch = images[n, i * stride : i * stride + window, j * stride : j * stride + window, k]
                    di, dj = np.unravel_index(np.argmax(patch), patch.shape)
                    out[n, i * stride + di, j * stride + dj, k] += signal[n, i, j, k]
    return out


@pytest.mark.parametrize("window, stride", [(2, 2), (3, 2)], ids=["2x2/2", "3x3/2 overlapping"])
@pytest.mark.parametrize("rule", RULES)
def test_max_pool_reconstruction_is_switch_unpooling(window, stride, rule, getkey):
    module = OnePool(window, stride)
    images = jax.random.normal(getkey(), (2, 9, 9, 3))
    logits_fn = functools.partial(module.apply, train=False)
    with _no_rectifier(rule):
        features, reconstruct = layer_vjp(logits_fn, {}, images, layer="pool", rule=rule)
    r = jax.random.normal(getkey(), features.shape)
    np.testing.assert_allclose(reconstruct(r), _switch_unpooling(images, r, window, stride), rtol=1e-6, atol=1e-6)


# --- a small ReLU network -----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_cnn():
    module = TinyCNN()
    params = module.init(jax.random.key(7), jnp.zeros((1, 12, 12, 3)))
    return functools.partial(module.apply, train=False), params


@pytest.fixture
def images(getkey):
    return jax.random.normal(getkey(), (3, 12, 12, 3))


def _conv2_by_hand(params, x):
    """The network truncated at conv2 (pre-activation), written without the model."""
    p = params["params"]

    def conv(x, layer):
        y = jax.lax.conv_general_dilated(
            x, p[layer]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + p[layer]["bias"][None, None, None, :]

    h = jax.nn.relu(conv(x, "conv1"))
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return conv(h, "conv2")


def test_list_layers_and_activations(small_cnn, images):
    logits_fn, params = small_cnn
    assert list_layers(logits_fn, params, images) == (
        Layer("conv1", (3, 12, 12, 4)),
        Layer("pool1", (3, 6, 6, 4)),
        Layer("conv2", (3, 6, 6, 6)),
        Layer("fc", (3, 5)),
        Layer("", (3, 5)),
    )
    np.testing.assert_allclose(
        layer_activations(logits_fn, params, images, layer="conv2"), _conv2_by_hand(params, images), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(layer_activations(logits_fn, params, images, layer=""), logits_fn(params, images), rtol=1e-6)


def test_gradient_reconstruction_is_gradient_of_the_truncated_network(small_cnn, images):
    logits_fn, params = small_cnn
    c, pos = 4, (2, 3)

    def neuron(x):
        return jnp.sum(_conv2_by_hand(params, x)[:, pos[0], pos[1], c])

    def half_square_map(x):
        return 0.5 * jnp.sum(jnp.square(_conv2_by_hand(params, x)[..., c]))

    got = layer_reconstruction(logits_fn, params, images, c, layer="conv2", neuron=pos, weighting="ones")
    np.testing.assert_allclose(got.signals, jax.grad(neuron)(images), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(got.positions, np.broadcast_to(pos, (3, 2)))
    np.testing.assert_allclose(got.activations, _conv2_by_hand(params, images)[:, pos[0], pos[1], c], rtol=1e-5)
    # Zeiler & Fergus seed the map with its own values: the gradient of half its squared norm.
    got = layer_reconstruction(logits_fn, params, images, c, layer="conv2", weighting="activation")
    np.testing.assert_allclose(got.signals, jax.grad(half_square_map)(images), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_whole_model_reconstruction_is_the_input_gradient(small_cnn, images, rule):
    logits_fn, params = small_cnn
    got = layer_reconstruction(logits_fn, params, images, jnp.array([0, 3, 1]), layer="", rule=rule, weighting="ones")
    want = input_gradients(logits_fn, params, images, jnp.array([0, 3, 1]), rule=rule).gradients
    np.testing.assert_allclose(got.signals, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rule", RULES)
def test_neuron_reconstruction_stays_in_its_receptive_field(small_cnn, images, rule):
    logits_fn, params = small_cnn
    # conv2 (3x3) on the 2x2-pooled conv1 (3x3): neuron (i, j) sees rows 2i-3 .. 2i+4.
    i, j = 2, 3
    rec = layer_reconstructions(logits_fn, params, images, jnp.arange(6), layer="conv2", neuron=(i, j), rule=rule)
    inside = np.zeros((12, 12), bool)
    inside[max(2 * i - 3, 0) : 2 * i + 5, max(2 * j - 3, 0) : 2 * j + 5] = True
    magnitude = np.abs(np.asarray(rec.signals)).sum(axis=(0, 1, 4))
    assert magnitude[inside].max() > 0
    np.testing.assert_array_equal(magnitude[~inside], 0.0)


def test_rules_differ_on_relu_layers_only(small_cnn, images):
    logits_fn, params = small_cnn
    recs = {r: layer_reconstruction(logits_fn, params, images, 1, layer="conv2", rule=r).signals for r in RULES}
    assert float(jnp.max(jnp.abs(recs["gradient"] - recs["deconvnet"]))) > 1e-4
    assert float(jnp.max(jnp.abs(recs["gradient"] - recs["guided"]))) > 1e-4
    # Below the first ReLU only the convolution is left: all rules agree.
    first = {r: layer_reconstruction(logits_fn, params, images, 1, layer="conv1", rule=r).signals for r in RULES}
    np.testing.assert_array_equal(first["deconvnet"], first["gradient"])
    np.testing.assert_array_equal(first["guided"], first["gradient"])


def test_strongest_neuron_and_weighting(small_cnn, images):
    logits_fn, params = small_cnn
    features = np.asarray(layer_activations(logits_fn, params, images, layer="conv2"))
    rec = layer_reconstruction(logits_fn, params, images, jnp.array([0, 1, 2]), layer="conv2", neuron="max", weighting="ones")
    for b in range(3):
        fmap = features[b, :, :, b]
        assert tuple(rec.positions[b]) == np.unravel_index(np.argmax(fmap), fmap.shape)
        np.testing.assert_allclose(rec.activations[b], fmap.max(), rtol=1e-6)
    scaled = layer_reconstruction(
        logits_fn, params, images, jnp.array([0, 1, 2]), layer="conv2", neuron="max", weighting="activation"
    )
    np.testing.assert_allclose(scaled.signals, rec.signals * rec.activations[:, None, None, None], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rule", RULES)
def test_many_channels_batched_and_jitted_agree(small_cnn, images, rule):
    logits_fn, params = small_cnn
    channels = jnp.array([[0, 5], [2, 2], [4, 1]])
    many = layer_reconstructions(logits_fn, params, images, channels, layer="conv2", rule=rule)
    assert many.signals.shape == (3, 2, 12, 12, 3)
    for n in range(2):
        one = layer_reconstruction(logits_fn, params, images, channels[:, n], layer="conv2", rule=rule)
        np.testing.assert_allclose(many.signals[:, n], one.signals, rtol=1e-6, atol=1e-7)
        for b in range(3):
            alone = layer_reconstruction(logits_fn, params, images[b : b + 1], channels[b, n], layer="conv2", rule=rule)
            np.testing.assert_allclose(alone.signals[0], one.signals[b], rtol=1e-5, atol=1e-7)
    jitted = jax.jit(functools.partial(layer_reconstructions, logits_fn, layer="conv2", neuron="max", rule=rule))
    eager = layer_reconstructions(logits_fn, params, images, channels, layer="conv2", neuron="max", rule=rule)
    out = jitted(params, images, channels=channels)
    np.testing.assert_allclose(out.signals, eager.signals, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out.positions, eager.positions)
    assert bool(jnp.all(jnp.isfinite(out.signals)))


def test_dense_layer_units(small_cnn, images):
    logits_fn, params = small_cnn
    rec = layer_reconstruction(logits_fn, params, images, 2, layer="fc", weighting="ones")
    want = input_gradients(logits_fn, params, images, 2).gradients
    np.testing.assert_allclose(rec.signals, want, rtol=1e-6, atol=1e-7)
    assert rec.positions.shape == (3, 0)


def test_top_activated_channels(small_cnn, images):
    logits_fn, params = small_cnn
    features = np.asarray(layer_activations(logits_fn, params, images, layer="conv1"))
    top = top_activated_channels(logits_fn, params, images, layer="conv1", k=2)
    strength = features.max(axis=(1, 2))
    np.testing.assert_array_equal(top.channels, np.argsort(-strength, axis=1)[:, :2])
    np.testing.assert_allclose(top.activations, -np.sort(-strength, axis=1)[:, :2], rtol=1e-6)
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\]"):
        top_activated_channels(logits_fn, params, images, layer="conv1", k=5)


class Shared(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        dense = nn.Dense(3, name="twice")
        x = x.reshape(x.shape[0], -1)
        return dense(jnp.tanh(dense(x)[:, :1]) * jnp.ones((1, 48), x.dtype))


def test_clear_errors(small_cnn, images):
    logits_fn, params = small_cnn
    with pytest.raises(ValueError, match=r"layer 'conv3' is not a module.*'conv2'"):
        layer_reconstruction(logits_fn, params, images, 0, layer="conv3")
    with pytest.raises(ValueError, match=r"channels must be in \[0, 6\)"):
        layer_reconstruction(logits_fn, params, images, 6, layer="conv2")
    with pytest.raises(ValueError, match="channels must be integer"):
        layer_reconstructions(logits_fn, params, images, jnp.array([0.5]), layer="conv2")
    with pytest.raises(ValueError, match=r"channel must be a scalar or have shape \[3\]"):
        layer_reconstruction(logits_fn, params, images, jnp.array([0, 1]), layer="conv2")
    with pytest.raises(ValueError, match="weighting must be one of"):
        layer_reconstruction(logits_fn, params, images, 0, layer="conv2", weighting="squared")
    with pytest.raises(ValueError, match="rule must be one of"):
        layer_reconstruction(logits_fn, params, images, 0, layer="conv2", rule="zeiler")
    with pytest.raises(ValueError, match="neuron must be None, 'max', or integer positions"):
        layer_reconstruction(logits_fn, params, images, 0, layer="conv2", neuron=(1, 2, 3))
    with pytest.raises(ValueError, match="neuron must lie within"):
        layer_reconstruction(logits_fn, params, images, 0, layer="conv2", neuron=(1, 6))
    with pytest.raises(ValueError, match="neuron must be None or 'max' for a layer without spatial axes"):
        layer_reconstruction(logits_fn, params, images, 0, layer="fc", neuron=(1,))
    with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\]"):
        layer_reconstruction(logits_fn, params, images[0], 0, layer="conv2")
    _, reconstruct = layer_vjp(logits_fn, params, images, layer="conv2")
    with pytest.raises(ValueError, match=r"signal must have the layer's shape \(3, 6, 6, 6\)"):
        reconstruct(jnp.zeros((3, 6, 6, 5)))
    shared = Shared()
    x = jnp.zeros((1, 4, 4, 3))
    shared_params = shared.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="called 2 times"):
        layer_activations(functools.partial(shared.apply, train=False), shared_params, x, layer="twice")


# --- EfficientNet-Lite0: reconstructions w.r.t. raw pixels ----------------------------------


@pytest.fixture(scope="module")
def efficientnet_xla():
    """EfficientNet-Lite0 with XLA's depthwise convolution: slower to run, quicker to compile,
    which is the better trade for the few passes of these tests."""
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    return load_efficientnet_lite0(depthwise_impl="xla")


@pytest.fixture(scope="module")
def photo():
    from saliency_jax import io

    return jnp.asarray(io.resize_image(io.bundled_photo("chelsea"), 224))[None]


@pytest.mark.slow
def test_efficientnet_early_neuron_reconstruction_in_raw_pixels(efficientnet_xla, photo):
    """blocks_0's neuron (i, j): a 3x3/2 stem (TF SAME: no padding before) then a 3x3/1
    depthwise conv, so it sees raw pixel rows 2i-2 .. 2i+4 and nothing else."""
    model = efficientnet_xla
    top = top_activated_channels(model.logits_fn, model.params, photo, layer="blocks_0", k=1)
    i, j = 40, 57

    @jax.jit
    def rec(params, x):
        channel = top.channels[:, 0]
        return [
            layer_reconstruction(model.logits_fn, params, x, channel, layer="blocks_0", neuron=(i, j), rule=r).signals
            for r in RULES
        ]

    for signals in rec(model.params, photo):
        magnitude = np.abs(np.asarray(signals[0])).sum(axis=-1)
        inside = np.zeros((224, 224), bool)
        inside[2 * i - 2 : 2 * i + 5, 2 * j - 2 : 2 * j + 5] = True
        assert magnitude[inside].max() > 0
        np.testing.assert_array_equal(magnitude[~inside], 0.0)


@pytest.mark.slow
def test_efficientnet_deep_reconstructions(efficientnet_xla, photo):
    model = efficientnet_xla
    top = top_activated_channels(model.logits_fn, model.params, photo, layer="blocks_14", k=2)
    assert top.channels.shape == (1, 2) and bool(jnp.all(top.activations > 0))

    @jax.jit
    def rec(params, x, channels):
        return [
            layer_reconstructions(model.logits_fn, params, x, channels, layer="blocks_14", rule=r).signals for r in RULES
        ]

    signals = dict(zip(RULES, rec(model.params, photo, top.channels)))
    for rule, s in signals.items():
        assert s.shape == (1, 2, 224, 224, 3)
        assert bool(jnp.all(jnp.isfinite(s))) and float(jnp.max(jnp.abs(s))) > 0, rule
    # A deep map reaches most of the image, and the rules give different pictures.
    assert float(jnp.mean(jnp.abs(signals["gradient"]).sum(axis=-1) > 0)) > 0.5
    assert float(jnp.max(jnp.abs(signals["gradient"] - signals["guided"]))) > 0


def test_figure_experiment_draws(small_cnn, images, tmp_path):
    import importlib.util
    import os
    import sys

    path = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "fig_deconvnet.py")
    spec = importlib.util.spec_from_file_location("fig_deconvnet", path)
    experiment = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = experiment  # dataclasses look their module up
    spec.loader.exec_module(experiment)

    rgb = experiment.signal_to_rgb(np.array([[[-2.0, 0.0, 2.0]]]), 100.0)
    np.testing.assert_allclose(rgb, [[[0.0, 0.5, 1.0]]], atol=1e-9)
    logits_fn, params = small_cnn
    config = experiment.Config(photos=("a", "b"), layers=("conv1", "pool1", "conv2"), channels=2)
    x = 127.0 + 50.0 * np.asarray(images[:2])
    maps = {r: np.abs(np.asarray(images[:2, ..., 0])) for r in RULES}
    reconstructions = {}
    for layer in config.layers:
        top = top_activated_channels(logits_fn, params, images[:2], layer=layer, k=2)
        signals = layer_reconstructions(logits_fn, params, images[:2], top.channels, layer=layer).signals
        reconstructions[layer] = (top, {r: np.asarray(signals) for r in RULES})
    experiment.draw(config, str(tmp_path), x, np.array([1, 2]), maps, reconstructions)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "channels.json", "reconstructions_a.png", "reconstructions_b.png", "saliency_rules.png"
    ]


def test_layer_gradients_are_the_gradient_of_the_score_through_the_layer(small_cnn, images):
    """dS_c/dA at conv2, against the network split by hand at that layer."""
    from saliency_jax.reconstruction import layer_gradients

    logits_fn, params = small_cnn
    classes = jnp.array([1, 4, 0])
    features, grads = layer_gradients(logits_fn, params, images, classes, layer="conv2")
    np.testing.assert_allclose(features, layer_activations(logits_fn, params, images, layer="conv2"), rtol=1e-6)
    p = params["params"]

    def head(a):  # relu - mean - fc, the network above conv2
        return jnp.mean(jax.nn.relu(a), axis=(1, 2)) @ p["fc"]["kernel"] + p["fc"]["bias"][None, :]

    expected = jax.vmap(lambda a, c: jax.grad(lambda x: head(x[None])[0, c])(a))(features, classes)
    np.testing.assert_allclose(grads, expected, rtol=1e-5, atol=1e-7)


def test_layer_gradients_in_passes_of_images_are_the_same(small_cnn, images):
    """``images_per_pass`` changes how many images each pass of the model sees, not the result."""
    from saliency_jax.reconstruction import layer_gradients, layer_gradients_and_logits

    logits_fn, params = small_cnn
    classes = jnp.array([1, 4, 0])
    together = layer_gradients_and_logits(logits_fn, params, images, classes, layer="conv2", images_per_pass=3)
    for per_pass in (1, 2, 5):  # 2 leaves one image for a last, smaller pass
        jitted = jax.jit(layer_gradients_and_logits, static_argnums=0, static_argnames=("layer", "images_per_pass"))
        got = jitted(logits_fn, params, images, classes, layer="conv2", images_per_pass=per_pass)
        for a, b in zip(got, together):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"images_per_pass={per_pass}")
    features, grads = layer_gradients(logits_fn, params, images, classes, layer="conv2", images_per_pass=2)
    np.testing.assert_allclose(grads, together[1], rtol=1e-5, atol=1e-7)
    seen = []

    def recording(p, x):
        seen.append(x.shape[0])  # runs while tracing: one entry per traced pass
        return logits_fn(p, x)

    layer_gradients(recording, params, images, classes, layer="conv2", images_per_pass=2)
    assert sorted(seen) == [1, 1, 2]  # the layer's shape from one image, passes of 2 (one trace), the 1 left over
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="images_per_pass must be an integer >= 1"):
            layer_gradients(logits_fn, params, images, classes, layer="conv2", images_per_pass=bad)


def test_layer_methods_in_passes_of_two_images_are_the_same(small_cnn, images, monkeypatch):
    """The default on a single CPU device (passes of two images) gives the maps of one pass."""
    from saliency_jax import attribution as attr
    from saliency_jax import saliency

    logits_fn, params = small_cnn
    classes = jnp.array([1, 4, 0])
    methods = {
        "gradcam": functools.partial(attr.gradcam, layer="conv2"),
        "gradcam_plus_plus": functools.partial(attr.gradcam_plus_plus, layer="conv2"),
        "crop_gradcam": functools.partial(attr.crop_gradcam, layer="conv2", grid=((0.5, 2), (1.0, 1)), batch_size=3),
    }
    assert saliency.default_images_per_pass() == saliency.ALL_IMAGES  # several devices: one pass
    together = {name: fn(logits_fn, params, images, classes) for name, fn in methods.items()}
    seen = []

    def recording(p, x):
        seen.append(x.shape[0])
        return logits_fn(p, x)

    monkeypatch.setattr(saliency, "default_images_per_pass", lambda: 2)
    for name, fn in methods.items():
        np.testing.assert_allclose(fn(logits_fn, params, images, classes), together[name], rtol=1e-5, atol=1e-7,
                                   err_msg=name)
        seen.clear()
        fn(recording, params, images, classes)
        assert max(seen) <= 2, (name, seen)


class PlainRelu(nn.Module):
    """TinyCNN's layers on jax.nn.relu, which the rules cannot reach."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jax.nn.relu(nn.Conv(4, (3, 3), padding="SAME", name="conv1")(x))
        x = jax.nn.relu(nn.Conv(6, (3, 3), padding="SAME", name="conv2")(x))
        return nn.Dense(5, name="fc")(jnp.mean(x, axis=(1, 2)))


@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
def test_a_reconstruction_that_no_rule_reached_is_reported(images, rule, getkey):
    """Once the plain gradient under every rule, silently (saliency_map reported it, these did not)."""
    module = PlainRelu()
    params = module.init(getkey(), images)
    logits_fn = functools.partial(module.apply, train=False)
    with pytest.warns(RuleNotAppliedWarning, match=f"rule='{rule}' reached no rectifier"):
        ours = layer_reconstructions(logits_fn, params, images, [1] * images.shape[0], layer="conv2", rule=rule)
    plain = layer_reconstructions(logits_fn, params, images, [1] * images.shape[0], layer="conv2")
    np.testing.assert_array_equal(ours.signals, plain.signals)


@pytest.mark.parametrize("k", [2.0, True, np.float32(2), "2"])
def test_top_activated_channels_wants_an_integer_k(small_cnn, images, k):
    """A float k once failed inside lax.top_k and left JAX's cache failing for the valid k after it."""
    logits_fn, params = small_cnn
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\]"):
        top_activated_channels(logits_fn, params, images, layer="conv1", k=k)
    assert top_activated_channels(logits_fn, params, images, layer="conv1", k=np.int64(2)).channels.shape[1] == 2


@pytest.mark.parametrize("channels, message", [("1", "integer channel ids, got <U1"), (None, "integer channel ids"),
                                               ([], "at least one channel"), (1.5, "integer channel ids")])
def test_channels_that_are_not_ids_are_named(small_cnn, images, channels, message):
    """Once a TypeError from inside JAX, or "got dtype float32" for an empty list."""
    logits_fn, params = small_cnn
    with pytest.raises(ValueError, match=f"^channels must .*{message}"):
        layer_reconstructions(logits_fn, params, images, channels, layer="conv2")
    with pytest.raises(ValueError, match="^weighting must be one of"):
        layer_reconstructions(logits_fn, params, images, 1, layer="conv2", weighting=np.array([1]))


@pytest.mark.parametrize("call", ["one", "many"])
def test_ids_past_32_bits_are_refused_not_wrapped(small_cnn, images, call):
    """2**32 + 1 once became channel 1 (and a neuron at 2**32 + 3 position 3) without a word."""
    from saliency_jax.reconstruction import layer_reconstruction

    logits_fn, params = small_cnn
    batch = images.shape[0]

    def run(channel, **kwargs):
        if call == "one":
            return layer_reconstruction(logits_fn, params, images, channel, layer="conv2", **kwargs)
        return layer_reconstructions(logits_fn, params, images, np.reshape(channel, (-1, 1)) if np.ndim(channel)
                                     else channel, layer="conv2", **kwargs)

    for channel in (np.int64(2**32 + 1), 2**40, np.array([2**32 + 1] * batch)):
        with pytest.raises(ValueError, match=r"channels must be in \[0, "):
            run(channel)
    for neuron in (np.array([2**32 + 3, 0]), [2**40, 0], np.array([[0, 2**32]] * batch)):
        with pytest.raises(ValueError, match="neuron must lie within the layer's spatial shape"):
            run(1, neuron=neuron)
    ok = run(np.int64(1), neuron=np.array([1, 0], np.int64))
    np.testing.assert_array_equal(np.asarray(ok.positions).reshape(batch, -1)[:, :2], [[1, 0]] * batch)

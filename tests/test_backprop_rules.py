"""Tests of the ReLU backward rules (paper §4): gradient, deconvnet, guided."""

import contextlib
import functools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import backprop_rules
from saliency_jax.backprop_rules import RULES, RuleNotAppliedWarning, backprop_rule, current_rule, relu, relu6
from saliency_jax.saliency import input_gradients

# --- one rectifier ---------------------------------------------------------------------

# Forward inputs on both sides of every kink, and incoming signals of both signs.
X = np.array([-2.0, -0.0, 0.0, 0.5, 3.0, 5.9, 6.0, 7.5], np.float32)


def _expected_backward(x, r, rule, upper):
    """The paper's table, written out: which signals each rule lets through."""
    forward_open = (x > 0) & (x < upper) if upper is not None else x > 0
    passes = {
        "gradient": forward_open,
        "deconvnet": r > 0,
        "guided": forward_open & (r > 0),
    }[rule]
    return np.where(passes, r, 0.0)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("fn, upper", [(relu, None), (relu6, 6.0)], ids=["relu", "relu6"])
def test_rectifier_backward_matches_the_rule_table(rule, fn, upper):
    x = jnp.asarray(np.repeat(X, 2))
    r = jnp.asarray(np.tile([1.5, -0.7], X.size).astype(np.float32))
    with backprop_rule(rule):
        y, pullback = jax.vjp(fn, x)
    np.testing.assert_array_equal(y, np.clip(np.asarray(x), 0, upper if upper else np.inf))
    (back,) = pullback(r)
    np.testing.assert_array_equal(back, _expected_backward(np.asarray(x), np.asarray(r), rule, upper))


@pytest.mark.parametrize("fn", [relu, relu6], ids=["relu", "relu6"])
def test_guided_is_gradient_and_deconvnet_gates_together(fn, getkey):
    x = jax.random.normal(getkey(), (50,)) * 4
    r = jax.random.normal(getkey(), (50,))
    back = {}
    for rule in RULES:
        with backprop_rule(rule):
            back[rule] = jax.vjp(fn, x)[1](r)[0]
    np.testing.assert_array_equal(back["guided"], jnp.where(back["deconvnet"] != 0, back["gradient"], 0.0))
    assert not np.array_equal(back["gradient"], back["deconvnet"])


def test_rule_context_nests_resets_and_validates():
    assert current_rule() == "gradient"
    with backprop_rule("deconvnet"):
        assert current_rule() == "deconvnet"
        with backprop_rule("guided"):
            assert current_rule() == "guided"
        assert current_rule() == "deconvnet"
    assert current_rule() == "gradient"
    with pytest.raises(ValueError, match="rule must be one of"):
        with backprop_rule("deconv"):
            pass
    assert current_rule() == "gradient"


def test_rule_is_read_when_tracing():
    x = jnp.array([1.0, -1.0])

    @jax.jit
    def deconv_grad(x):
        with backprop_rule("deconvnet"):
            return jax.grad(lambda v: jnp.sum(relu(v)))(x)

    # Inside jit the context decides; outside, the default rule still applies.
    np.testing.assert_array_equal(deconv_grad(x), [1.0, 1.0])
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(relu(v)))(x), [1.0, 0.0])


# --- whole networks ---------------------------------------------------------------------


class NoReluNet(nn.Module):
    """Conv, max-pool, tanh, dense: every operation the rules must leave alone."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(5, (3, 3), padding="SAME")(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = jnp.tanh(nn.Conv(4, (3, 3), strides=(2, 2))(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(6)(x)


def test_rules_agree_on_a_network_without_relus(getkey):
    module = NoReluNet()
    images = jax.random.normal(getkey(), (3, 12, 12, 3))
    params = module.init(getkey(), images)
    logits_fn = functools.partial(module.apply, train=False)
    grads = [input_gradients(logits_fn, params, images, 2, rule="gradient").gradients]
    for rule in RULES[1:]:  # said, since a model built on other rectifiers would get the gradient too
        with pytest.warns(RuleNotAppliedWarning, match=f"rule='{rule}' reached no rectifier"):
            grads.append(input_gradients(logits_fn, params, images, 2, rule=rule).gradients)
    assert float(jnp.max(jnp.abs(grads[0]))) > 0
    for g in grads[1:]:
        np.testing.assert_array_equal(g, grads[0])


class ReluMLP(nn.Module):
    """flatten - dense - relu - dense - relu6 - dense."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        x = relu(nn.Dense(16, name="fc1")(x))
        x = relu6(nn.Dense(12, name="fc2")(x))
        return nn.Dense(4, name="fc3")(x)


def _hand_backward(params, image, cls, rule):
    """The three backward passes of :class:`ReluMLP`, written out in numpy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    x = np.asarray(image, np.float64).reshape(-1)
    a1 = x @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    h1 = np.maximum(a1, 0)
    a2 = h1 @ p["fc2"]["kernel"] + p["fc2"]["bias"]

    def gate(pre, r, upper):
        forward_open = (pre > 0) & (pre < upper)
        if rule == "gradient":
            return r * forward_open
        if rule == "deconvnet":
            return r * (r > 0)
        return r * forward_open * (r > 0)

    r = p["fc3"]["kernel"][:, cls]
    r = gate(a2, r, 6.0)
    r = p["fc2"]["kernel"] @ r
    r = gate(a1, r, np.inf)
    r = p["fc1"]["kernel"] @ r
    return r.reshape(np.shape(image))


@pytest.fixture(scope="module")
def relu_mlp():
    module = ReluMLP()
    params = module.init(jax.random.key(3), jnp.zeros((1, 4, 4, 3)))
    return functools.partial(module.apply, train=False), params


@pytest.mark.parametrize("rule", RULES)
def test_relu_network_matches_hand_written_backward_pass(relu_mlp, rule, getkey):
    logits_fn, params = relu_mlp
    images = 3.0 * jax.random.normal(getkey(), (3, 4, 4, 3))
    classes = jnp.array([0, 2, 3])
    got = input_gradients(logits_fn, params, images, classes, rule=rule).gradients
    for b in range(3):
        want = _hand_backward(params, images[b], int(classes[b]), rule)
        np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)


def test_rules_differ_on_a_relu_network(relu_mlp, getkey):
    logits_fn, params = relu_mlp
    images = 3.0 * jax.random.normal(getkey(), (2, 4, 4, 3))
    grads = {rule: input_gradients(logits_fn, params, images, 1, rule=rule).gradients for rule in RULES}
    for a, b in [("gradient", "deconvnet"), ("gradient", "guided"), ("deconvnet", "guided")]:
        assert float(jnp.max(jnp.abs(grads[a] - grads[b]))) > 1e-3, (a, b)


def test_rules_differ_only_at_the_gates(relu_mlp, getkey):
    """Where every unit is open and every signal positive, no ReLU gate closes: all rules agree."""
    logits_fn, params = relu_mlp
    positive = jax.tree.map(lambda a: jnp.abs(a) * 0.1, params)
    positive["params"]["fc1"]["bias"] = jnp.full_like(positive["params"]["fc1"]["bias"], 0.5)
    positive["params"]["fc2"]["bias"] = jnp.full_like(positive["params"]["fc2"]["bias"], 0.5)
    images = jax.random.uniform(getkey(), (2, 4, 4, 3))
    fc1 = positive["params"]["fc1"]
    pre = images.reshape(2, -1) @ fc1["kernel"] + fc1["bias"][None, :]
    assert bool(jnp.all(pre > 0))
    grads = [input_gradients(logits_fn, positive, images, 1, rule=rule).gradients for rule in RULES]
    for g in grads[1:]:
        np.testing.assert_allclose(g, grads[0], rtol=1e-6)


def test_deconvnet_signal_does_not_depend_on_the_image_without_pooling(relu_mlp, getkey):
    """The deconvnet rule never looks at the forward pass, so without max-pool switches the
    signal is the same for every image (Nie et al., 2018); the gradient's is not."""
    logits_fn, params = relu_mlp
    images = 3.0 * jax.random.normal(getkey(), (2, 4, 4, 3))
    deconv = input_gradients(logits_fn, params, images, 1, rule="deconvnet").gradients
    np.testing.assert_allclose(deconv[0], deconv[1], rtol=1e-6)
    grad = input_gradients(logits_fn, params, images, 1, rule="gradient").gradients
    assert float(jnp.max(jnp.abs(grad[0] - grad[1]))) > 1e-3


@pytest.mark.parametrize("rule", RULES)
def test_rules_under_jit_and_vmap(relu_mlp, rule, getkey):
    logits_fn, params = relu_mlp
    images = 3.0 * jax.random.normal(getkey(), (3, 4, 4, 3))
    grads_fn = functools.partial(input_gradients, logits_fn, rule=rule)
    eager = grads_fn(params, images, 2).gradients
    jitted = jax.jit(lambda p, x: grads_fn(p, x, 2).gradients)(params, images)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)
    per_example = jax.vmap(lambda x: grads_fn(params, x[None], 2).gradients[0])(images)
    np.testing.assert_allclose(per_example, eager, rtol=1e-6, atol=1e-7)


def test_rule_argument_is_validated(relu_mlp):
    logits_fn, params = relu_mlp
    with pytest.raises(ValueError, match="rule must be one of"):
        input_gradients(logits_fn, params, jnp.zeros((1, 4, 4, 3)), rule="guided-backprop")
    assert backprop_rules.check_rule("guided") == "guided"


# --- EfficientNet-Lite0 ---------------------------------------------------------------------


@pytest.mark.slow
def test_efficientnet_gets_every_rule_and_its_deconvnet_ignores_the_image():
    """EfficientNet-Lite0's rectifiers are the library's relu6, so the rule switches without
    touching the model. It has no max-pooling, so nothing in its deconvnet pass depends on the
    image: two photos explained for the same class get the same deconvnet signal."""
    from saliency_jax import io
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    model = load_efficientnet_lite0(depthwise_impl="xla")  # quicker to compile on CPU
    photos = jnp.asarray(np.stack([io.resize_image(io.bundled_photo(p), 224) for p in ("chelsea", "coffee")]))
    grads = {
        rule: jax.jit(lambda p, x, rule=rule: input_gradients(model.logits_fn, p, x, 285, rule=rule).gradients)(
            model.params, photos
        )
        for rule in ("gradient", "deconvnet")
    }
    np.testing.assert_allclose(grads["deconvnet"][0], grads["deconvnet"][1], rtol=1e-4, atol=1e-7)
    scale = float(jnp.max(jnp.abs(grads["gradient"])))
    assert float(jnp.max(jnp.abs(grads["gradient"][0] - grads["gradient"][1]))) > 0.1 * scale
    assert float(jnp.max(jnp.abs(grads["gradient"] - grads["deconvnet"]))) > 0.1 * scale


class PlainReluMLP(nn.Module):
    """ReluMLP on jax.nn.relu: rectifiers the rules cannot reach."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jax.nn.relu(nn.Dense(16)(x.reshape(x.shape[0], -1)))
        return nn.Dense(4)(x)


def test_a_rule_that_reaches_no_rectifier_is_reported(getkey):
    images = jax.random.normal(getkey(), (2, 4, 4, 3))
    module = ReluMLP()
    params = module.init(getkey(), images)
    logits_fn = functools.partial(module.apply, train=False)
    jitted = jax.jit(logits_fn)
    hidden = lambda p, x: jitted(p, x)  # noqa: E731 - the jit is out of the library's sight
    hidden(params, images)  # traced once, under the gradient rule
    right = input_gradients(logits_fn, params, images, 1, rule="guided").gradients
    plain = input_gradients(logits_fn, params, images, 1, rule="gradient").gradients
    assert not np.array_equal(right, plain)  # the rule matters for this model and images
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuleNotAppliedWarning)
        # the rule is a key of JAX's caches: the hidden jit is traced again, under the rule
        np.testing.assert_array_equal(input_gradients(hidden, params, images, 1, rule="guided").gradients, right)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuleNotAppliedWarning)
        # its trace now cached under the rule: no rectifier is traced, but the cached jaxpr shows the rule's
        again = input_gradients(hidden, params, images, 1, rule="guided").gradients
    np.testing.assert_array_equal(again, right)
    other = PlainReluMLP()
    other_params = other.init(getkey(), images)
    with pytest.warns(RuleNotAppliedWarning):
        input_gradients(functools.partial(other.apply, train=False), other_params, images, 1, rule="deconvnet")


def test_a_rule_that_reaches_its_rectifiers_is_not_reported(getkey):
    import warnings

    images = jax.random.normal(getkey(), (2, 4, 4, 3))
    module = ReluMLP()
    params = module.init(getkey(), images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuleNotAppliedWarning)
        for rule in RULES:
            input_gradients(functools.partial(module.apply, train=False), params, images, 1, rule=rule)
            jax.jit(lambda p, x, r=rule: input_gradients(functools.partial(module.apply, train=False), p, x, 1,
                                                         rule=r).gradients)(params, images)


def test_a_cached_trace_of_another_rule_is_reported(getkey, monkeypatch):
    """Where the rule is no key of JAX's caches (a JAX without user contexts), a stale trace is caught."""
    from saliency_jax import backprop_rules

    images = jax.random.normal(getkey(), (2, 4, 4, 3))
    module = ReluMLP()
    params = module.init(getkey(), images)
    jitted = jax.jit(functools.partial(module.apply, train=False))
    hidden = lambda p, x: jitted(p, x)  # noqa: E731 - the jit is out of the library's sight
    plain = input_gradients(hidden, params, images, 1, rule="gradient").gradients  # cached under the gradient rule
    monkeypatch.setattr(backprop_rules, "_RULE_CACHE_KEY", lambda rule: contextlib.nullcontext())
    with pytest.warns(RuleNotAppliedWarning, match="rule='guided' reached no rectifier"):
        stale = input_gradients(hidden, params, images, 1, rule="guided").gradients
    np.testing.assert_array_equal(stale, plain)  # what the warning is about: the gradient, not the rule

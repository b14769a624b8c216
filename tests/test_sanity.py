"""Tests of the model-randomisation sanity check (Adebayo et al., 2018)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from saliency_jax.backprop_rules import RULES, RuleNotAppliedWarning, relu
from saliency_jax.evaluation.sanity import (
    RandomizationResult,
    cascade_order,
    cascading_randomization,
    randomize_layers,
    spearman_rank_correlation,
)
from saliency_jax.saliency import saliency_map


class BNNet(nn.Module):
    """conv - bn - relu - conv - relu - mean - dense; modules declared out of alphabetical order."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), name="stem")(x)
        x = relu(nn.BatchNorm(use_running_average=not train, name="norm")(x))
        x = relu(nn.Conv(8, (3, 3), name="body")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(4, name="head")(x)


@pytest.fixture(scope="module")
def bn_net():
    module = BNNet()
    variables = module.init(jax.random.key(5), jnp.zeros((1, 10, 10, 3)))
    # Sort the collections' keys, as a weights converter might: the order must not come from the dict.
    variables = {c: dict(sorted(v.items())) for c, v in variables.items()}
    variables["batch_stats"]["norm"]["mean"] = jnp.full((8,), 0.1)
    return functools.partial(module.apply, train=False), variables


@pytest.fixture
def images(getkey):
    return jax.random.normal(getkey(), (2, 10, 10, 3))


def test_cascade_order_follows_the_forward_pass_top_down(bn_net, images):
    logits_fn, variables = bn_net
    assert list(variables["params"]) == ["body", "head", "norm", "stem"]
    assert cascade_order(logits_fn, variables, images) == ("head", "body", "norm", "stem")


def test_cascade_order_of_a_plain_function_is_reverse_dict_order(linear_model):
    logits_fn, params = linear_model
    assert cascade_order(logits_fn, params, jnp.zeros((1, 6, 5, 3))) == ("b", "w")
    with pytest.raises(ValueError, match="params must be a non-empty dict"):
        cascade_order(logits_fn, [params["w"]], jnp.zeros((1, 6, 5, 3)))


def test_randomize_layers(bn_net, getkey):
    _, variables = bn_net
    key = getkey()
    out = randomize_layers(variables, ["head", "norm"], key=key)
    assert jax.tree.structure(out) == jax.tree.structure(variables)
    for (path, new), old in zip(jax.tree_util.tree_leaves_with_path(out), jax.tree.leaves(variables)):
        assert new.shape == old.shape and new.dtype == old.dtype
        name = jax.tree_util.keystr(path)
        changed = "'params']['head'" in name or "'params']['norm'" in name
        if not changed:
            np.testing.assert_array_equal(new, old, err_msg=name)  # batch_stats and other layers kept
        elif float(jnp.max(jnp.abs(old))) > 0:
            assert not np.allclose(new, old), name
    # Same scale: the all-ones batch-norm scale becomes N(0, 1); zero biases stay zero.
    np.testing.assert_array_equal(out["params"]["head"]["bias"], 0.0)
    assert 0.4 < float(jnp.std(out["params"]["norm"]["scale"])) < 1.8
    kernel = variables["params"]["head"]["kernel"]
    ratio = float(jnp.sqrt(jnp.mean(out["params"]["head"]["kernel"] ** 2) / jnp.mean(kernel**2)))
    assert 0.7 < ratio < 1.3
    # Keyed: the same key gives the same weights, and a layer keeps them as the cascade grows.
    again = randomize_layers(variables, ["head", "norm", "body"], key=key)
    np.testing.assert_array_equal(again["params"]["head"]["kernel"], out["params"]["head"]["kernel"])
    other = randomize_layers(variables, ["head"], key=getkey())
    assert not np.allclose(other["params"]["head"]["kernel"], out["params"]["head"]["kernel"])
    with pytest.raises(ValueError, match=r"layers: no layer named \['tail'\]"):
        randomize_layers(variables, ["tail"], key=key)


def test_spearman_rank_correlation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 5, 4))
    b = rng.normal(size=(3, 5, 4))
    got = spearman_rank_correlation(a, b)
    for i in range(3):
        assert got[i] == pytest.approx(stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic)
    np.testing.assert_allclose(spearman_rank_correlation(a, np.exp(a)), 1.0)  # ranks only
    np.testing.assert_allclose(spearman_rank_correlation(a, -a), -1.0)
    assert np.isnan(spearman_rank_correlation(a[:1], np.zeros((1, 5, 4))))[0]
    with pytest.raises(ValueError, match="same shape"):
        spearman_rank_correlation(a, b[:, :4])


def test_cascading_randomization_matches_its_definition(bn_net, images, getkey):
    logits_fn, variables = bn_net
    key = getkey()
    result = cascading_randomization(logits_fn, variables, images, key=key)
    assert isinstance(result, RandomizationResult)
    assert result.stages == ("head", "body", "norm", "stem")
    assert result.rules == RULES
    assert result.rank_correlation.shape == result.signed_rank_correlation.shape == (3, 4, 2)
    assert result.maps.shape == (3, 5, 2, 10, 10)
    classes = jnp.argmax(logits_fn(variables, images), axis=-1)
    np.testing.assert_array_equal(result.classes, classes)
    for r, rule in enumerate(RULES):
        original = saliency_map(logits_fn, variables, images, classes, rule=rule)
        np.testing.assert_allclose(result.maps[r, 0], original, rtol=1e-5, atol=1e-7)
        # Stage 1 randomises head and body together, with the same noise as everywhere else.
        random = randomize_layers(variables, ["head", "body"], key=key)
        stage1 = saliency_map(logits_fn, random, images, classes, rule=rule)
        np.testing.assert_allclose(result.maps[r, 2], stage1, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            result.rank_correlation[r, 1], spearman_rank_correlation(original, stage1), atol=1e-6
        )


def test_independent_and_grouped_stages(bn_net, images, getkey):
    logits_fn, variables = bn_net
    key = getkey()
    kwargs = dict(key=key, layers=["head", ("body", "norm")], rules=("gradient",), classes=jnp.array([1, 2]))
    cascade = cascading_randomization(logits_fn, variables, images, **kwargs)
    independent = cascading_randomization(logits_fn, variables, images, cascading=False, **kwargs)
    assert cascade.stages == ("head", "body+norm")
    np.testing.assert_array_equal(cascade.classes, [1, 2])
    np.testing.assert_allclose(cascade.maps[:, 1], independent.maps[:, 1])  # the first stage is the same
    random = randomize_layers(variables, ["body", "norm"], key=key)
    only_body_norm = saliency_map(logits_fn, random, images, jnp.array([1, 2]))
    np.testing.assert_allclose(independent.maps[0, 2], only_body_norm, rtol=1e-4, atol=1e-6)
    assert not np.allclose(cascade.maps[0, 2], independent.maps[0, 2])


def test_gradient_of_a_randomised_linear_model_decorrelates(linear_model, getkey):
    """The gradient of a linear model is its weight column, so after randomisation the map is
    unrelated to the original one."""
    logits_fn, params = linear_model
    images = jax.random.normal(getkey(), (3, 6, 5, 3))
    with pytest.warns(RuleNotAppliedWarning):  # no rectifiers: every rule is the gradient, and said so
        result = cascading_randomization(logits_fn, params, images, key=getkey(), layers=["w"])
    assert np.all(np.abs(result.signed_rank_correlation) < 0.35)
    assert np.all(np.abs(result.rank_correlation) < 0.35)


def test_clear_errors(bn_net, images, getkey):
    logits_fn, variables = bn_net
    with pytest.raises(ValueError, match="rules must be one of"):
        cascading_randomization(logits_fn, variables, images, key=getkey(), rules=("gradient", "lrp"))
    with pytest.raises(ValueError, match="layers must name at least one stage"):
        cascading_randomization(logits_fn, variables, images, key=getkey(), layers=[])
    with pytest.raises(ValueError, match="each stage must be a layer name"):
        cascading_randomization(logits_fn, variables, images, key=getkey(), layers=[("head", 3)])
    with pytest.raises(ValueError, match=r"classes must be in \[0, 4\)"):
        cascading_randomization(logits_fn, variables, images, jnp.array([0, 4]), key=getkey())
    with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\]"):
        cascading_randomization(logits_fn, variables, images[0], key=getkey())


# --- EfficientNet-Lite0 -------------------------------------------------------------------


@pytest.fixture(scope="module")
def efficientnet_xla():
    """EfficientNet-Lite0 with XLA's depthwise convolution: quicker to compile, which is the
    better trade for the few passes of this test."""
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    return load_efficientnet_lite0(depthwise_impl="xla")


@pytest.mark.slow
def test_efficientnet_gradient_decorrelates_deconvnet_and_guided_do_not(efficientnet_xla, getkey):
    """Adebayo et al.'s finding on EfficientNet-Lite0: once the classifier and the head are
    random, the gradient map no longer resembles the original, while the deconvnet and guided
    maps hardly change (they reconstruct the image rather than explain the class)."""
    from saliency_jax import io

    model = efficientnet_xla
    image = jnp.asarray(io.resize_image(io.bundled_photo("chelsea"), 224))[None]
    result = cascading_randomization(
        model.logits_fn, model.params, image, key=getkey(), layers=["fc", ("bn1", "conv_head"), "blocks_15"]
    )
    assert result.stages == ("fc", "bn1+conv_head", "blocks_15")
    gradient, deconvnet, guided = (RULES.index(r) for r in ("gradient", "deconvnet", "guided"))
    assert np.all(np.abs(result.signed_rank_correlation[gradient]) < 0.25)
    assert np.all(result.rank_correlation[gradient] < 0.6)
    assert np.all(result.rank_correlation[deconvnet] > 0.9)
    assert np.all(result.rank_correlation[guided] > 0.9)
    assert np.all(result.signed_rank_correlation[guided] > 0.9)


def test_sanity_experiment_table_and_figure(bn_net, images, getkey, tmp_path, experiment):
    # The fixture puts experiments/ on the path: the script imports its sibling ``arguments``.
    experiment = experiment("sanity_checks")
    logits_fn, variables = bn_net
    result = cascading_randomization(logits_fn, variables, images, key=getkey(), layers=["head", "body"])
    table = experiment.format_table(result, ("first", "second"))
    assert table.count("rule = ") == 3
    row = f"{result.rank_correlation[0, 1, 1]:>10.3f} /{result.signed_rank_correlation[0, 1, 1]:>6.3f}"
    assert any(line.startswith("body") and line.endswith(row) for line in table.splitlines())
    experiment.draw_maps(result, str(tmp_path))
    from PIL import Image

    drawn = np.asarray(Image.open(tmp_path / "maps.png").convert("L"), np.float32)
    assert min(drawn.shape) > 100 and drawn.std() > 10  # a picture, not a blank page

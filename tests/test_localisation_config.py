"""GraphCutConfig: the paper's defaults, frozen, validated with errors naming the field."""

import dataclasses

import pytest

from saliency_jax.localisation import GraphCutConfig


def test_defaults_are_the_papers_and_grabcuts():
    config = GraphCutConfig()
    assert (config.foreground_quantile, config.background_quantile) == (0.95, 0.30)
    assert config.num_components == 5
    assert config.pairwise_weight == 50.0
    assert config.neighbourhood == 8
    # The paper: seeds only estimate the colour models, one cut, no saliency term.
    assert config.hard_seeds == "none"
    assert config.iterations == 1
    assert config.saliency_weight == 0.0
    assert config.component == "largest"


def test_config_is_frozen_and_hashable():
    config = GraphCutConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pairwise_weight = 1.0
    assert hash(config) == hash(GraphCutConfig())
    assert dataclasses.replace(config, pairwise_weight=10.0).pairwise_weight == 10.0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(foreground_quantile=1.0), "foreground_quantile"),
        (dict(background_quantile=0.0), "background_quantile"),
        (dict(foreground_quantile=0.2), "background_quantile"),
        (dict(num_components=0), "num_components"),
        (dict(num_components=2.5), "num_components"),
        (dict(seed=-1), "seed"),
        (dict(max_gmm_samples=3), "max_gmm_samples"),
        (dict(gmm_max_iter=0), "gmm_max_iter"),
        (dict(gmm_reg_covar=0.0), "gmm_reg_covar"),
        (dict(pairwise_weight=-1.0), "pairwise_weight"),
        (dict(pairwise_weight=float("nan")), "pairwise_weight"),
        (dict(neighbourhood=6), "neighbourhood"),
        (dict(connectivity=3), "connectivity"),
        (dict(hard_seeds=True), "hard_seeds"),
        (dict(hard_seeds="background"), "hard_seeds"),
        (dict(iterations=0), "iterations"),
        (dict(saliency_weight=-1.0), "saliency_weight"),
        (dict(max_side=1), "max_side"),
        (dict(component="biggest"), "component"),
    ],
)
def test_bad_settings_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        GraphCutConfig(**kwargs)

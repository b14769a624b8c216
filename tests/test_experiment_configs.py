"""Every config under experiments/configs/ loads, and the training configs name a dataset and split."""

import dataclasses
import importlib.util
import os

import pytest

from saliency_jax.training import TrainConfig

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "configs")
NAMES = sorted(name for name in os.listdir(CONFIGS) if name.endswith(".py"))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"config_{name[:-3]}", os.path.join(CONFIGS, name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_there_are_configs():
    assert {"imagenet_paper.py", "reproduce_small.py", "bench_scaling.py"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_loads(name):
    config = _load(name)
    assert dataclasses.is_dataclass(config)
    train = config if isinstance(config, TrainConfig) else getattr(config, "train", None)
    if train is not None:
        assert isinstance(train, TrainConfig)
        assert train.dataset and train.train_split and train.eval_split
        assert train.global_batch_size > 0 and train.num_train_steps > 0

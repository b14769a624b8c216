"""Shared test set-up: several CPU devices and strict numerics, before JAX starts."""

import os

# Compiling is most of the suite's time: most tests run small programs once. Two XLA settings
# make it cheaper without changing what is computed (the tests compare paths compiled with the
# same settings): LLVM at -O1 instead of -O2 compiles such programs about a third faster, and
# XLA:CPU's older elemental code generator (instead of its fusion emitters) compiles each small
# program in about 60% of the time, the whole suite about a quarter faster. XLA's own optimisations
# (fusion, layouts) are unchanged. The speed of the compiled code is measured by the benchmarks
# under experiments/, with the default settings.
COMPILE_FLAGS = "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"
# Four CPU devices for the sharding tests.
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=4 {COMPILE_FLAGS}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# Many tests compile the same EfficientNet computations; a persistent cache lets a
# later test (or the next local run) reuse an executable instead of recompiling it.
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("SALIENCY_JAX_TEST_CACHE", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax_cache")),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


# The longest files first, in their measured order (a cold run on two cores, 2026-12), so that the
# two workers end together: each takes the next file when it is free, and the short files come last.
_LONGEST_FIRST = (
    "test_reproduce_small.py", "test_class_model.py", "test_eval_attribution.py", "test_saliency.py",
    "test_efficientnet_lite.py", "test_cli.py", "test_attribution_contract.py", "test_attribution_methods.py",
    "test_reconstruction.py", "test_evaluation_experiments.py", "test_sanity.py", "test_depthwise.py",
    "test_multiprocess.py", "test_paper_semantics.py", "test_backprop_rules.py", "test_attribution_reference.py",
    "test_hostile_attribution.py", "test_max_pool.py", "test_attribution_crops_embedded.py", "test_shard_map.py",
    "test_evaluation_faithfulness.py", "test_weights_fuzz.py", "test_cli_hostile.py", "test_training.py",
    "test_patch_conv.py", "test_training_audit.py", "test_attribution_semantics.py", "test_regularizers.py",
    "test_convnet.py", "test_evaluation_localisation_variants.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order


@pytest.fixture
def getkey():
    """Returns a function that hands out fresh PRNG keys, deterministically per test."""
    state = {"key": jax.random.key(0)}

    def _next():
        state["key"], sub = jax.random.split(state["key"])
        return sub

    return _next


EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")


@pytest.fixture
def experiment(monkeypatch):
    """Returns a function that imports ``experiments/<name>.py`` as the module ``name``."""
    import importlib.util
    import sys

    monkeypatch.syspath_prepend(EXPERIMENTS)  # the scripts import each other as siblings

    def _load(name):
        spec = importlib.util.spec_from_file_location(name, os.path.join(EXPERIMENTS, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module

    return _load


# --- Models shared by the test modules -------------------------------------------------

import functools  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from saliency_jax.backprop_rules import relu  # noqa: E402


def linear_logits_fn(params, images):
    """``logits = flatten(images) @ W + b``: the gradient of class c is exactly ``W[:, c]``."""
    flat = images.reshape(images.shape[0], -1)
    return flat @ params["w"] + params["b"][None, :]


@pytest.fixture
def linear_model():
    """(logits_fn, params) of a linear classifier on [B, 6, 5, 3] images with 4 classes."""
    rng = np.random.default_rng(0)
    params = {
        "w": jnp.asarray(rng.normal(size=(6 * 5 * 3, 4)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
    }
    return linear_logits_fn, params


class Pool(nn.Module):
    """Max-pooling as a named module, so the layer machinery can capture its output."""

    window: int
    stride: int

    @nn.compact
    def __call__(self, x):
        return nn.max_pool(x, (self.window, self.window), (self.stride, self.stride))


class TinyCNN(nn.Module):
    """conv1-relu-pool1-conv2-relu-mean-fc: small enough for finite differences, with named layers."""

    num_classes: int = 5

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = relu(nn.Conv(4, (3, 3), padding="SAME", name="conv1")(x))
        x = Pool(2, 2, name="pool1")(x)
        x = relu(nn.Conv(6, (3, 3), padding="SAME", name="conv2")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


@pytest.fixture(scope="session")
def tiny_cnn():
    """(logits_fn, params) of :class:`TinyCNN` on [B, 8, 8, 3] images."""
    module = TinyCNN()
    params = module.init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)))
    return functools.partial(module.apply, train=False), params


class SceneNet(nn.Module):
    """A small CNN on 224x224 images with ImageNet's 1000 classes and a named last feature map."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (8, 8), strides=(8, 8), name="conv1")(x / 255.0))
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), name="features")(x))
        return nn.Dense(1000, name="fc")(jnp.mean(x, axis=(1, 2)))


@pytest.fixture(scope="session")
def scene_net():
    """:class:`SceneNet` as a ``Classifier``: stands in for EfficientNet-Lite0 where the experiments load it."""
    from saliency_jax.types import Classifier

    module = SceneNet()
    params = module.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    return Classifier(module.apply, params, 224, tuple(str(k) for k in range(1000)), feature_layer="features")


@pytest.fixture(scope="session")
def efficientnet():
    """The embedded EfficientNet-Lite0 Classifier, loaded once."""
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0

    return load_efficientnet_lite0()


@pytest.fixture(scope="session")
def reference_outputs():
    """Inputs, logits and saliency maps frozen from the PyTorch reference implementation."""
    import os

    path = os.path.join(os.path.dirname(__file__), "data", "efficientnet_lite0_reference.npz")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}

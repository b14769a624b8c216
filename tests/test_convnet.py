"""The paper's ConvNet and its scaled variant."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import backprop_rules
from saliency_jax.models import convnet


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_paper_convnet_layer_shapes():
    """conv64-conv256-conv256-conv256-conv256-full4096-full4096-full1000 on 224 x 224 (shapes only)."""
    model = convnet.paper_convnet()
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    params = variables["params"]
    assert [params[f"conv{i}"]["kernel"].shape[-1] for i in range(1, 6)] == [64, 256, 256, 256, 256]
    assert params["conv1"]["kernel"].shape == (7, 7, 3, 64)
    assert params["conv2"]["kernel"].shape == (5, 5, 64, 256)
    assert params["full6"]["kernel"].shape == (6 * 6 * 256, 4096)  # AlexNet's last map
    assert params["full7"]["kernel"].shape == (4096, 4096)
    assert params["full8"]["kernel"].shape == (4096, 1000)
    expected = (7 * 7 * 3 * 64 + 64) + (5 * 5 * 64 * 256 + 256) + 3 * (9 * 256 * 256 + 256)
    expected += (9216 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert _count(params) == expected

    logits, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, mutable=["intermediates"]), {"params": params}, x
    )
    assert logits.shape == (2, 1000)
    shapes = {k: v[0].shape for k, v in state["intermediates"].items()}
    assert shapes["conv1_out"] == (2, 55, 55, 64)
    assert shapes["conv2_out"] == (2, 13, 13, 256)
    assert shapes["conv5_out"] == (2, 6, 6, 256)


@pytest.fixture(scope="module")
def small():
    model = convnet.scaled_convnet(5, width=0.0625, mid_convs=1, dense_features=16)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    return model, {"params": variables["params"]}


def test_scaled_convnet_contract(small, getkey):
    model, params = small
    logits_fn = functools.partial(model.apply, train=False)
    images = jax.random.uniform(getkey(), (3, 32, 32, 3), maxval=255.0)
    logits = logits_fn(params, images)
    assert logits.shape == (3, 5) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    np.testing.assert_allclose(jax.jit(logits_fn)(params, images), logits, rtol=1e-5, atol=1e-5)
    # Inference mode: examples are independent.
    per_example = jnp.concatenate([logits_fn(params, images[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(per_example, logits, rtol=1e-5, atol=1e-5)


def test_scaled_convnet_layout():
    model = convnet.scaled_convnet(7)
    assert model.conv_features == (16, 64, 64, 64, 64)
    assert model.kernel_sizes == (5, 3, 3, 3, 3) and model.strides == (2, 1, 1, 1, 1)
    assert model.pool_after == (True, True, False, False, True)
    assert model.dense_features == (256, 256)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert variables["params"]["full6"]["kernel"].shape == (3 * 3 * 64, 256)  # 64 -> 32 -> 15 -> 7 -> 3
    shallow = convnet.scaled_convnet(7, width=0.5, mid_convs=0)
    assert shallow.conv_features == (32, 128) and shallow.pool_after == (True, True)


def test_dropout_only_when_training(small, getkey):
    model, params = small
    images = jax.random.uniform(getkey(), (2, 32, 32, 3), maxval=255.0)
    apply = jax.jit(lambda key, train: model.apply(params, images, train=train, rngs={"dropout": key}),
                    static_argnums=1)
    assert not np.allclose(apply(jax.random.key(1), True), apply(jax.random.key(2), True))
    np.testing.assert_array_equal(apply(jax.random.key(1), False), apply(jax.random.key(2), False))


def test_takes_raw_pixels_and_subtracts_the_mean():
    model = convnet.scaled_convnet(3, width=0.0625, mid_convs=0, dense_features=8, pixel_mean=100.0, pixel_scale=2.0)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    # The mean pixel maps to a zero input, which gives the same logits as a zero-input model.
    zero_mean = model.clone(pixel_mean=0.0, pixel_scale=1.0)
    np.testing.assert_allclose(
        jax.jit(model.apply)(params, jnp.full((1, 16, 16, 3), 100.0)),
        jax.jit(zero_mean.apply)(params, jnp.zeros((1, 16, 16, 3))),
        rtol=1e-6,
    )


def test_rectifiers_follow_the_backprop_rule(small, getkey):
    """Every ReLU is the pluggable one of §4: deconvnet / guided change the input gradient."""
    model, params = small
    image = jax.random.uniform(getkey(), (1, 32, 32, 3), maxval=255.0)

    def input_gradient(rule):
        with backprop_rules.backprop_rule(rule):  # read when traced
            return jax.jit(jax.grad(lambda x: model.apply(params, x)[0, 0]))(image)

    plain, deconv, guided = (input_gradient(r) for r in ("gradient", "deconvnet", "guided"))
    autodiff = jax.jit(jax.grad(lambda x: model.apply(params, x)[0, 0]))(image)
    np.testing.assert_allclose(plain, autodiff, rtol=1e-5, atol=1e-7)
    assert not np.allclose(plain, deconv)
    assert not np.allclose(plain, guided)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel_sizes=(3, 3)), "kernel_sizes"),
        (dict(num_classes=0), "num_classes"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(pixel_scale=0.0), "pixel_scale"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnet.ConvNet(**kwargs)


def test_bad_inputs_raise(small):
    model, params = small
    with pytest.raises(ValueError, match="images"):
        model.apply(params, jnp.zeros((32, 32, 3)))
    with pytest.raises(ValueError, match="width"):
        convnet.scaled_convnet(3, width=0)
    with pytest.raises(ValueError, match="mid_convs"):
        convnet.scaled_convnet(3, mid_convs=-1)


# --- XLA's own convolutions on CPU (cpu_convolution_options) ------------------------------------


def _ynn_convolutions(compiled_text: str) -> int:
    """Convolutions that the compiled program hands to the YNNPACK library (its custom fusions)."""
    entry = compiled_text[compiled_text.index("\nENTRY"):]
    return sum("kind=kCustom" in line and "conv_general_dilated" in line for line in entry.splitlines())


def _plain_convolutions(compiled_text: str) -> int:
    entry = compiled_text[compiled_text.index("\nENTRY"):]
    return sum(" convolution(" in line for line in entry.splitlines())


def test_cpu_convolution_options_leave_the_convolutions_to_xla_with_the_same_gradients():
    options = convnet.cpu_convolution_options()
    assert options == {
        "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    }
    model = convnet.scaled_convnet(6, dropout_rate=0.1)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)), jnp.float32)
    params = model.init(jax.random.key(0), x)

    def loss(p, images):
        logits = model.apply(p, images, train=True, rngs={"dropout": jax.random.key(1)})
        return jnp.sum(logits * jnp.arange(6.0)[None, :])

    fn = jax.value_and_grad(loss, argnums=(0, 1))
    default = jax.jit(fn).lower(params, x).compile()
    moved = jax.jit(fn, compiler_options=options).lower(params, x).compile()
    # By default YNNPACK takes most of the convolutions; with the options none, and XLA computes
    # all 15: 5 forward, 5 input gradients (the image's too) and 5 kernel gradients.
    assert _ynn_convolutions(default.as_text()) > 0
    assert _ynn_convolutions(moved.as_text()) == 0
    assert _plain_convolutions(moved.as_text()) == 15
    (value_a, grads_a), (value_b, grads_b) = default(params, x), moved(params, x)
    np.testing.assert_allclose(value_b, value_a, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(a))))


def test_cpu_convolution_options_are_empty_off_the_cpu_when_refused_or_set_by_the_caller(monkeypatch):
    assert convnet.cpu_convolution_options()  # the test machine's CPU accepts them
    with monkeypatch.context() as m:
        m.setattr(jax, "default_backend", lambda: "gpu")
        assert convnet.cpu_convolution_options() == {}
    with monkeypatch.context() as m:
        m.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-individual_dot")
        assert convnet.cpu_convolution_options() == {}  # the caller's XLA_FLAGS decide
    with monkeypatch.context() as m:
        m.setattr(convnet, "_YNN_WITHOUT_CONVOLUTIONS", "LIBRARY_FUSION_TYPE_NO_SUCH_TYPE")
        assert convnet.cpu_convolution_options() == {}  # an XLA that refuses the value compiles as before


def test_benchmark_script_runs_and_checks_both_compilations(experiment, tmp_path):
    bench = experiment("bench_convolutions")
    (result,) = bench.main(["--models", "scaled", "--rounds", "1", "--batch", "2", "--json", str(tmp_path / "c.json")])
    assert result["options"] == convnet.cpu_convolution_options() != {}
    assert set(result["cases"]) == {"train", "map", "forward"}
    for row in result["cases"].values():
        assert row["default_ms"] > 0 and row["options_ms"] > 0
        assert row["ratio"] == pytest.approx(row["options_ms"] / row["default_ms"])  # one round
    assert (tmp_path / "c.json").exists()

"""Bad arguments to the models, the max pool, the data-parallel helpers and the CPU binding.

Each must fail at once with a ``ValueError`` that names the argument and what was expected,
never run on to a wrong result or to an error from deep inside JAX, Flax or numpy.
"""

from __future__ import annotations

import functools
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import cpu_threads, parallel
from saliency_jax.models import convnet
from saliency_jax.models.efficientnet_lite import EfficientNetLite, load_efficientnet_lite, load_efficientnet_lite0
from saliency_jax.models.max_pool import max_pool2d

NAN, INF = float("nan"), float("inf")


# --- sharded_map and the mesh helpers --------------------------------------------------------


def _scale(params, batch):
    return batch["x"] * params


@pytest.mark.parametrize(
    ("fn", "devices", "batch_size", "where"),
    [
        (lambda p, b: b["x"][:1] * p, 1, 2, "output;"),  # 3 rows came back for 6 inputs
        (lambda p, b: b["x"][:2] * p, 4, 4, "output;"),
        (lambda p, b: jnp.sum(b["x"]) * p, 4, 4, "output;"),  # a batch-level scalar
        (lambda p, b: jnp.mean(b["x"], keepdims=True), 1, 2, "output;"),
        (lambda p, b: {"rows": b["x"] * p, "total": jnp.sum(b["x"], keepdims=True)}, 2, 2, r"output\['total'\]"),
    ],
    ids=["first-row-only", "half-the-rows", "scalar", "batch-mean", "one-leaf-of-a-dict"],
)
def test_sharded_map_refuses_outputs_without_one_row_per_input_row(fn, devices, batch_size, where):
    mesh = parallel.data_mesh(jax.devices()[:devices])
    with pytest.raises(ValueError, match=rf"fn must return arrays with one row per input row .*{where}"):
        parallel.sharded_map(fn, 2.0, {"x": np.arange(6.0)}, batch_size=batch_size, mesh=mesh)


def test_sharded_map_checks_the_rows_without_tracing_fn_again():
    traces = []

    def fn(params, batch):
        traces.append(1)
        return batch["x"] * params

    mesh = parallel.data_mesh()
    for _ in range(2):  # the second call reuses the first one's trace
        out = parallel.sharded_map(fn, 2.0, {"x": np.arange(10.0)}, batch_size=4, mesh=mesh)
        np.testing.assert_array_equal(out, 2.0 * np.arange(10.0))
    assert len(traces) == 1


@pytest.mark.parametrize("batch_size", [4.0, "4", True, 0, -4, None])
def test_sharded_map_refuses_a_batch_size_that_is_not_a_positive_int(batch_size):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        parallel.sharded_map(_scale, 2.0, {"x": np.arange(5.0)}, batch_size=batch_size, mesh=parallel.data_mesh())


def test_sharded_map_takes_a_numpy_integer_batch_size():
    out = parallel.sharded_map(_scale, 2.0, {"x": np.arange(5.0)}, batch_size=np.int64(4), mesh=parallel.data_mesh())
    np.testing.assert_array_equal(out, 2.0 * np.arange(5.0))


def test_sharded_map_refuses_a_bad_fn_or_progress():
    mesh = parallel.data_mesh()
    with pytest.raises(ValueError, match="fn must be a function"):
        parallel.sharded_map("model", 2.0, {"x": np.arange(4.0)}, batch_size=4, mesh=mesh)
    with pytest.raises(ValueError, match="progress must be None or a wrapper"):
        parallel.sharded_map(_scale, 2.0, {"x": np.arange(4.0)}, batch_size=4, mesh=mesh, progress=5)


def test_sharded_map_refuses_64_bit_inputs_that_32_bits_would_change():
    """An int64 2**40 came back as 0, a uint64 2**32 + 2 as 2 and a float64 1e300 as inf."""
    mesh, identity = parallel.data_mesh(), lambda params, rows: rows
    for values, message in [(np.array([2**40, 1], np.int64), "int64 input holds values from 1 to 1099511627776"),
                            (np.array([2**32 + 2, 0], np.uint64), "past uint32's range"),
                            (np.array([1e300, 0.0]), "float64 input holds 1e+300, past float32's largest")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parallel.sharded_map(identity, None, {"x": values}, batch_size=4, mesh=mesh)
    # what 32 bits hold exactly (NaN and inf stay what they are) goes through unchanged
    values = np.array([-2**31, 2**31 - 1, 7], np.int64)
    np.testing.assert_array_equal(parallel.sharded_map(identity, None, values, batch_size=4, mesh=mesh), values)
    floats = np.array([np.inf, np.nan, -3e38, 0.5])
    np.testing.assert_array_equal(parallel.sharded_map(identity, None, floats, batch_size=4, mesh=mesh),
                                  floats.astype(np.float32))


def test_sharded_map_names_compiler_options_that_xla_refuses():
    with pytest.raises(ValueError, match="compiler_options: XLA refused them: .*nonexistent_flag"):
        parallel.sharded_map(_scale, 2.0, {"x": np.arange(4.0)}, batch_size=4, mesh=parallel.data_mesh(),
                             compiler_options={"nonexistent_flag": 1})


@pytest.mark.parametrize("mesh", [None, "list", "device"])
def test_shard_batch_and_sharded_map_want_a_mesh(mesh):
    mesh = {"list": jax.devices(), "device": jax.devices()[0]}.get(mesh)
    with pytest.raises(ValueError, match="mesh must be a jax.sharding.Mesh"):
        parallel.shard_batch(np.zeros((4, 2)), mesh)
    if mesh is not None:  # None is sharded_map's default (all devices)
        with pytest.raises(ValueError, match="mesh must be a jax.sharding.Mesh"):
            parallel.sharded_map(_scale, 2.0, {"x": np.arange(4.0)}, batch_size=4, mesh=mesh)


def test_shard_batch_refuses_leaves_that_are_not_numbers():
    with pytest.raises(ValueError, match="local_batch leaves must be arrays of numbers"):
        parallel.shard_batch(np.array([object()] * 4), parallel.data_mesh())


@pytest.mark.parametrize(
    ("devices", "axis_name", "match"),
    [
        ("one", "data", r"devices must be a sequence of jax.Device, got one device .*\[device\]"),
        (["cpu:0"], "data", "devices must be jax.Device objects"),
        ([0, 1], "data", "devices must be jax.Device objects"),
        ("twice", "data", "devices must not repeat a device"),
        (3, "data", "devices must be a sequence of jax.Device"),
        (None, 3, "axis_name must be a non-empty string"),
        (None, "", "axis_name must be a non-empty string"),
    ],
)
def test_data_mesh_refuses_bad_devices_and_axis_names(devices, axis_name, match):
    first = jax.devices()[0]
    devices = {"one": first, "twice": [first, first]}.get(devices, devices) if isinstance(devices, str) else devices
    with pytest.raises(ValueError, match=match):
        parallel.data_mesh(devices, axis_name)


def test_varying_axes_and_vary_like_name_a_leaf_that_is_not_an_array():
    with pytest.raises(ValueError, match="trees must be arrays .*str"):
        parallel.varying_axes("abc")
    mesh = parallel.data_mesh()
    spec = jax.sharding.PartitionSpec(parallel.DATA_AXIS)

    def per_shard(x):
        return parallel.vary_like({"label": "abc"}, x), x

    with pytest.raises(ValueError, match="x must be arrays .*str"):
        jax.shard_map(lambda x: per_shard(x)[1], mesh=mesh, in_specs=spec, out_specs=spec)(jnp.arange(4.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_processes="2", process_id=0), "num_processes must be an integer >= 1, got '2'"),
        (dict(num_processes=0, process_id=0), "num_processes must be an integer >= 1"),
        (dict(num_processes=2, process_id=1.0), "process_id must be an integer"),
        (dict(num_processes=np.int64(2), process_id=np.int64(2)), "process_id must be an integer >= 0 and <= 1"),
        (dict(num_processes=2, process_id=0, local_device_ids="01"), "local_device_ids must be a sequence of ints"),
    ],
)
def test_initialize_distributed_names_a_bad_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        parallel.initialize_distributed("localhost:1234", **kwargs)
    with pytest.raises(ValueError, match="coordinator_address must be"):
        parallel.initialize_distributed(1234, num_processes=2, process_id=0)


# --- bind_cpu_threads -------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread binding is Linux only")
def test_bind_cpu_threads_names_a_0d_array():
    before = {tid: os.sched_getaffinity(tid) for tid in cpu_threads.worker_threads()}
    with pytest.raises(ValueError, match=r"cpus must be a sequence of CPU numbers \(e.g. \[0\] for CPU 0\)"):
        cpu_threads.bind_cpu_threads(np.array(min(os.sched_getaffinity(os.getpid()))))
    assert {tid: os.sched_getaffinity(tid) for tid in before} == before


# --- max_pool2d -------------------------------------------------------------------------------


def test_max_pool_takes_numpy_integers_as_ints():
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
    expected = max_pool2d(x, 3, 2, ((1, 0), (0, 1)))
    got = max_pool2d(x, np.int64(3), np.int32(2), ((np.int64(1), 0), (0, np.int8(1))))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(max_pool2d(x, (np.int64(3), 3), (2, np.int64(2))), max_pool2d(x, 3, 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(window=3.0), "window must be one positive int or two; got 3.0"),
        (dict(window=None), "window must be one positive int or two"),
        (dict(window=2, strides=2.0), "strides must be one positive int or two; got 2.0"),
        (dict(window=2, padding=((1.0, 0), (0, 0))), "padding must be"),
        (dict(window=2, padding=3), "padding must be"),
    ],
)
def test_max_pool_refuses_floats_with_a_named_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        max_pool2d(jnp.zeros((1, 5, 5, 2)), **kwargs)


# --- ConvNet ----------------------------------------------------------------------------------

SMALL = dict(
    num_classes=3,
    conv_features=(4, 8),
    kernel_sizes=(3, 3),
    strides=(2, 1),
    pool_after=(True, True),
    dense_features=(8,),
)


def test_convnet_takes_numpy_integers_for_the_pool():
    images = jax.random.uniform(jax.random.key(1), (2, 20, 20, 3), maxval=255.0)
    plain = convnet.ConvNet(**SMALL)
    params = plain.init(jax.random.key(0), images)
    numpy_ints = convnet.ConvNet(**SMALL, pool_window=np.int64(3), pool_stride=np.int64(2))
    np.testing.assert_array_equal(numpy_ints.apply(params, images), plain.apply(params, images))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(pool_window=3.0), "pool_window must be an integer >= 1, got 3.0"),
        (dict(pool_window=0), "pool_window must be an integer >= 1"),
        (dict(pool_stride=np.float64(2.0)), "pool_stride must be an integer >= 1"),
        (dict(kernel_sizes=(3, 0)), r"kernel_sizes must be a sequence of integers >= 1 and <= 1048576, got \(3, 0\)"),
        (dict(strides=(2, 0)), "strides must be a sequence of integers >= 1 and <= 1048576"),
        (dict(conv_features=(4, 0)), "conv_features must be a sequence of integers >= 1 and <= 1048576"),
        (dict(dense_features=(0,)), "dense_features must be a sequence of integers >= 1 and <= 1048576"),
        (dict(dense_features=8), "dense_features must be a sequence of integers >= 1 and <= 1048576, got 8"),
        (dict(pool_after=("yes", True)), "pool_after must be a sequence of booleans"),
        (dict(num_classes=2.5), "num_classes must be an integer >= 1, got 2.5"),
        (dict(num_classes=True), "num_classes must be an integer >= 1, got True"),
        (dict(dropout_rate=NAN), "dropout_rate must be in"),
        (dict(pixel_scale=NAN), "pixel_scale must be a positive number, finite in float32"),
        (dict(pixel_scale=INF), "pixel_scale must be a positive number, finite in float32"),
        (dict(pixel_scale=1e300), "pixel_scale must be a positive number, finite in float32"),
        (dict(pixel_scale=-1.0), "pixel_scale must be a positive number"),
        (dict(pixel_mean=NAN), "pixel_mean must be a number, finite in float32"),
        (dict(pixel_mean=-INF), "pixel_mean must be a number, finite in float32"),
        (dict(activation=None), "activation must be a function"),
        (dict(pool_impl=None), "pool_impl must be one of"),
        (dict(conv_features=(4, 2**21)), "conv_features must be a sequence of integers >= 1 and <= 1048576"),
    ],
)
def test_convnet_refuses_a_bad_setting_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnet.ConvNet(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(width=NAN), "width must be a finite number > 0, got nan"),
        (dict(width=INF), "width must be a finite number > 0, got inf"),
        (dict(width=True), "width must be a finite number > 0"),
        (dict(mid_convs=2.5), "mid_convs must be an integer >= 0, got 2.5"),
        (dict(dense_features=2.5), "dense_features must be an integer >= 1, got 2.5"),
        (dict(pixel_scale=NAN), "pixel_scale must be a positive number"),
    ],
)
def test_scaled_convnet_refuses_a_bad_setting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convnet.scaled_convnet(3, **kwargs)


@pytest.fixture(scope="module")
def small_64():
    """A small scaled ConvNet and its parameters, made for 64 x 64 images."""
    model = convnet.scaled_convnet(3, width=0.0625, mid_convs=1, dense_features=8)
    params = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    return model, params


def test_images_of_another_size_than_the_parameters_are_named(small_64):
    model, params = small_64
    with pytest.raises(ValueError, match=r"images of 32 x 32 do not fit these parameters: .* full\d") as info:
        jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    low, high = map(int, re.search(r"from (\d+) x \1 to (\d+) x \2 fit", str(info.value)).groups())
    assert low <= 64 <= high
    for side in (low, high):  # the sizes the message offers do fit ...
        shape = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((2, side, side, 3), jnp.float32)).shape
        assert shape == (2, 3)
    for side in (low - 1, high + 1):  # ... and are all of them
        with pytest.raises(ValueError, match="images of"):
            jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32))


def test_images_with_other_channels_than_the_parameters_are_named(small_64):
    model, params = small_64
    with pytest.raises(ValueError, match=r"images must have 3 channels \(NHWC\) for these parameters"):
        jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32))


# --- EfficientNet-Lite ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(stem_impl="bogus"), r"stem_impl must be one of \('auto', 'patches', 'xla'\); got 'bogus'"),
        (dict(stem_impl="shifted"), "stem_impl must be one of"),
        (dict(stem_impl=None), "stem_impl must be one of"),
        (dict(depthwise_impl="patches"), r"depthwise_impl must be one of \('auto', 'shifted', 'xla'\); got 'patches'"),
        (dict(weights_path=123), "weights_path must be a file path"),
    ],
)
def test_efficientnet_loader_names_a_bad_option_before_loading(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_efficientnet_lite0(**kwargs)
    with pytest.raises(ValueError, match=match):
        load_efficientnet_lite("lite1", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(variant="lite9"), "variant must be one of"),
        (dict(num_classes=2.5), "num_classes must be an integer >= 1"),
        (dict(dropout_rate=1.0), r"dropout_rate must be None or in \[0, 1\)"),
        (dict(depthwise_impl="strided"), "depthwise_impl must be one of"),
        (dict(stem_impl="shifted"), "stem_impl must be one of"),
    ],
)
def test_efficientnet_module_refuses_a_bad_setting_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EfficientNetLite(**kwargs)


def test_efficientnet_module_takes_its_documented_options():
    for depthwise_impl, stem_impl in [("auto", "auto"), ("shifted", "patches"), ("xla", "xla")]:
        module = EfficientNetLite("lite0", num_classes=np.int64(10), depthwise_impl=depthwise_impl, stem_impl=stem_impl)
        shapes = jax.eval_shape(
            functools.partial(module.init, train=False),
            jax.random.key(0),
            jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32),
        )
        assert shapes["params"]["fc"]["kernel"].shape == (1280, 10)


def test_a_rewritten_or_removed_checkpoint_is_read_again_not_served_from_memory(tmp_path):
    """The loaded variables were cached by path alone: a changed, damaged or deleted file still loaded."""
    import shutil

    from saliency_jax.models.efficientnet_lite import default_weights_path, load_efficientnet_lite0

    path = tmp_path / "lite0.pth"
    shutil.copyfile(default_weights_path(), path)
    first = load_efficientnet_lite0(path)
    assert load_efficientnet_lite0(path).params is first.params  # the same file: read once
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError):
        load_efficientnet_lite0(path)
    path.unlink()
    with pytest.raises((ValueError, FileNotFoundError)):
        load_efficientnet_lite0(path)

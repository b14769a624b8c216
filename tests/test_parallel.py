"""Data-parallel helpers over the 4 forced CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import parallel


def test_mesh_spans_every_device():
    mesh = parallel.data_mesh()
    assert mesh.size == len(jax.devices()) == 4
    assert mesh.axis_names == (parallel.DATA_AXIS,)
    two = parallel.data_mesh(jax.devices()[:2])
    assert two.size == 2
    with pytest.raises(ValueError, match="devices"):
        parallel.data_mesh([])


def test_shard_batch_splits_rows_and_local_rows_gathers_them():
    mesh = parallel.data_mesh()
    x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    sharded = parallel.shard_batch({"x": x}, mesh)["x"]
    assert sharded.shape == (8, 3)
    assert len(sharded.addressable_shards) == 4
    assert all(s.data.shape == (2, 3) for s in sharded.addressable_shards)
    np.testing.assert_array_equal(parallel.local_rows(sharded), x)
    replicated = parallel.replicate(jnp.ones(3), mesh)
    assert all(s.data.shape == (3,) for s in replicated.addressable_shards)
    with pytest.raises(ValueError, match="divisible"):
        parallel.shard_batch(np.zeros((6, 2)), mesh)


def _affine(params, batch):
    return {"y": batch["x"] @ params["w"] + params["b"][None, :], "norm": jnp.sum(batch["x"] ** 2, axis=1)}


@pytest.mark.parametrize("num_devices", [1, 2, 4])
def test_sharded_map_equals_direct_application(num_devices, getkey):
    mesh = parallel.data_mesh(jax.devices()[:num_devices])
    params = {"w": jax.random.normal(getkey(), (3, 2)), "b": jnp.array([1.0, -1.0])}
    x = np.asarray(jax.random.normal(getkey(), (10, 3)))  # 10 rows: the last batch is padded
    out = parallel.sharded_map(_affine, params, {"x": x}, batch_size=4, mesh=mesh)
    assert out["y"].shape == (10, 2) and out["norm"].shape == (10,)
    np.testing.assert_allclose(out["y"], x @ np.asarray(params["w"]) + np.asarray(params["b"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["norm"], (x**2).sum(1), rtol=1e-5)


def test_sharded_map_bad_arguments():
    mesh = parallel.data_mesh()
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    with pytest.raises(ValueError, match="batch_size"):
        parallel.sharded_map(_affine, params, {"x": np.ones((5, 3))}, batch_size=6, mesh=mesh)
    with pytest.raises(ValueError, match="leading axis"):
        parallel.sharded_map(_affine, params, {"x": np.ones((5, 3)), "z": np.ones((4,))}, batch_size=4, mesh=mesh)
    with pytest.raises(ValueError, match="at least one"):
        parallel.sharded_map(_affine, params, {}, batch_size=4, mesh=mesh)


def test_sharded_map_never_pads_past_the_data_and_checks_its_progress_wrapper():
    mesh = parallel.data_mesh()
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    x = np.arange(18, dtype=np.float32).reshape(6, 3)
    seen = []

    def rows(params, batch):
        seen.append(batch["x"].shape[0])  # traced once per batch shape
        return _affine(params, batch)

    # 2**22 rows per call once meant 4 GB of padding for 6 rows; now the batch is 6 rounded up to 8.
    out = parallel.sharded_map(rows, params, {"x": x}, batch_size=2**22, mesh=mesh)
    np.testing.assert_allclose(out["y"], x @ np.ones((3, 2)))
    assert set(seen) == {8}
    for wrapper, message in [(lambda steps: list(steps)[:1], "every batch index, got 1 of 2"),
                             (lambda steps: reversed(list(steps)), "expected 0, got 1"),
                             (lambda steps: [*steps, 2], "expected no more, got 2")]:
        with pytest.raises(ValueError, match=f"progress must yield .*{message}"):
            parallel.sharded_map(_affine, params, {"x": x}, batch_size=4, mesh=mesh, progress=wrapper)


def test_sharded_map_compiles_fn_with_the_compiler_options_given():
    mesh = parallel.data_mesh()
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    x = np.arange(15.0).reshape(5, 3)
    options = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
    out = parallel.sharded_map(_affine, params, {"x": x}, batch_size=4, mesh=mesh, compiler_options=options)
    np.testing.assert_allclose(out["y"], x @ np.ones((3, 2)), rtol=1e-6)
    # The options reach XLA: one it refuses fails the compilation, naming the option.
    with pytest.raises(Exception, match="xla_cpu_experimental_ynn_fusion_type"):
        parallel.sharded_map(_affine, params, {"x": x}, batch_size=4, mesh=mesh,
                             compiler_options={"xla_cpu_experimental_ynn_fusion_type": "NOT_A_FUSION_TYPE"})
    for bad in (["xla_cpu_enable_fast_math"], {1: "true"}, "fast"):
        with pytest.raises(ValueError, match="compiler_options must be None or a mapping"):
            parallel.sharded_map(_affine, params, {"x": x}, batch_size=4, mesh=mesh, compiler_options=bad)


def test_initialize_distributed_is_a_no_op_on_one_host():
    assert parallel.initialize_distributed() is False
    with pytest.raises(ValueError, match="together"):
        parallel.initialize_distributed(coordinator_address="localhost:1234")
    with pytest.raises(ValueError, match="process_id"):
        parallel.initialize_distributed("localhost:1234", num_processes=2, process_id=2)

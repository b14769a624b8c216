"""Data parallelism with ``jax.sharding``: one mesh axis over every device, every host.

The model's parameters are replicated, a batch is split along its first axis.
One jitted function then runs on all devices at once and XLA inserts the
cross-device reductions (e.g. the mean of a loss over the global batch), so a
sharded step computes the same numbers as a single-device step on the whole
batch.

On several hosts, call :func:`initialize_distributed` first; each process then
feeds only its own rows of the global batch (:func:`shard_batch`) and gets its
own rows of the outputs back (:func:`local_rows`).

Every function of the library also runs inside ``jax.shard_map``: where one
starts a value of its own (a zero offset to differentiate, the first carry of a
loop), :func:`vary_like` gives it the varying mesh axes of the data it meets, so a
replicated value is never summed over the shards by mistake.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def varying_axes(*trees: Any) -> frozenset[str]:
    """The ``shard_map`` mesh axes that any array (or ``jax.eval_shape`` result) in ``trees`` varies over.

    Empty outside ``shard_map``.
    """
    axes: set[str] = set()
    for leaf in jax.tree.leaves(trees):
        aval = leaf if isinstance(leaf, jax.ShapeDtypeStruct) else jax.typeof(leaf)
        manual = getattr(aval, "manual_axis_type", None)
        axes.update(manual.varying if manual is not None else getattr(aval, "vma", ()))
    return frozenset(axes)


def vary_like(x: Any, *trees: Any) -> Any:
    """``x`` (an array or a pytree) cast to vary over every ``shard_map`` axis that an array in ``trees`` varies over.

    Inside ``shard_map`` an array made inside the function (``jnp.zeros``) is
    replicated: the gradient with respect to it is summed over the shards, and a
    loop carry started from it has another type than one updated from sharded
    data. Cast to the data's varying axes, it behaves as a per-shard value.
    Outside ``shard_map`` (or when nothing varies) ``x`` is returned as it is.
    """
    axes = varying_axes(*trees)

    def cast(leaf):
        missing = axes - varying_axes(leaf)
        return jax.lax.pcast(leaf, tuple(sorted(missing)), to="varying") if missing else leaf

    return jax.tree.map(cast, x) if axes else x


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Iterable[int] | None = None,
    *,
    auto: bool = False,
) -> bool:
    """Starts multi-host JAX (``jax.distributed.initialize``) when asked to.

    With no arguments and ``auto=False`` this does nothing, so single-host runs
    need no cluster. On a TPU pod slice or under SLURM pass ``auto=True`` and JAX
    discovers the cluster itself; elsewhere pass the coordinator's address, the
    number of processes and this process's id. Must run before any other JAX call
    that touches devices. Calling it again is harmless.

    Args:
      coordinator_address: ``"host:port"`` of process 0.
      num_processes: number of processes (hosts).
      process_id: this process, ``0 <= process_id < num_processes``.
      local_device_ids: the devices this process drives (default: all local).
      auto: let JAX detect the cluster (TPU, SLURM, ...).

    Returns:
      Whether JAX runs distributed now.
    """
    if jax.distributed.is_initialized():
        return True
    explicit = (coordinator_address, num_processes, process_id)
    if not auto and all(arg is None for arg in explicit):
        return False
    if not auto and any(arg is None for arg in explicit):
        raise ValueError(
            "coordinator_address, num_processes and process_id must be given together "
            f"(or pass auto=True), got {coordinator_address!r}, {num_processes!r}, {process_id!r}"
        )
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    # Cross-process collectives between CPU devices: gloo (JAX's default only in recent releases).
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=None if local_device_ids is None else list(local_device_ids),
    )
    return True


def data_mesh(devices: Iterable[jax.Device] | None = None, axis_name: str = DATA_AXIS) -> Mesh:
    """A one-axis mesh for data parallelism.

    Args:
      devices: the devices, in order (default: ``jax.devices()``, every device of
        every host).
      axis_name: the mesh axis the batch is split along.

    Returns:
      A :class:`jax.sharding.Mesh` of shape ``[num_devices]``.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must not be empty")
    return Mesh(np.asarray(devices), (axis_name,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (batch) axis over the mesh's first axis, replicates the rest."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` on every device of ``mesh``."""
    return jax.device_put(tree, replicated_sharding(mesh))


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Turns this process's rows into global arrays split over the mesh.

    Args:
      local_batch: a pytree of arrays ``[b, ...]``, this process's ``b`` rows of
        the global batch (all rows on one host). Every process passes the same
        ``b``.
      mesh: from :func:`data_mesh`.

    Returns:
      The pytree of global ``jax.Array`` ``[b * num_processes, ...]`` laid out
      with :func:`batch_sharding`.
    """
    sharding = batch_sharding(mesh)
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def put(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % local_devices:
            raise ValueError(
                f"local_batch leaves need a leading axis divisible by the {local_devices} local devices "
                f"of the mesh, got shape {x.shape}"
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, local_batch)


def local_rows(x: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded global array, as numpy, in order."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    rows, seen = [], set()
    for shard in shards:
        start = shard.index[0].start or 0
        if start not in seen:  # replicas of a row block sit on several devices
            seen.add(start)
            rows.append(np.asarray(shard.data))
    return np.concatenate(rows)


def sharded_map(
    fn: Callable[[Any, Any], Any],
    params: Any,
    inputs: Any,
    *,
    batch_size: int,
    mesh: Mesh | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Any:
    """Runs a per-batch function data-parallel over a whole dataset.

    ``fn(params, batch) -> outputs`` is jitted once (pass the same function
    object across calls to reuse the compilation) with ``params`` replicated and
    each batch split over the mesh. The last batch is padded by repeating the
    last row, and the padding is dropped from the result. Batches are dispatched
    one ahead of the copy back to the host, so transfer overlaps compute.

    Examples must be independent under ``fn`` (row ``i`` of the output depends
    only on row ``i`` of the batch), as for a model in inference mode.

    Args:
      fn: ``(params, batch) -> outputs``; ``batch`` is a pytree of ``[B, ...]``
        arrays, ``outputs`` a pytree of ``[B, ...]`` arrays.
      params: any pytree (weights), replicated on every device.
      inputs: a pytree of numpy arrays ``[N, ...]`` (this process's rows; on
        several hosts every process passes the same ``N``, else ``ValueError``).
      batch_size: rows per call on this process; a multiple of the number of
        local devices in ``mesh``.
      mesh: from :func:`data_mesh` (default: all devices).
      progress: optional wrapper of the batch-index iterable, e.g. ``tqdm.tqdm``.

    Returns:
      ``outputs`` for all ``N`` rows: a pytree of numpy arrays ``[N, ...]``.
    """
    mesh = data_mesh() if mesh is None else mesh
    leaves = jax.tree.leaves(inputs)
    if not leaves:
        raise ValueError("inputs must hold at least one array")
    n = np.shape(leaves[0])[0] if np.ndim(leaves[0]) else 0
    if n == 0 or any(np.ndim(x) == 0 or np.shape(x)[0] != n for x in leaves):
        raise ValueError(
            f"inputs must be arrays sharing a non-empty leading axis, got shapes {[np.shape(x) for x in leaves]}"
        )
    if jax.process_count() > 1:  # every process must make the same calls, or the collectives hang
        from jax.experimental import multihost_utils

        counts = np.asarray(multihost_utils.process_allgather(np.int64(n))).reshape(-1)
        if np.any(counts != counts[0]):
            raise ValueError(
                f"every process must pass the same number of input rows, got {counts.tolist()} "
                "(by process index); pad the shorter shares and drop the extra outputs"
            )
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    if batch_size < 1 or batch_size % local_devices:
        raise ValueError(
            f"batch_size must be a positive multiple of the {local_devices} local devices, got {batch_size}"
        )
    jitted = jax.jit(fn, out_shardings=batch_sharding(mesh))
    params = replicate(params, mesh)
    num_batches = math.ceil(n / batch_size)

    def batch(i):
        rows = np.minimum(np.arange(i * batch_size, (i + 1) * batch_size), n - 1)
        return shard_batch(jax.tree.map(lambda x: np.asarray(x)[rows], inputs), mesh)

    steps = range(num_batches) if progress is None else progress(range(num_batches))
    outputs, pending = [], None
    for i in steps:
        current = jitted(params, batch(i))
        if pending is not None:
            outputs.append(jax.tree.map(local_rows, pending))
        pending = current
    outputs.append(jax.tree.map(local_rows, pending))
    return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outputs)

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from saliency_jax._checks import check_int

DATA_AXIS = "data"


def _leaf_type(leaf: Any, name: str) -> Any:
    """The abstract value of an array or ``jax.ShapeDtypeStruct``; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    try:
        return jax.typeof(leaf)
    except TypeError:
        raise ValueError(
            f"{name} must be arrays (or pytrees of arrays), got a leaf of type {type(leaf).__name__}: {leaf!r:.80}"
        ) from None


def _axes_of(leaves: Iterable[Any], name: str) -> set[str]:
    axes: set[str] = set()
    for leaf in leaves:
        aval = _leaf_type(leaf, name)
        manual = getattr(aval, "manual_axis_type", None)
        axes.update(manual.varying if manual is not None else getattr(aval, "vma", ()))
    return axes


def _check_mesh(mesh: Any, name: str = "mesh") -> Mesh:
    if not isinstance(mesh, Mesh):
        raise ValueError(
            f"{name} must be a jax.sharding.Mesh (e.g. from data_mesh(devices)), got {type(mesh).__name__}"
        )
    return mesh


def varying_axes(*trees: Any) -> frozenset[str]:
    """The ``shard_map`` mesh axes that any array (or ``jax.eval_shape`` result) in ``trees`` varies over.

    Empty outside ``shard_map``.

    Raises:
      ValueError: a leaf of ``trees`` is not an array (e.g. a string).
    """
    return frozenset(_axes_of(jax.tree.leaves(trees), "trees"))


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
        missing = axes - _axes_of([leaf], "x")
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

    Raises:
      ValueError: the explicit arguments are not all given (without ``auto``), or one of
        them has the wrong type or is out of range.
    """
    if not isinstance(auto, (bool, np.bool_)):
        raise ValueError(f"auto must be True or False, got {auto!r}")
    if coordinator_address is not None and (not isinstance(coordinator_address, str) or not coordinator_address):
        raise ValueError(f'coordinator_address must be a "host:port" string, got {coordinator_address!r}')
    if num_processes is not None:
        num_processes = check_int(num_processes, "num_processes", 1)
    if process_id is not None:
        process_id = check_int(process_id, "process_id", 0, None if num_processes is None else num_processes - 1)
    if local_device_ids is not None:
        if isinstance(local_device_ids, (str, bytes)) or not isinstance(local_device_ids, Iterable):
            raise ValueError(f"local_device_ids must be a sequence of ints, got {type(local_device_ids).__name__}")
        local_device_ids = [check_int(i, "local_device_ids entries", 0) for i in local_device_ids]
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
    # Cross-process collectives between CPU devices: gloo (JAX's default only in recent releases).
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
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

    Raises:
      ValueError: ``devices`` is not a non-empty sequence of distinct ``jax.Device``, or
        ``axis_name`` is not a non-empty string.
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise ValueError(f"axis_name must be a non-empty string, got {axis_name!r}")
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, jax.Device):
        raise ValueError(f"devices must be a sequence of jax.Device, got one device {devices} (write [device])")
    elif isinstance(devices, (str, bytes)) or not isinstance(devices, Iterable):
        raise ValueError(f"devices must be a sequence of jax.Device, got {type(devices).__name__}")
    devices = list(devices)
    if not devices:
        raise ValueError("devices must not be empty")
    others = [d for d in devices if not isinstance(d, jax.Device)]
    if others:
        raise ValueError(f"devices must be jax.Device objects (e.g. from jax.devices()), got {others[0]!r}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"devices must not repeat a device, got {devices}")
    return Mesh(np.asarray(devices), (axis_name,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (batch) axis over the mesh's first axis, replicates the rest."""
    mesh = _check_mesh(mesh)
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(_check_mesh(mesh), PartitionSpec())


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

    Raises:
      ValueError: ``mesh`` is not a ``Mesh``, or a leaf's leading axis is not divisible
        by the mesh's local devices.
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
        if not (jax.numpy.issubdtype(x.dtype, jax.numpy.number) or x.dtype == np.bool_):
            raise ValueError(f"local_batch leaves must be arrays of numbers or booleans, got dtype {x.dtype}")
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
    compiler_options: Mapping[str, Any] | None = None,
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
        local devices in ``mesh``. A batch larger than ``N`` is cut to ``N`` rounded
        up to that multiple.
      mesh: from :func:`data_mesh` (default: all devices).
      progress: optional wrapper of the batch-index iterable, e.g. ``tqdm.tqdm``.
      compiler_options: XLA options for ``fn``'s compilation (``jax.jit``'s
        ``compiler_options``), e.g. :func:`saliency_jax.models.cpu_convolution_options`.

    Returns:
      ``outputs`` for all ``N`` rows: a pytree of numpy arrays ``[N, ...]``.

    Raises:
      ValueError: a bad argument, or ``fn`` returns an output whose leading axis is not the
        batch's (e.g. one row per batch): its outputs could not be put back in input order.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a function (params, batch) -> outputs, got {type(fn).__name__}")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be None or a wrapper of an iterable (e.g. tqdm.tqdm), got {progress!r}")
    if compiler_options is not None and not (
        isinstance(compiler_options, Mapping) and all(isinstance(k, str) for k in compiler_options)
    ):
        raise ValueError(
            f"compiler_options must be None or a mapping of option names to values, got {compiler_options!r}"
        )
    mesh = data_mesh() if mesh is None else _check_mesh(mesh)
    batch_size = check_int(batch_size, "batch_size", 1)
    leaves = jax.tree.leaves(inputs)
    if not leaves:
        raise ValueError("inputs must hold at least one array")
    n = np.shape(leaves[0])[0] if np.ndim(leaves[0]) else 0
    if n == 0 or any(np.ndim(x) == 0 or np.shape(x)[0] != n for x in leaves):
        raise ValueError(
            f"inputs must be arrays sharing a non-empty leading axis, got shapes {[np.shape(x) for x in leaves]}"
        )
    if not jax.config.jax_enable_x64:
        for leaf in leaves:
            _check_fits_32_bits(np.asarray(leaf))
    if jax.process_count() > 1:  # every process must make the same calls, or the collectives hang
        from jax.experimental import multihost_utils

        counts = np.asarray(multihost_utils.process_allgather(np.int64(n))).reshape(-1)
        if np.any(counts != counts[0]):
            raise ValueError(
                f"every process must pass the same number of input rows, got {counts.tolist()} "
                "(by process index); pad the shorter shares and drop the extra outputs"
            )
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    if batch_size % local_devices:
        raise ValueError(
            f"batch_size must be a positive multiple of the {local_devices} local devices, got {batch_size}"
        )
    # A batch larger than the data would only compute padding: at most N rows, rounded up to the devices.
    batch_size = min(batch_size, math.ceil(n / local_devices) * local_devices)
    jitted = jax.jit(fn, out_shardings=batch_sharding(mesh), compiler_options=dict(compiler_options or {}))
    params = replicate(params, mesh)
    num_batches = math.ceil(n / batch_size)

    def batch(i):
        rows = np.minimum(np.arange(i * batch_size, (i + 1) * batch_size), n - 1)
        return shard_batch(jax.tree.map(lambda x: np.asarray(x)[rows], inputs), mesh)

    first = batch(0)
    # The outputs are put back in order by their rows, so each must have one row per input row.
    # Checked on shapes alone: jit reuses this trace of ``fn``, so the check costs nothing.
    _check_rows(jax.eval_shape(fn, params, first), jax.tree.leaves(first)[0].shape[0])
    steps = range(num_batches) if progress is None else progress(range(num_batches))
    outputs, pending, expected = [], None, 0
    for i in steps:
        if i != expected or expected >= num_batches:
            raise ValueError(f"progress must yield the batch indices it is given ({num_batches}), in order: "
                             f"expected {'no more' if expected >= num_batches else expected}, got {i!r}")
        expected += 1
        try:
            current = jitted(params, first if i == 0 else batch(i))
        except jax.errors.JaxRuntimeError as e:
            if i == 0 and compiler_options and "compile option" in str(e):
                raise ValueError(f"compiler_options: XLA refused them: {e}") from None
            raise
        first = None  # not kept alive through the loop
        if pending is not None:
            outputs.append(jax.tree.map(local_rows, pending))
        pending = current
    if expected != num_batches:
        raise ValueError(f"progress must yield every batch index, got {expected} of {num_batches}")
    outputs.append(jax.tree.map(local_rows, pending))
    return jax.tree.map(lambda *parts: np.concatenate(parts)[:n], *outputs)


def _check_fits_32_bits(values: np.ndarray) -> None:
    """``ValueError`` unless a 64-bit input survives JAX's cast to 32 bits (``jax_enable_x64`` off).

    JAX would turn an int64 2**40 into 0 and a float64 1e300 into inf with at most a warning.
    """
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8 and values.size:
        narrow = np.int32 if values.dtype.kind == "i" else np.uint32
        low, high = values.min(), values.max()
        if low < np.iinfo(narrow).min or high > np.iinfo(narrow).max:
            raise ValueError(f"inputs must fit JAX's 32-bit types (jax_enable_x64 is off): a {values.dtype} input "
                             f"holds values from {low} to {high}, past {np.dtype(narrow).name}'s range")
    elif values.dtype == np.float64 and values.size:
        finite = values[np.isfinite(values)]
        if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
            raise ValueError(f"inputs must fit JAX's 32-bit types (jax_enable_x64 is off): a float64 input holds "
                             f"{np.abs(finite).max():g}, past float32's largest value (it would become inf)")


def _check_rows(out_shapes: Any, rows: int) -> None:
    """``ValueError`` unless every output of ``fn`` (a ``jax.eval_shape`` result) has ``rows`` rows."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(out_shapes)[0]:
        shape = tuple(getattr(leaf, "shape", ()))
        if not shape or shape[0] != rows:
            raise ValueError(
                f"fn must return arrays with one row per input row ([{rows}, ...] for a batch of {rows}), "
                f"got shape {shape} for output{jax.tree_util.keystr(path)}; a batch-level value "
                "(a sum, a mean) cannot be split back into rows"
            )

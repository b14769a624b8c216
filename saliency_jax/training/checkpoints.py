"""Orbax checkpoints of a :class:`~saliency_jax.training.steps.TrainState`.

Orbax writes each checkpoint to a temporary directory and renames it when
complete, so an interrupted save never leaves a half-written checkpoint that a
resume would pick up. Restoring takes the abstract state (shapes, dtypes and
shardings), so arrays come back already laid out on the current mesh; a state
that does not fit the checkpoint (another model or number of classes) is
refused with a ``ValueError`` naming the arrays that differ.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def checkpoint_manager(directory: str | os.PathLike, *, max_to_keep: int = 3) -> ocp.CheckpointManager:
    """A manager for step-numbered checkpoints under ``directory`` (created if needed).

    Args:
      directory: where ``<step>/`` checkpoint folders go (an absolute path or one
        relative to the working directory).
      max_to_keep: older checkpoints beyond this many are deleted.

    Returns:
      An ``orbax.checkpoint.CheckpointManager``; close it when done.
    """
    if max_to_keep < 1:
        raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(
        os.path.abspath(os.fspath(directory)), options=options, item_handlers=ocp.StandardCheckpointHandler()
    )


def save(manager: ocp.CheckpointManager, state: Any) -> None:
    """Saves ``state`` (a pytree with an integer ``step`` field) under its step, asynchronously."""
    manager.save(int(jax.device_get(state.step)), args=ocp.args.StandardSave(state), force=True)


def latest_step(manager: ocp.CheckpointManager) -> int | None:
    """The newest complete checkpoint's step, or ``None``."""
    return manager.latest_step()


def restore(manager: ocp.CheckpointManager, like: Any, step: int | None = None) -> Any:
    """Restores a checkpoint into the structure, dtypes and shardings of ``like``.

    Args:
      manager: from :func:`checkpoint_manager`.
      like: a state (or ``jax.ShapeDtypeStruct`` tree) of the same structure, whose
        shardings the restored arrays take.
      step: which checkpoint (default: the latest).

    Returns:
      The restored state, same pytree type as ``like``.

    Raises:
      ValueError: no checkpoint (or not ``step``), or ``like`` does not fit it.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise ValueError(f"no checkpoint to restore in {manager.directory}")
    if step not in manager.all_steps():
        raise ValueError(f"step must be one of the checkpoints in {manager.directory}, {manager.all_steps()}, "
                         f"got {step}")
    _check_fits(manager, step, like)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"like must have the structure, shapes and dtypes of the checkpoint at step {step} in "
            f"{manager.directory}, but they differ (another model, number of classes or optimizer?): {error}"
        ) from error


def _path_key(path) -> tuple:
    """A tree path as plain names and indices (orbax stores named tuples as dicts, tuples as lists)."""
    out = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                out.append(getattr(entry, attr))
                break
        else:
            out.append(str(entry))
    return tuple(out)


def _leaf_types(tree) -> dict[tuple, tuple]:
    """Path -> (shape, dtype) of every leaf; ``None`` where a leaf does not say."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
        out[_path_key(path)] = (None if shape is None else tuple(shape), None if dtype is None else np.dtype(dtype))
    return out


def _differ(a, b) -> bool:
    return a is not None and b is not None and a != b


def _check_fits(manager: ocp.CheckpointManager, step: int, like: Any) -> None:
    """``ValueError`` naming the arrays where ``like`` and the stored checkpoint differ.

    Checked from the checkpoint's metadata before restoring, so a mismatch is
    reported by name instead of failing half-way through the read. Metadata
    that cannot be read (another orbax layout) skips the check.
    """
    try:
        stored = _leaf_types(manager.item_metadata(step))
    except Exception:  # noqa: BLE001  (the restore itself still checks)
        return
    if not stored:
        return
    wanted = _leaf_types(like)
    problems = []
    for key in sorted(set(stored) | set(wanted), key=lambda k: (k[:1] != ("params",), str(k))):
        name = ".".join(map(str, key))
        if key not in wanted:
            problems.append(f"{name} is in the checkpoint only")
        elif key not in stored:
            problems.append(f"{name} is missing from the checkpoint")
        elif _differ(stored[key][0], wanted[key][0]) or _differ(stored[key][1], wanted[key][1]):
            (s_shape, s_dtype), (w_shape, w_dtype) = stored[key], wanted[key]
            problems.append(f"{name} has shape {s_shape} {s_dtype} in the checkpoint, {w_shape} {w_dtype} here")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(
            f"like must have the structure, shapes and dtypes of the checkpoint at step {step} in "
            f"{manager.directory} (another model, number of classes or optimizer?), but "
            f"{'; '.join(problems[:3])}{more}"
        )

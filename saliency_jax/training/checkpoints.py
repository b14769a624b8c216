"""Orbax checkpoints of a :class:`~saliency_jax.training.steps.TrainState`.

Orbax writes each checkpoint to a temporary directory and renames it when
complete, so an interrupted save never leaves a half-written checkpoint that a
resume would pick up. Restoring takes the abstract state (shapes, dtypes and
shardings), so arrays come back already laid out on the current mesh.
"""

from __future__ import annotations

import os
from typing import Any

import jax
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
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


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
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise ValueError(f"no checkpoint to restore in {manager.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))

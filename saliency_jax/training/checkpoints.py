"""Orbax checkpoints of a :class:`~saliency_jax.training.steps.TrainState`.

Orbax writes each checkpoint to a temporary directory and renames it when
complete, so an interrupted save never leaves a half-written checkpoint that a
resume would pick up. Restoring takes the abstract state (shapes, dtypes and
shardings), so arrays come back already laid out on the current mesh; a state
that does not fit the checkpoint (another model or number of classes) is
refused with a ``ValueError`` naming the arrays that differ, and a checkpoint
whose files are missing or damaged with one naming its folder.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import os
import sys
import time
import traceback
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from saliency_jax._checks import check_int
from saliency_jax.training._paths import check_folder

# The one item of a checkpoint written through a manager with a single item handler.
_ITEM = ocp.checkpoint_manager.DEFAULT_ITEM_NAME


def checkpoint_manager(directory: str | os.PathLike, *, max_to_keep: int = 3) -> ocp.CheckpointManager:
    """A manager for step-numbered checkpoints under ``directory`` (created if needed).

    Args:
      directory: where ``<step>/`` checkpoint folders go (an absolute path or one
        relative to the working directory).
      max_to_keep: older checkpoints beyond this many are deleted.

    Returns:
      An ``orbax.checkpoint.CheckpointManager``; close it when done.
    """
    # Checked here: orbax accepts a file and fails at the first save, in a background thread.
    directory = check_folder(directory, "directory")
    max_to_keep = check_int(max_to_keep, "max_to_keep", 1)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(directory, options=options, item_handlers=ocp.StandardCheckpointHandler())


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
      ValueError: no checkpoint (or not ``step``); a checkpoint that is
        incomplete or damaged (:func:`check_readable`); ``like`` does not fit it.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise ValueError(f"no checkpoint to restore in {manager.directory}")
    if step not in manager.all_steps():
        raise ValueError(f"step must be one of the checkpoints in {manager.directory}, {manager.all_steps()}, "
                         f"got {step}")
    _check_fits(check_readable(manager, step), step, manager, like)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        with _quiet_orphaned_reads():
            return manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as error:  # noqa: BLE001  (like fits the metadata: the data itself is bad)
        raise _unreadable(manager, step, f"its arrays cannot be read ({_brief(error)}), though like fits its "
                                         f"metadata", likely=True) from error


def check_readable(manager: ocp.CheckpointManager, step: int) -> Any:
    """The metadata of checkpoint ``step``, or ``ValueError`` naming its folder if it is incomplete or damaged.

    Only the metadata is read; :func:`restore` reports damaged array data.
    """
    folder = _step_folder(manager, step)
    if not os.path.isdir(folder) or not os.listdir(folder):
        raise _unreadable(manager, step, "it is empty (a copy or save that did not finish?)")
    if not os.path.isdir(os.path.join(folder, _ITEM)):
        raise _unreadable(manager, step, f"its folder {_ITEM!r} is missing")
    try:
        with _quiet_orphaned_reads():
            metadata = manager.item_metadata(step)
    except Exception as error:  # noqa: BLE001  (orbax raises many kinds for damaged files)
        raise _unreadable(manager, step, f"its metadata cannot be read ({_brief(error)})") from error
    if metadata is None or not _leaf_types(metadata):
        raise _unreadable(manager, step, "its metadata cannot be read (is its _METADATA file missing?)")
    return metadata


def _step_folder(manager: ocp.CheckpointManager, step: int) -> str:
    return os.path.join(os.fspath(manager.directory), str(step))  # checkpoint_manager's step names


def _brief(error: BaseException) -> str:
    """The first line of an error, cut short (tensorstore's come with a page of spec; the cause keeps it)."""
    text = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def _unreadable(manager: ocp.CheckpointManager, step: int, why: str, likely: bool = False) -> ValueError:
    """The error for a damaged checkpoint; ``likely``: the files are only presumed to be at fault."""
    folder = _step_folder(manager, step)
    earlier = [s for s in manager.all_steps() if s < step]
    then = f"to resume from checkpoint {max(earlier)}" if earlier else "to start afresh"
    verdict = ("it is likely corrupt: if so, remove that folder" if likely
               else "it is incomplete or corrupt: remove that folder")
    return ValueError(f"the checkpoint of step {step} at {folder} is unreadable: {why}; {verdict} {then}")


_ORBAX = os.path.dirname(ocp.__file__)


class _OrphanedReads(logging.Filter):
    """Drops asyncio's reports of futures that a failed orbax read abandoned."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "exception was never retrieved" not in message and "Task was destroyed" not in message


@contextlib.contextmanager
def _quiet_orphaned_reads(settle_s: float = 0.2, most_s: float = 2.0):
    """Keeps the reports of the reads that a failed orbax read orphans from flooding the error.

    Orbax runs the reads of a checkpoint on an event loop that it closes as soon
    as one read fails. The reads still in flight are abandoned: each tensorstore
    read then reports that it cannot call back into the closed loop, and each of
    their coroutines and futures, when collected, that its error was never
    retrieved: dozens of tracebacks after the one that matters. After a failure,
    these reports are dropped until none has come for ``settle_s`` (at most
    ``most_s``), and the abandoned reads are collected meanwhile; other reports
    pass through.
    """
    previous, last = sys.unraisablehook, [time.monotonic()]

    def hook(unraisable):
        error, source = unraisable.exc_value, unraisable.object
        closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
        orbax_coroutine = inspect.iscoroutine(source) and source.cr_code.co_filename.startswith(_ORBAX)
        if closed_loop or orbax_coroutine:
            last[0] = time.monotonic()
        else:
            previous(unraisable)

    quiet, asyncio_log = _OrphanedReads(), logging.getLogger("asyncio")
    sys.unraisablehook = hook
    asyncio_log.addFilter(quiet)
    try:
        yield
    except BaseException as error:
        end = time.monotonic() + most_s
        last[0] = time.monotonic()
        while time.monotonic() < min(end, last[0] + settle_s):
            time.sleep(0.01)
        # The frames of the failed read hold the abandoned ones: release them (the
        # traceback itself is kept) and collect them while their reports are dropped.
        cause, seen = error, set()
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            traceback.clear_frames(cause.__traceback__)
            cause = cause.__cause__ or cause.__context__
        gc.collect()
        raise
    finally:
        asyncio_log.removeFilter(quiet)
        if sys.unraisablehook is hook:  # unless someone replaced it meanwhile
            sys.unraisablehook = previous


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


def _check_fits(metadata: Any, step: int, manager: ocp.CheckpointManager, like: Any) -> None:
    """``ValueError`` naming the arrays where ``like`` and the checkpoint's ``metadata`` differ.

    Checked before restoring, so a mismatch is reported by name instead of
    failing half-way through the read.
    """
    stored = _leaf_types(metadata)
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

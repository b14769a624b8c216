"""Binding XLA's CPU worker threads to CPUs, like OpenMP's ``OMP_PROC_BIND``.

XLA runs its CPU kernels on a pool of worker threads (one per CPU the process may
use). Left to the Linux scheduler, two workers that slept for a while (a pause
of 0.2 s or more between calls) can wake on the same CPU and share it until the
load balancer moves one: on a 2-CPU virtual machine the first call after a pause
then took 20-25 ms longer (a batch-1 class map took 90 ms instead of 67) with
about 100 involuntary context switches. Bound one per CPU, the workers cannot
pile up, and a call after a pause costs what a call back to back does.

Binding is opt-in (:func:`bind_cpu_threads`) because it changes the whole
process: a bound thread cannot move away from a CPU that something else keeps
busy. :func:`unbind_cpu_threads` lets the workers run anywhere again, and
:func:`bound_cpu_threads` does both around a block. Linux only; the main thread
and threads started later (other pools) are not touched.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
from collections.abc import Iterable, Iterator

import jax

# The name XLA gives its CPU worker threads (``/proc/<pid>/task/<tid>/comm``).
WORKER_NAME = "XLAEigen"


def _check_linux() -> None:
    if not (sys.platform.startswith("linux") and hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")):
        raise RuntimeError(f"binding CPU threads needs Linux (sched_setaffinity and /proc), this is {sys.platform!r}")


def worker_threads() -> list[int]:
    """The thread ids of XLA's CPU worker threads in this process, sorted.

    Creates the CPU backend first (``jax.devices("cpu")``), which starts the pool.
    """
    _check_linux()
    jax.devices("cpu")
    tids = []
    for entry in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{entry}/comm") as f:
                name = f.read().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        if WORKER_NAME in name:
            tids.append(int(entry))
    return sorted(tids)


def _check_cpus(cpus: Iterable[int] | None) -> list[int]:
    allowed = sorted(os.sched_getaffinity(os.getpid()))
    if cpus is None:
        return allowed
    scalar = getattr(cpus, "ndim", None) == 0  # a 0-d array is Iterable by type, not by value
    if isinstance(cpus, (str, bytes)) or not isinstance(cpus, Iterable) or scalar:
        raise ValueError(
            f"cpus must be a sequence of CPU numbers (e.g. [0] for CPU 0), got {type(cpus).__name__}: {cpus!r}"
        )
    chosen = list(cpus)
    bad = [c for c in chosen if isinstance(c, bool) or not isinstance(c, numbers.Integral)]
    if bad or not chosen:
        raise ValueError(f"cpus must be a non-empty sequence of ints, got {chosen!r}")
    chosen = [int(c) for c in chosen]  # numpy integers too
    outside = sorted(set(chosen) - set(allowed))
    if outside:
        raise ValueError(f"cpus must be CPUs this process may use ({allowed}), got {outside} outside them")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"cpus must not repeat a CPU, got {chosen!r}")
    return chosen


def bind_cpu_threads(cpus: Iterable[int] | None = None) -> dict[int, int]:
    """Binds each of XLA's CPU worker threads to one CPU, round robin over ``cpus``.

    Args:
      cpus: the CPUs to use, each at most once (default: every CPU this process
        may use, the main thread's ``os.sched_getaffinity``). With fewer CPUs than workers, the
        workers share them in turn.

    Returns:
      ``{thread id: cpu}`` for every worker bound.

    Raises:
      RuntimeError: not on Linux, or no XLA worker thread was found.
      ValueError: ``cpus`` is not a sequence of ints (a bare int or a 0-d array is not: write
        ``[cpu]``), is empty, repeats a CPU or names one the process may not use.
    """
    _check_linux()
    chosen = _check_cpus(cpus)
    tids = worker_threads()
    if not tids:
        raise RuntimeError(f"found no XLA CPU worker thread (no thread named *{WORKER_NAME}*) in this process")
    bound = {}
    for i, tid in enumerate(tids):
        cpu = chosen[i % len(chosen)]
        os.sched_setaffinity(tid, {cpu})
        bound[tid] = cpu
    return bound


def unbind_cpu_threads() -> list[int]:
    """Lets every XLA CPU worker thread run on any CPU this process may use again.

    Returns:
      The thread ids released.
    """
    _check_linux()
    allowed = os.sched_getaffinity(os.getpid())
    tids = worker_threads()
    for tid in tids:
        os.sched_setaffinity(tid, allowed)
    return tids


@contextlib.contextmanager
def bound_cpu_threads(cpus: Iterable[int] | None = None) -> Iterator[dict[int, int]]:
    """:func:`bind_cpu_threads` for the length of a ``with`` block; restores each worker's CPUs after."""
    _check_linux()
    before = {tid: os.sched_getaffinity(tid) for tid in worker_threads()}
    try:
        yield bind_cpu_threads(cpus)
    finally:
        for tid, mask in before.items():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, mask)

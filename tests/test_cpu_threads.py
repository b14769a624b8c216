"""Binding XLA's CPU worker threads: one CPU each, spread, restored, and refused clearly."""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import cpu_threads

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread binding is Linux only")


def _masks(tids):
    return {tid: os.sched_getaffinity(tid) for tid in tids}


@pytest.fixture
def restore():
    """Puts every worker's CPUs back as they were, whatever the test did."""
    tids = cpu_threads.worker_threads()
    before = _masks(tids)
    yield before
    for tid, mask in before.items():
        os.sched_setaffinity(tid, mask)


@linux
def test_finds_xla_worker_threads():
    tids = cpu_threads.worker_threads()
    assert tids, "the CPU backend has worker threads"
    for tid in tids:
        with open(f"/proc/self/task/{tid}/comm") as f:
            assert cpu_threads.WORKER_NAME in f.read()
    assert os.getpid() not in tids  # the main thread is not one of them


@linux
def test_binds_each_worker_to_one_cpu_spread_over_the_cpus(restore):
    allowed = sorted(os.sched_getaffinity(os.getpid()))
    bound = cpu_threads.bind_cpu_threads()
    assert sorted(bound) == cpu_threads.worker_threads()
    for tid, cpu in bound.items():
        assert os.sched_getaffinity(tid) == {cpu}
    used = [bound[tid] for tid in sorted(bound)]
    # round robin: as many distinct CPUs as there are workers, up to the CPUs allowed
    assert len(set(used)) == min(len(bound), len(allowed))
    assert used == [allowed[i % len(allowed)] for i in range(len(used))]
    assert os.sched_getaffinity(os.getpid()) == set(allowed)  # the main thread is left alone


@linux
def test_explicit_cpus_and_unbinding(restore):
    allowed = sorted(os.sched_getaffinity(os.getpid()))
    bound = cpu_threads.bind_cpu_threads(np.array([allowed[-1]]))  # numpy integers are CPU numbers too
    assert set(bound.values()) == {allowed[-1]}
    assert all(type(cpu) is int for cpu in bound.values())
    assert all(os.sched_getaffinity(tid) == {allowed[-1]} for tid in bound)
    released = cpu_threads.unbind_cpu_threads()
    assert sorted(released) == sorted(bound)
    assert all(os.sched_getaffinity(tid) == set(allowed) for tid in released)


@linux
def test_the_context_manager_restores_each_workers_cpus(restore):
    allowed = sorted(os.sched_getaffinity(os.getpid()))
    tids = cpu_threads.worker_threads()
    os.sched_setaffinity(tids[0], {allowed[0]})  # a mask of the caller's own
    before = _masks(tids)
    with cpu_threads.bound_cpu_threads([allowed[-1]]) as bound:
        assert all(os.sched_getaffinity(tid) == {allowed[-1]} for tid in bound)
    assert _masks(tids) == before


@linux
def test_bound_workers_compute_the_same(restore):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(256, 256)), jnp.float32)
    f = jax.jit(lambda a: jnp.tanh(a @ a.T).sum(axis=0))
    free = np.asarray(f(x))
    with cpu_threads.bound_cpu_threads():
        np.testing.assert_array_equal(np.asarray(f(x)), free)


@linux
@pytest.mark.parametrize(
    ("cpus", "message"),
    [
        ([], "non-empty"),
        ([0.0], "ints"),
        ([True], "ints"),
        ("0", "sequence of CPU numbers"),
        (3, "sequence of CPU numbers"),
        ([10**6], "outside them"),
    ],
)
def test_bad_cpus_are_refused_before_anything_is_bound(restore, cpus, message):
    with pytest.raises(ValueError, match=f"cpus .*{message}"):
        cpu_threads.bind_cpu_threads(cpus)
    assert _masks(restore) == restore


@linux
def test_a_repeated_cpu_is_refused(restore):
    cpu = min(os.sched_getaffinity(os.getpid()))
    with pytest.raises(ValueError, match="cpus must not repeat"):
        cpu_threads.bind_cpu_threads([cpu, cpu])


def test_other_systems_are_told_it_needs_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    for fn in (cpu_threads.bind_cpu_threads, cpu_threads.unbind_cpu_threads, cpu_threads.worker_threads):
        with pytest.raises(RuntimeError, match="needs Linux"):
            fn()


@linux
def test_no_worker_threads_is_an_error_not_a_silent_no_op(monkeypatch):
    monkeypatch.setattr(cpu_threads, "WORKER_NAME", "no-such-thread-name")
    with pytest.raises(RuntimeError, match="no XLA CPU worker thread"):
        cpu_threads.bind_cpu_threads()

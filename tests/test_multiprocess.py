"""Multi-host data parallelism for real: two OS processes joined by ``jax.distributed``.

Each worker process (``tests/multiprocess_worker.py``, a fresh interpreter) forces
2 host CPU devices, so the two processes form one 4-device global mesh with
cross-process collectives (gloo). Their results are checked against the same
computation in this (pytest) process, which has 4 local devices (see conftest).

Starting a cluster costs seconds (imports, compilation, barriers), so one launch
serves both tests: the saliency maps, a straight training run, and a run stopped
part-way; a second launch of fresh processes resumes the stopped run.
"""

import functools
import importlib.util
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import COMPILE_FLAGS

from saliency_jax.training import build_model, create_train_state, make_optimizer, read_metrics, train_and_evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_PATH = os.path.join(HERE, "multiprocess_worker.py")
_spec = importlib.util.spec_from_file_location("multiprocess_worker", WORKER_PATH)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
TIMEOUT_S = 240  # per launch, for all its processes together; a healthy one takes ~10-30 s


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _tail(path, chars=4000) -> str:
    with open(path, errors="replace") as f:
        text = f.read()
    return text if len(text) <= chars else "...\n" + text[-chars:]


def _launch(args, tmp_path, name):
    """Runs ``multiprocess_worker.py ARGS`` as 2 processes x 2 devices; returns their npz outputs.

    Returns ``{file stem without the process id: [process 0's npz, process 1's npz]}``.
    Fails the test, with each process's output, if one exits non-zero or the
    launch runs past ``TIMEOUT_S`` (then every process is killed).
    """
    out = tmp_path / f"{name}_out"
    out.mkdir()
    coordinator = f"localhost:{_free_port()}"
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS} {COMPILE_FLAGS}",
        JAX_PLATFORMS="cpu",
    )
    cache_dir = jax.config.jax_compilation_cache_dir  # the suite's cache (see conftest); only process 0 writes
    if cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(jax.config.jax_persistent_cache_min_compile_time_secs)
    procs, logs = [], []
    try:
        for pid in range(NUM_PROCESSES):
            cmd = [sys.executable, WORKER_PATH, *args, "--coordinator", coordinator,
                   "--num-processes", str(NUM_PROCESSES), "--process-id", str(pid), "--out", str(out)]
            log_path = tmp_path / f"{name}_{pid}.log"
            with open(log_path, "w") as log:
                procs.append(subprocess.Popen(cmd, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                              stdout=log, stderr=subprocess.STDOUT))
            logs.append(log_path)
        deadline = time.monotonic() + TIMEOUT_S
        problem = None
        while problem is None and None in [p.poll() for p in procs]:  # a list: poll every process
            if any(p.returncode not in (None, 0) for p in procs):
                problem = "a process failed (its peers were killed)"
            elif time.monotonic() > deadline:
                problem = f"timed out after {TIMEOUT_S} s (every process was killed)"
            else:
                time.sleep(0.2)
        if problem is None and any(p.returncode != 0 for p in procs):
            problem = "a process failed"
    finally:
        for p in procs:  # only our own children, by handle
            if p.poll() is None:
                p.kill()
                p.wait()
    if problem is not None:
        report = [f"{name}: {problem}"]
        for pid, (p, log_path) in enumerate(zip(procs, logs)):
            report.append(f"--- process {pid}, exit code {p.returncode}: {' '.join(p.args)}\n{_tail(log_path)}")
        pytest.fail("\n".join(report), pytrace=False)

    results = {}
    for pid in range(NUM_PROCESSES):
        for path in sorted(out.glob(f"*_{pid}.npz")):
            with np.load(path) as data:
                results.setdefault(path.name[: -len(f"_{pid}.npz")], []).append(dict(data))
    assert all(len(v) == NUM_PROCESSES for v in results.values()), sorted(os.listdir(out))
    for outputs in results.values():
        for o in outputs:  # one global mesh over both processes' devices
            assert int(o["num_devices"]) == NUM_PROCESSES * DEVICES_PER_PROCESS
            assert int(o["num_local_devices"]) == DEVICES_PER_PROCESS
    return results


@pytest.fixture(scope="module")
def first_launch(tmp_path_factory):
    """Saliency maps, then a straight 6-step run, then one stopped after step 3, on 2 x 2 devices."""
    tmp_path = tmp_path_factory.mktemp("multiprocess")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    results = _launch(["--saliency", "--run", str(straight), "--run", f"{resumed}@3"], tmp_path, "first")
    return tmp_path, results


def test_sharded_saliency_map_over_two_processes_equals_one_process(first_launch):
    _, results = first_launch
    per_process = results["saliency"]
    assert all(int(o["mesh_size"]) == 4 for o in per_process)

    logits_fn, params, images = worker.saliency_problem()
    expected = np.asarray(jax.jit(worker.saliency_fn(logits_fn))(params, images))
    assert expected.shape == (len(images), 32, 32) and expected.max() > 0

    # Each process got back exactly its own half of the images' maps.
    half = len(images) // NUM_PROCESSES
    for pid, o in enumerate(per_process):
        assert o["maps"].shape == (half, 32, 32)
        np.testing.assert_allclose(o["maps"], expected[pid * half:(pid + 1) * half], rtol=1e-5,
                                   atol=1e-6 * expected.max())
    assert not np.allclose(per_process[0]["maps"], per_process[1]["maps"])
    # Shares of 6 and 5 rows: both processes raise, naming the counts, instead of hanging.
    for o in per_process:
        assert "same number of input rows, got [6, 5]" in str(o["unequal_error"])


def _states(output):
    return {k: v for k, v in output.items() if k.startswith("state/")}


def test_two_process_training_checkpoints_resumes_and_equals_one_process(first_launch):
    """6 steps on 2 processes x 2 devices: straight, and stopped after step 3 then resumed
    by fresh processes (from the step-2 checkpoint both processes wrote to one workdir)."""
    tmp_path, first = first_launch
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    assert [int(o["stopped_at"]) for o in first["train1"]] == [3, 3]
    assert sorted(os.listdir(resumed_dir / "checkpoints")) == ["2"]
    second = _launch(["--run", str(resumed_dir)], tmp_path, "second")

    straight, resumed = first["train0"], second["train0"]
    assert [int(o["resumed_from"]) for o in straight] == [-1, -1]
    assert [int(o["resumed_from"]) for o in resumed] == [2, 2]
    for o in straight + resumed:  # every process holds the whole (replicated) state
        assert set(_states(o)) == set(_states(straight[0]))
        for key, value in _states(o).items():
            np.testing.assert_array_equal(value, straight[0][key], err_msg=key)
        np.testing.assert_array_equal(o["eval"], straight[0]["eval"])
    assert int(straight[0]["state/.step"]) == 6

    # The same run in one process on 4 devices: same numbers up to float rounding
    # (the cross-device sums run in another order).
    single = train_and_evaluate(worker.train_config(), tmp_path / "single", sources=worker.toy_sources(),
                                progress=False)
    expected = worker.flat_state(single.state)
    assert set(expected) == {k[len("state/"):] for k in _states(straight[0])}
    config = worker.train_config()
    init = jax.jit(functools.partial(create_train_state, build_model(config, worker.NUM_CLASSES),
                                     make_optimizer(config), image_shape=(32, 32, 3)))
    initial = worker.flat_state(init(jax.random.fold_in(jax.random.key(config.seed), 0)))
    moved = max(float(np.abs(expected[k] - initial[k]).max()) for k in expected if k.startswith(".params"))
    assert moved > 1e-3  # the run did train, far past the tolerance below
    for key, value in expected.items():
        np.testing.assert_allclose(straight[0]["state/" + key], value, rtol=1e-5, atol=1e-5 * np.abs(value).max(),
                                   err_msg=key)
    np.testing.assert_allclose(straight[0]["eval"], [single.eval.loss, single.eval.accuracy,
                                                     single.eval.num_examples], rtol=1e-5)

    # Both workdirs look like a one-process run's: process 0 alone wrote the log.
    def training_lines(path):
        return [(r["step"], r["train_loss"]) for r in read_metrics(path) if "train_loss" in r]

    for workdir in (straight_dir, resumed_dir):
        assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6"]
        assert [s for s, _ in training_lines(workdir / "metrics.jsonl")] == [2, 4, 6]
        assert sum(1 for r in read_metrics(workdir / "metrics.jsonl") if r.get("final")) == 1
    assert training_lines(resumed_dir / "metrics.jsonl") == training_lines(straight_dir / "metrics.jsonl")
    np.testing.assert_allclose([loss for _, loss in training_lines(straight_dir / "metrics.jsonl")],
                               [loss for _, loss in training_lines(tmp_path / "single" / "metrics.jsonl")], rtol=1e-5)

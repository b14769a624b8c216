"""Loads checkpoint files for the fuzz tests, each in a child process of its own.

Usage: ``python weights_fuzz_worker.py WEIGHTS_PY TIMEOUT_S HEADROOM_BYTES < paths.json``

The reader module is loaded from its file, so neither JAX nor the rest of the
package is imported. For each path a forked child sets an address-space limit
(its current size plus ``HEADROOM_BYTES``) and a timer (``TIMEOUT_S``; the default
action of SIGALRM ends it), loads the file and writes one JSON object back; the
parent notes how the child ended. Prints ``{"jax_imported": bool, "results": [...]}``,
one result per path, in order:

* ``path``; ``signal`` (the signal that ended the child, or null) and ``exit_code``;
* ``outcome``: ``"ok"`` (with ``arrays``: name -> [shape, dtype, up to 64 values])
  or ``"error"`` (with ``type``, ``is_value_error``, ``is_unsafe`` and ``message``);
* ``added_bytes``: the child's peak resident memory minus its size when it started;
  ``seconds``: how long the load took.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import sys
import time


def _rss_bytes() -> tuple[int, int]:
    """(address space, resident set) of this process, in bytes."""
    with open("/proc/self/statm") as f:
        size, resident = (int(v) for v in f.read().split()[:2])
    page = os.sysconf("SC_PAGE_SIZE")
    return size * page, resident * page


def _load_one(reader, path: str, timeout_s: float, headroom: int) -> dict:
    address_space, start_rss = _rss_bytes()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = address_space + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    start = time.perf_counter()
    result: dict = {}
    try:
        state = reader.load_torch_state_dict(path)
        result["outcome"] = "ok"
        result["arrays"] = {
            name: [list(a.shape), a.dtype.str, a.ravel()[:64].tolist()] for name, a in state.items()
        }
    except BaseException as e:  # noqa: BLE001 - every way a load ends is reported
        result.update(
            outcome="error",
            type=type(e).__name__,
            is_value_error=isinstance(e, ValueError),
            is_unsafe=isinstance(e, reader.UnsafeCheckpointError),
            message=str(e)[:2000],
        )
    result["seconds"] = time.perf_counter() - start
    signal.setitimer(signal.ITIMER_REAL, 0)
    result["added_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start_rss
    return result


def _run(reader, path: str, timeout_s: float, headroom: int) -> dict:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: load, report, and leave without running any cleanup
        os.close(read_end)
        try:
            payload = json.dumps(_load_one(reader, path, timeout_s, headroom)).encode()
            with os.fdopen(write_end, "wb") as out:
                out.write(payload)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status, _ = os.wait4(pid, 0)
    result = json.loads(payload) if payload else {"outcome": "none"}
    result["path"] = path
    result["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    result["exit_code"] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    return result


def main() -> None:
    weights_py, timeout_s, headroom = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    spec = importlib.util.spec_from_file_location("checkpoint_reader_under_test", weights_py)
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)
    paths = json.load(sys.stdin)
    results = [_run(reader, path, timeout_s, headroom) for path in paths]
    json.dump({"jax_imported": "jax" in sys.modules, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()

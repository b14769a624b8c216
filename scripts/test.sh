#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (extra arguments go to pytest).
# Two pytest workers, one test file each at a time: most tests wait on XLA's single-threaded
# compiler, so two files in parallel halve the wall time on two cores (PYTEST_WORKERS to change).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"

"""A metrics log as JSON lines: one object per line, each with a ``"step"``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any


def _plain(value: Any) -> Any:
    """Numbers and arrays of one element as Python scalars; NaN/inf as strings (valid JSON)."""
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends JSON lines to ``path``, flushing each one.

    Opening the log with ``resume_step`` drops every line whose step is past it
    (written after the checkpoint a run resumes from), rewriting the file
    atomically, so a resumed run's log reads as if it had never stopped.

    Args:
      path: the ``.jsonl`` file (its folder is created).
      resume_step: keep only lines with ``step <= resume_step``; ``None`` starts
        a fresh file.
      enabled: ``False`` makes every call a no-op (non-zero hosts).
      continuing: the run trains past ``resume_step`` (a finished run extended
        to more steps): the kept lines lose their ``"final"`` mark, so only the
        new end is marked final.
    """

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None, enabled: bool = True,
                 continuing: bool = False):
        self.path = os.fspath(path)
        self.enabled = enabled
        if not enabled:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        kept = []
        if resume_step is not None and os.path.exists(self.path):
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            if continuing:
                kept = [{k: v for k, v in r.items() if k != "final"} for r in kept]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            for record in kept:
                f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())  # on disk before it replaces the old log
        os.replace(tmp, self.path)

    def has_record(self, step: int, key: str) -> bool:
        """Whether a line with this ``step`` has the field ``key``."""
        if not self.enabled or not os.path.exists(self.path):
            return False
        return any(r.get("step") == step and key in r for r in read_metrics(self.path))

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Appends ``{"step": step, **metrics}``."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a JSON-lines log, in order (a torn last line is skipped)."""
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records

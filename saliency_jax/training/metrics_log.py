"""A metrics log as JSON lines: one object per line, each with an integer ``"step"``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from saliency_jax._checks import check_int
from saliency_jax.training._paths import check_file


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
    atomically, so a resumed run's log reads as if it had never stopped. A log
    damaged anywhere but in its last line is refused (:func:`read_metrics`) and
    left as it is.

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
        self.enabled = enabled
        if not enabled:
            self.path = os.fspath(path)
            return
        check_file(path, "path")  # before anything is written: a folder would leave a stray .tmp file
        self.path = os.fspath(path)
        if resume_step is not None:
            resume_step = check_int(resume_step, "resume_step (or None)", 0)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        kept = []
        if resume_step is not None and os.path.exists(self.path):
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            if continuing:
                kept = [{k: v for k, v in r.items() if k != "final"} for r in kept]
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                for record in kept:
                    f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())  # on disk before it replaces the old log
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def has_record(self, step: int, key: str) -> bool:
        """Whether a line with this ``step`` has the field ``key``."""
        if not self.enabled or not os.path.exists(self.path):
            return False
        return any(r["step"] == step and key in r for r in read_metrics(self.path))

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Appends ``{"step": step, **metrics}``; ``metrics`` may not hold ``"step"`` itself."""
        if not self.enabled:
            return
        step = check_int(step, "step", 0)
        if not isinstance(metrics, Mapping):
            raise ValueError(f"metrics must be a mapping of names to values, got {type(metrics).__name__}")
        if "step" in metrics:
            raise ValueError(f"metrics must not hold the key 'step' (the record's own step, {step}), got "
                             f"'step': {metrics['step']!r}")
        record = {"step": step}
        for name, value in metrics.items():
            if not isinstance(name, str):
                raise ValueError(f"metrics names must be strings, got {name!r}")
            record[name] = _plain(value)
        try:
            line = json.dumps(record)
        except (TypeError, ValueError) as error:
            raise ValueError(f"metrics values must be numbers, strings or one-element arrays, got {error}") from None
        with open(self.path, "a") as f:
            f.write(line + "\n")
            f.flush()


def _is_step(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a JSON-lines log, in order.

    A torn last line (a write cut short by an interruption) is skipped. Any other
    line that is not a JSON object with an integer ``"step"`` raises ``ValueError``
    naming the file and the line: the log was damaged or written by something else.
    """
    with open(path, errors="replace") as f:
        lines = [(number, line.strip()) for number, line in enumerate(f, 1) if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if index == len(lines) - 1:
                break  # torn by an interrupted write
            raise ValueError(
                f"{os.fspath(path)} line {number} must be a JSON object, got {line[:80]!r} ({error}); the log is "
                f"damaged: repair or remove that line"
            ) from None
        if not isinstance(record, dict) or not _is_step(record.get("step")):
            raise ValueError(
                f"{os.fspath(path)} line {number} must be a JSON object with an integer \"step\", got "
                f"{line[:80]!r}; the log is damaged: repair or remove that line"
            )
        records.append(record)
    return records

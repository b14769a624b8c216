"""Calls of one size: how the helpers that loop over a batch keep to one compilation.

A jitted function compiles once per input shape, so a loop whose last call is
smaller compiles the model a second time (seconds on a CPU, tens of seconds for
a class-model ascent of EfficientNet-Lite0). These helpers give every call the
same number of rows, filling the last with copies of the last row, whose outputs
the caller drops.
"""

from __future__ import annotations

import math

import numpy as np


def rows_per_call(count: int, batch_size: int) -> int:
    """Rows per call when ``count`` rows go in calls of at most ``batch_size``, evened out.

    The calls are as even as that allows (9 rows at ``batch_size`` 8 are two calls
    of 5, not 8 and 1), and each is filled to this size (:func:`pad_rows`).
    """
    calls = max(1, math.ceil(count / batch_size))
    return max(1, math.ceil(count / calls))


def pad_rows(array, rows: int):
    """``array`` (``[n, ...]``, ``n >= 1``) with its last row repeated up to ``rows`` rows."""
    missing = rows - len(array)
    return array if missing <= 0 else np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])


def filled_chunks(count: int, batch_size: int) -> list[tuple[np.ndarray, int]]:
    """The rows of ``count`` inputs in calls of ``min(batch_size, count)`` rows, starting where unfilled calls would.

    For loops whose calls are keyed by where they start (a random map drawing from
    its first row's key): the calls start at multiples of ``batch_size``, as
    without filling, and only the last is filled with copies of the last row.

    Returns:
      ``(rows, kept)`` per call: int64 indices ``[min(batch_size, count)]`` and how
      many leading rows of its output are real.
    """
    size = min(batch_size, count)
    if size < 1:
        return []
    return [(np.minimum(np.arange(start, start + size), count - 1), min(size, count - start))
            for start in range(0, count, size)]

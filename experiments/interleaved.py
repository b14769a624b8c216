"""In-process A/B timing shared by the benchmarks that compare two compilations of one computation.

The variants take turns case by case, the order reversed every other round, with a pause before
each sample so that one variant's threads have gone idle before the other runs; each sample is the
mean of a few calls in a row. Ratios are taken round by round, so a slow stretch of the machine hits
both sides of a ratio alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np


def interleaved_times(
    calls: Mapping[tuple[str, str], Callable[[], object]],
    cases: Sequence[str],
    variants: Sequence[str],
    repeats: Mapping[str, int],
    rounds: int,
    pause: float,
) -> dict[tuple[str, str], list[float]]:
    """Milliseconds per call of each ``calls[case, variant]``, one sample per round.

    Args:
      calls: a callable with no arguments per (case, variant); its result is waited for.
      cases: the cases, timed one after another within a round.
      variants: the variants, in this order in even rounds and reversed in odd ones.
      repeats: calls per sample, per case.
      rounds: samples per (case, variant).
      pause: seconds of rest before each sample.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    times: dict[tuple[str, str], list[float]] = {(case, v): [] for case in cases for v in variants}
    for r in range(rounds):
        for case in cases:
            for variant in variants if r % 2 == 0 else variants[::-1]:
                time.sleep(pause)
                start = time.perf_counter()
                for _ in range(repeats[case]):
                    jax.block_until_ready(calls[case, variant]())
                times[case, variant].append((time.perf_counter() - start) / repeats[case] * 1e3)
    return times


def ratio_summary(numerator: Sequence[float], denominator: Sequence[float]) -> dict:
    """Median and interquartile range of the per-round ratios ``numerator / denominator``."""
    ratio = np.asarray(numerator) / np.asarray(denominator)
    return {"ratio": float(np.median(ratio)),
            "ratio_iqr": [float(np.quantile(ratio, 0.25)), float(np.quantile(ratio, 0.75))]}

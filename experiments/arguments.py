"""Argument types shared by the experiment scripts.

Each is an ``argparse`` ``type=``: a value it cannot take is refused with one
line that names the argument (``error: argument --scenes: must be an integer
>= 1, got '0'``) before anything is loaded or computed.
"""

from __future__ import annotations

import argparse
import math

MAX_SEED = 2**63  # jax.random.key takes a signed 64-bit seed


def integer(low: int, high: int | None = None):
    """An integer ``>= low`` (and ``< high`` when given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value >= high):
            wanted = f">= {low}" if high is None else f"in [{low}, {high})"
            raise argparse.ArgumentTypeError(f"must be an integer {wanted}, got {text!r}")
        return value

    return parse


def seed(text: str) -> int:
    """A random seed: an integer in ``[0, 2**63)``."""
    try:
        return integer(0, MAX_SEED)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63), got {text!r}") from None


def number(low: float = 0.0, *, strict: bool = False, high: float = math.inf):
    """A finite number ``>= low`` (``> low`` when ``strict``) and ``<= high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high) or (strict and value == low):
            wanted = f"{'>' if strict else '>='} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
            raise argparse.ArgumentTypeError(f"must be a finite number {wanted}, got {text!r}")
        return value

    return parse


def names(known, *, allow_empty: bool = False):
    """Comma-separated names from ``known``, as a tuple without repeats (empty only if ``allow_empty``)."""
    known = tuple(known)

    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(dict.fromkeys(n for n in text.split(",") if n))
        unknown = [n for n in chosen if n not in known]
        if unknown or not (chosen or allow_empty):
            what = f"unknown {unknown[0]!r}" if unknown else f"no name in {text!r}"
            raise argparse.ArgumentTypeError(f"{what}; must be comma-separated names of {', '.join(known)}")
        return chosen

    return parse


def number_list(kind: type, low: float):
    """Comma-separated finite numbers of ``kind`` (``int`` or ``float``), each ``>= low``, as a list without repeats.

    Repeats are dropped: a setting given twice would be run, and counted, twice.
    """

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            values = []
        if not values or any(not math.isfinite(v) or v < low for v in values):
            what = "integers" if kind is int else "finite numbers"
            raise argparse.ArgumentTypeError(f"must be comma-separated {what} >= {low:g}, got {text!r}")
        return list(dict.fromkeys(values))

    return parse


def json_path(text: str) -> str:
    """A ``.json`` file name: the table is written beside it under the same name with ``.md``."""
    if not text.lower().endswith(".json"):
        raise argparse.ArgumentTypeError(f"must be a .json file (the table goes beside it as .md), got {text!r}")
    return text

"""Argument types shared by the experiment scripts.

Each is an ``argparse`` ``type=``: a value it cannot take is refused with one
line that names the argument (``error: argument --scenes: must be an integer
>= 1, got '0'``) before anything is loaded or computed.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile

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


def _nearest_existing(full: str) -> str:
    """``full`` or the nearest folder above it that exists."""
    while not os.path.lexists(full):
        full = os.path.dirname(full)
    return full


def _write_problem(folder: str) -> str | None:
    """Why nothing can be written in ``folder``; ``None`` if a probe file can be.

    Only writing tells: permission bits say nothing to root, nor of a read-only file system.
    """
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        return str(error.strerror or error)
    return None


def folder_problem(path: str, *, written: bool = True) -> str | None:
    """Why ``path`` cannot be (or become) a folder a run writes in; ``None`` if it can.

    That is: it is empty, a file or a broken link, lies below one, or it (or the folder
    it would be made in) cannot be written. With ``written=False`` an existing folder is
    only read.
    """
    if not path:
        return "empty; name a folder ('.' for the current one)"
    full = os.path.abspath(path)
    existing = _nearest_existing(full)
    if not os.path.isdir(existing):
        what = "a broken symbolic link" if os.path.islink(existing) and not os.path.exists(existing) else "a file"
        if existing == full:
            return f"{path!r} is {what}, not a folder"
        return f"{path!r} lies below {what}, {existing!r}"
    if existing == full and not written:
        return None
    reason = _write_problem(existing)
    if reason is None:
        return None
    if existing == full:
        return f"cannot write in {path!r} ({reason})"
    return f"{path!r} cannot be created: cannot write in {existing!r} ({reason})"


def file_problem(path: str) -> str | None:
    """Why a file cannot be written (atomically, through a temporary beside it) at ``path``; ``None`` if it can.

    That is: ``path`` is empty or a folder, lies below something that is not a folder,
    or its folder cannot be written (or made).
    """
    if not path:
        return "empty; name a file"
    full = os.path.abspath(path)
    if os.path.isdir(full):
        return f"{path!r} is a folder, where an output file goes; remove it or choose another path"
    existing = _nearest_existing(os.path.dirname(full))
    if not os.path.isdir(existing):
        return f"{path!r} lies below {existing!r}, which is not a folder"
    reason = _write_problem(existing)
    return None if reason is None else f"cannot write {path!r}: cannot write in {existing!r} ({reason})"

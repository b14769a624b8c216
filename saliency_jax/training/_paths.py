"""Checks of the folders and files a run writes, before anything is written to them."""

from __future__ import annotations

import os


def check_folder(path, name: str) -> str:
    """``path`` as an absolute path, if a folder is there or can be created there; else ``ValueError``."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{name} must be a non-empty path, got {path!r}")
    path = os.path.abspath(os.fspath(path))
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "which is a file" if existing == path else f"but {existing} is a file"
        raise ValueError(f"{name} must be a folder, or a path where one can be created, got {path}, {where}")
    return path


def check_file(path, name: str) -> str:
    """``path`` as an absolute path, if a file is there or can be created there; else ``ValueError``."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{name} must be a non-empty file path, got {path!r}")
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{name} must be a file path, got {path}, which is a folder")
    check_folder(os.path.dirname(path), f"the folder of {name}")
    return path

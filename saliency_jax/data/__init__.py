"""Datasets the project generates itself (no downloads), as TFDS builders.

Names are imported on first use (PEP 562): the processes that render images import
:mod:`saliency_jax.data.render` alone, without TFDS or JAX. Importing
:mod:`saliency_jax.data.cluttered_objects` registers the TFDS builder.
"""

from __future__ import annotations

import importlib

_MODULE_OF = {
    "SHAPES": "render",
    "ClutterConfig": "render",
    "Example": "render",
    "example_rng": "render",
    "render_example": "render",
    "render_split": "render",
    "ClutteredObjects": "cluttered_objects",
    "ClutteredObjectsConfig": "cluttered_objects",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'saliency_jax.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"saliency_jax.data.{module}"), name)
    globals()[name] = value
    return value

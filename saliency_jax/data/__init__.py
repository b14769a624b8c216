"""Datasets the project generates itself (no downloads), as TFDS builders."""

from saliency_jax.data.cluttered_objects import (
    SHAPES,
    ClutterConfig,
    ClutteredObjects,
    ClutteredObjectsConfig,
    Example,
    example_rng,
    render_example,
    render_split,
)

__all__ = [
    "SHAPES",
    "ClutterConfig",
    "ClutteredObjects",
    "ClutteredObjectsConfig",
    "Example",
    "example_rng",
    "render_example",
    "render_split",
]

"""Evaluation: localisation and faithfulness metrics, generated benchmarks, sanity checks.

``model_maps`` (JAX) and ``tfds_eval`` (TFDS) are imported on demand, not here.
"""

from saliency_jax.evaluation.benchmark import (
    BACKGROUND_NAMES,
    OBJECT_NAMES,
    LocalisationBenchmark,
    TableRow,
    baseline_rows,
    box_mask,
    centre_box,
    composite,
    format_table,
    make_benchmark,
    map_rows,
    saliency_threshold_box,
    score,
    simulated_saliency,
    whole_image_box,
)
from saliency_jax.evaluation.metrics import (
    box_area,
    box_iou,
    localisation_accuracy,
    localisation_hits,
    mask_iou,
    pointing_accuracy,
    pointing_hits,
    saliency_peak,
    top5_localisation_error,
)

__all__ = [
    "BACKGROUND_NAMES",
    "OBJECT_NAMES",
    "LocalisationBenchmark",
    "TableRow",
    "baseline_rows",
    "box_area",
    "box_iou",
    "box_mask",
    "centre_box",
    "composite",
    "format_table",
    "localisation_accuracy",
    "localisation_hits",
    "make_benchmark",
    "map_rows",
    "mask_iou",
    "pointing_accuracy",
    "pointing_hits",
    "saliency_peak",
    "saliency_threshold_box",
    "score",
    "simulated_saliency",
    "top5_localisation_error",
    "whole_image_box",
]

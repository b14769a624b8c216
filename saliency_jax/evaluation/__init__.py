"""Evaluation of weakly supervised localisation (paper §3.2): metrics, benchmarks, seed maps.

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
from saliency_jax.evaluation.seed_maps import SEED_MAPS, batched, flip_shift_average, seed_map_fn, smoothgrad

__all__ = [
    "BACKGROUND_NAMES",
    "OBJECT_NAMES",
    "SEED_MAPS",
    "LocalisationBenchmark",
    "TableRow",
    "baseline_rows",
    "batched",
    "box_area",
    "box_iou",
    "box_mask",
    "centre_box",
    "composite",
    "flip_shift_average",
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
    "seed_map_fn",
    "simulated_saliency",
    "smoothgrad",
    "top5_localisation_error",
    "whole_image_box",
]

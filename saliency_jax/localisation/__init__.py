"""Weakly supervised object localisation from saliency maps (paper §3.2), on the CPU.

Seeds from the map's quantiles, foreground and background colour mixtures, a
GraphCut of the image (PyMaxflow) and the largest connected foreground component
with its box. Numpy in, numpy out; this package does not import JAX.
"""

from saliency_jax.localisation.components import bounding_box, largest_component, most_salient_component
from saliency_jax.localisation.config import COMPONENTS, HARD_SEEDS, GraphCutConfig
from saliency_jax.localisation.gmm import (
    ColourModels,
    colour_costs,
    fit_colour_model,
    fit_colour_models,
    log_likelihood,
)
from saliency_jax.localisation.graphcut import PixelGraph, build_graph, contrast_weights, graphcut_segment, solve
from saliency_jax.localisation.pipeline import (
    ClassBoxes,
    Localisation,
    StageTimes,
    localise,
    localise_classes,
    localise_many,
    localise_photo,
    saliency_prior,
    support_mask,
    working_shape,
)
from saliency_jax.localisation.regions import FELZENSZWALB_SCALES, RankedRegions, felzenszwalb_regions, rank_regions
from saliency_jax.localisation.seeds import Seeds, quantile_seeds

__all__ = [
    "COMPONENTS",
    "FELZENSZWALB_SCALES",
    "ClassBoxes",
    "ColourModels",
    "GraphCutConfig",
    "HARD_SEEDS",
    "Localisation",
    "PixelGraph",
    "RankedRegions",
    "Seeds",
    "StageTimes",
    "bounding_box",
    "build_graph",
    "colour_costs",
    "contrast_weights",
    "felzenszwalb_regions",
    "fit_colour_model",
    "fit_colour_models",
    "graphcut_segment",
    "largest_component",
    "localise",
    "localise_classes",
    "localise_many",
    "localise_photo",
    "saliency_prior",
    "support_mask",
    "working_shape",
    "log_likelihood",
    "most_salient_component",
    "quantile_seeds",
    "rank_regions",
    "solve",
]

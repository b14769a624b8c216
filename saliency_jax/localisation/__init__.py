"""Weakly supervised object localisation from saliency maps (paper §3.2), on the CPU.

Seeds from the map's quantiles, foreground and background colour mixtures, a
GraphCut of the image (PyMaxflow) and the largest connected foreground component
with its box. Numpy in, numpy out; this package does not import JAX.
"""

from saliency_jax.localisation.components import bounding_box, largest_component
from saliency_jax.localisation.config import GraphCutConfig
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
)
from saliency_jax.localisation.seeds import Seeds, quantile_seeds
from saliency_jax.localisation.visualise import PANEL_TITLES, localisation_panels

__all__ = [
    "ClassBoxes",
    "ColourModels",
    "GraphCutConfig",
    "Localisation",
    "PANEL_TITLES",
    "PixelGraph",
    "Seeds",
    "StageTimes",
    "bounding_box",
    "build_graph",
    "colour_costs",
    "contrast_weights",
    "fit_colour_model",
    "fit_colour_models",
    "graphcut_segment",
    "largest_component",
    "localisation_panels",
    "localise",
    "localise_classes",
    "localise_many",
    "log_likelihood",
    "quantile_seeds",
    "solve",
]

"""saliency_jax: make image classifiers explain themselves (Simonyan et al., 2013).

The public API, re-exported. A model is any pure ``logits_fn(params, images) -> logits``.
"""

from saliency_jax.backprop_rules import RULES, backprop_rule, current_rule, relu, relu6
from saliency_jax.saliency import (
    Attribution,
    augmented_saliency_map,
    class_gradients,
    class_saliency_maps,
    input_gradients,
    saliency_from_gradients,
    saliency_map,
    smoothgrad_map,
)
from saliency_jax.scores import class_scores, select_scores, top_k
from saliency_jax.types import Classifier, LogitsFn, TopK

__all__ = [
    "Attribution",
    "Classifier",
    "LogitsFn",
    "RULES",
    "TopK",
    "augmented_saliency_map",
    "backprop_rule",
    "class_gradients",
    "class_saliency_maps",
    "class_scores",
    "current_rule",
    "input_gradients",
    "relu",
    "relu6",
    "saliency_from_gradients",
    "saliency_map",
    "select_scores",
    "smoothgrad_map",
    "top_k",
]

"""saliency_jax: make image classifiers explain themselves (Simonyan et al., 2013).

The public API, re-exported. A model is any pure ``logits_fn(params, images) -> logits``.

Names are imported on first use (PEP 562), so ``import saliency_jax.localisation``
(the CPU pipeline, run in worker processes) does not pull in JAX.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # §3, §3.1: saliency
    "saliency_jax.saliency": (
        "Attribution", "class_gradients", "class_saliency_maps", "default_images_per_pass", "input_gradients",
        "saliency_from_gradients",
        "saliency_map",
    ),
    # beyond the paper: the attribution family, one signature
    "saliency_jax.attribution": (
        "METHODS", "attribution_map", "blur_integrated_gradients", "flip_shift_average", "for_classes", "gradcam",
        "gradcam_plus_plus", "gradient", "gradient_shap", "gradient_x_input", "guided_gradcam",
        "guided_integrated_gradients", "integrated_gradients", "kernel_shap", "occlusion", "rise", "smoothgrad",
        "squaregrad", "vargrad",
    ),
    "saliency_jax.scores": ("class_scores", "select_scores", "top_k", "top_k_of_logits"),
    # §2: class model visualisation
    "saliency_jax.class_model": (
        "ClassModelAscent", "ClassModelHistory", "ClassModelResult", "ClassModelState", "class_model_ascent",
        "class_models", "classifier_class_models", "classifier_settings", "mode_defaults", "run_in_chunks",
    ),
    "saliency_jax.regularizers": (
        "Regularizer", "blur_every", "clip_pixels", "compose", "jitter", "l2_penalty", "random_scale",
        "total_variation",
    ),
    "saliency_jax.parametrization": (
        "Parametrization", "fourier_parametrization", "make_parametrization", "pixel_parametrization",
    ),
    "saliency_jax.types": ("Classifier", "LogitsFn", "TopK"),
    # §4: backward rules and reconstructions
    "saliency_jax.backprop_rules": ("RULES", "backprop_rule", "check_rule", "current_rule", "relu", "relu6"),
    "saliency_jax.reconstruction": (
        "Layer", "Reconstruction", "TopChannels", "WEIGHTINGS", "layer_activations", "layer_reconstruction",
        "layer_gradients", "layer_reconstructions", "layer_vjp", "list_layers", "top_activated_channels",
    ),
    # XRAI: attributions ranked over image regions (the regions on the CPU)
    "saliency_jax.evaluation.region_maps": ("xrai",),
    "saliency_jax.evaluation.sanity": (
        "RandomizationResult", "cascade_order", "cascading_randomization", "randomize_layers",
        "spearman_rank_correlation",
    ),
    # §3.2: localisation (CPU, numpy in and out)
    "saliency_jax.localisation": (
        "ClassBoxes", "GraphCutConfig", "Localisation", "graphcut_segment", "localise", "localise_classes",
        "localise_many", "quantile_seeds",
    ),
    # scaling out over devices
    "saliency_jax.parallel": ("data_mesh", "initialize_distributed", "shard_batch", "sharded_map"),
    # XLA's CPU worker threads, one per CPU (opt-in)
    "saliency_jax.cpu_threads": ("bind_cpu_threads", "bound_cpu_threads", "unbind_cpu_threads"),
    # models
    "saliency_jax.models": ("load_efficientnet_lite", "load_efficientnet_lite0", "load_torch_state_dict"),
}

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'saliency_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

"""Attribution methods beyond the paper, behind one interface, and wrappers of any of them.

Every method is a pure function

    method(logits_fn, params, images, classes=None, *, key=None, batch_size=64, **settings)

taking float32 ``images`` ``[B, H, W, C]`` and ``classes`` int ``[B]``, a scalar or
``None`` (each image's top-1 class), and returning per-pixel, per-channel
attributions ``[B, H, W, C]`` (pixel methods) or a ``[B, h, w]`` map at a layer's
resolution (Grad-CAM, Grad-CAM++). :func:`attribution_map` reduces either to the
paper's ``[B, H, W]`` map (``max_c |.|`` by default, §3.1). :func:`for_classes`
turns any method into its companion form for many classes of each image
(``classes`` ``[B, N]`` -> ``[B, N, ...]``, one forward pass). ``rule=`` selects the
§4 ReLU backward rule in the gradient-based methods. Randomness only through
``key=``. Expansions (IG's steps, noisy copies, RISE masks, occluded copies) run
``batch_size`` rows at a time in a ``lax.scan``, so memory does not grow with
their number. Everything is jit-friendly with the settings bound by
``functools.partial``:

    ig = jax.jit(functools.partial(integrated_gradients, logits_fn, steps=32))
    attributions = ig(params, images, classes)

Methods: :func:`gradient` (paper §3), :func:`gradient_x_input`,
:func:`integrated_gradients`, :func:`blur_integrated_gradients`,
:func:`guided_integrated_gradients` (a path that moves the features of smallest
gradient first), :func:`gradient_shap`
(expected gradients over a set of baselines), :func:`gradcam`,
:func:`kernel_shap` (Shapley values of image segments by regression),
:func:`gradcam_plus_plus`, :func:`guided_gradcam` (guided back-propagation times the
upsampled Grad-CAM map), :func:`crop_gradcam` (multi-scale crops; a map at the
input's resolution), :func:`occlusion`, :func:`rise`. Wrappers of any method
(``method=``): :func:`smoothgrad`, :func:`squaregrad`, :func:`vargrad`,
:func:`flip_shift_average`. :data:`METHODS` names them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from saliency_jax.attribution._common import DEFAULT_BATCH_SIZE, REDUCTIONS, attribution_map, for_classes
from saliency_jax.attribution.augment import flip_shift_average
from saliency_jax.attribution.blur_ig import blur_integrated_gradients, gaussian_blur
from saliency_jax.attribution.expected import gradient_shap
from saliency_jax.attribution.guided_ig import guided_integrated_gradients
from saliency_jax.attribution.cam import default_layer, gradcam, gradcam_plus_plus, guided_gradcam
from saliency_jax.attribution.crops import CROP_GRID, crop_boxes, crop_gradcam
from saliency_jax.attribution.gradients import gradient, gradient_x_input
from saliency_jax.attribution.integrated import integrated_gradients
from saliency_jax.attribution.noise import smoothgrad, squaregrad, vargrad
from saliency_jax.attribution.perturbation import occlusion
from saliency_jax.attribution.random_masks import rise, rise_masks
from saliency_jax.attribution.shapley import grid_segments, kernel_shap


class Method(NamedTuple):
    """An attribution method and what it needs.

    Attributes:
      fn: the function, with the common signature.
      output: ``"pixels"`` (``[B, H, W, C]``) or ``"layer"`` (a ``[B, h, w]`` map).
      needs_key: whether ``key=`` is required.
      uses_rule: whether it takes ``rule=`` (the §4 ReLU rules).
      wraps: whether it wraps another method (``method=``).
      needs_layer: whether it explains a layer's feature maps (``layer=``).
    """

    fn: Callable
    output: str
    needs_key: bool = False
    uses_rule: bool = False
    wraps: bool = False
    needs_layer: bool = False


METHODS: dict[str, Method] = {
    "gradient": Method(gradient, "pixels", uses_rule=True),
    "gradient-x-input": Method(gradient_x_input, "pixels", uses_rule=True),
    "integrated-gradients": Method(integrated_gradients, "pixels", uses_rule=True),
    "blur-ig": Method(blur_integrated_gradients, "pixels", uses_rule=True),
    "guided-ig": Method(guided_integrated_gradients, "pixels", uses_rule=True),
    "gradient-shap": Method(gradient_shap, "pixels", needs_key=True, uses_rule=True),
    "gradcam": Method(gradcam, "layer", needs_layer=True),
    "gradcam++": Method(gradcam_plus_plus, "layer", needs_layer=True),
    "guided-gradcam": Method(guided_gradcam, "pixels", needs_layer=True),
    "crop-gradcam": Method(crop_gradcam, "layer", needs_layer=True),
    "occlusion": Method(occlusion, "pixels"),
    "kernel-shap": Method(kernel_shap, "pixels", needs_key=True),
    "rise": Method(rise, "pixels", needs_key=True),
    "smoothgrad": Method(smoothgrad, "pixels", needs_key=True, wraps=True),
    "squaregrad": Method(squaregrad, "pixels", needs_key=True, wraps=True),
    "vargrad": Method(vargrad, "pixels", needs_key=True, wraps=True),
    "flip-shift": Method(flip_shift_average, "pixels", wraps=True),
}
"""Every method by name (the command line's ``--method``). A wrapper's ``output``
is that of its default ``method=`` (the gradient)."""

__all__ = [
    "CROP_GRID",
    "DEFAULT_BATCH_SIZE",
    "METHODS",
    "REDUCTIONS",
    "Method",
    "attribution_map",
    "blur_integrated_gradients",
    "crop_boxes",
    "crop_gradcam",
    "default_layer",
    "flip_shift_average",
    "for_classes",
    "gaussian_blur",
    "gradcam",
    "gradcam_plus_plus",
    "gradient",
    "gradient_shap",
    "gradient_x_input",
    "grid_segments",
    "guided_gradcam",
    "guided_integrated_gradients",
    "integrated_gradients",
    "kernel_shap",
    "occlusion",
    "rise",
    "rise_masks",
    "smoothgrad",
    "squaregrad",
    "vargrad",
]

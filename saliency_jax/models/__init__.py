"""Models: the embedded EfficientNet-Lite0/1/2, the paper's ConvNet, and the checkpoint reader."""

from saliency_jax.models.convnet import ConvNet, cpu_convolution_options, paper_convnet, scaled_convnet
from saliency_jax.models.efficientnet_lite import (
    EfficientNetLite,
    EfficientNetLite0,
    load_efficientnet_lite,
    load_efficientnet_lite0,
)
from saliency_jax.models.imagenet import class_id, imagenet_class_names, short_name
from saliency_jax.models.weights import UnsafeCheckpointError, load_torch_state_dict

__all__ = [
    "ConvNet",
    "cpu_convolution_options",
    "paper_convnet",
    "scaled_convnet",
    "EfficientNetLite",
    "EfficientNetLite0",
    "UnsafeCheckpointError",
    "class_id",
    "imagenet_class_names",
    "load_efficientnet_lite",
    "load_efficientnet_lite0",
    "load_torch_state_dict",
    "short_name",
]

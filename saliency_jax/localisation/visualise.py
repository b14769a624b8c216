"""The panels of the paper's Figure 3 as uint8 images: numpy only, no plotting library."""

from __future__ import annotations

import numpy as np

from saliency_jax.localisation._inputs import as_image, as_mask, as_saliency
from saliency_jax.localisation.pipeline import Localisation

PANEL_TITLES = ("image", "saliency map", "seeds", "GraphCut mask", "box")

_FOREGROUND = np.array([255, 40, 40], np.float64)
_BACKGROUND = np.array([40, 90, 255], np.float64)
_BOX = np.array([255, 230, 0], np.uint8)


def saliency_panel(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """A map as grey uint8 ``[H, W, 3]``, white at its ``percentile`` and above."""
    saliency = as_saliency(saliency)
    low = saliency.min()
    top = np.percentile(saliency, percentile) - low
    grey = np.clip((saliency - low) / top, 0, 1) if top > 0 else np.zeros_like(saliency)
    return np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def seeds_panel(image: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The image dimmed, foreground seeds in red and background seeds in blue."""
    out = as_image(image) * 0.45
    out[as_mask(foreground, "foreground")] = _FOREGROUND
    background = as_mask(background, "background")
    out[background] = 0.5 * out[background] + 0.5 * _BACKGROUND
    return out.round().astype(np.uint8)


def mask_panel(image: np.ndarray, mask: np.ndarray, segmentation: np.ndarray | None = None) -> np.ndarray:
    """The image inside ``mask``; other GraphCut foreground half-dimmed, the rest dark."""
    pixels = as_image(image)
    out = pixels * 0.15
    if segmentation is not None:
        other = as_mask(segmentation, "segmentation")
        out[other] = pixels[other] * 0.5
    keep = as_mask(mask)
    out[keep] = pixels[keep]
    return out.round().astype(np.uint8)


def box_panel(image: np.ndarray, box, thickness: int | None = None) -> np.ndarray:
    """The image with the box ``x0, y0, x1, y1`` (exclusive ends) outlined in yellow."""
    out = as_image(image).round().astype(np.uint8)
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


def localisation_panels(image: np.ndarray, saliency: np.ndarray, found: Localisation) -> list[np.ndarray]:
    """The five panels of Figure 3, in :data:`PANEL_TITLES` order, uint8 ``[H, W, 3]`` each.

    Args:
      image: the ``[H, W, 3]`` image the pipeline ran on.
      saliency: its ``[H, W]`` map.
      found: the pipeline's :class:`~saliency_jax.localisation.Localisation`.
    """
    return [
        as_image(image).round().astype(np.uint8),
        saliency_panel(saliency),
        seeds_panel(image, found.seeds.foreground, found.seeds.background),
        mask_panel(image, found.mask, found.segmentation),
        box_panel(image, found.box),
    ]

"""Figures and display panels: an edge module, used by the CLI and the experiments.

Figures are built as ``matplotlib.figure.Figure`` objects, without pyplot, so
importing this module neither selects a backend nor opens a window; save them
with :func:`saliency_jax.io.save_figure`. The localisation panels (paper Figure
3) are plain uint8 arrays.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from saliency_jax import _checks
from saliency_jax.io import to_rgb_uint8

PANEL_TITLES = ("image", "saliency map", "seeds", "GraphCut mask", "box")
SEED_MASK_TITLE = "seeds' mask (cut empty)"  # the fourth title when the cut kept no foreground

_FOREGROUND = np.array([255, 40, 40], np.float64)
_BACKGROUND = np.array([40, 90, 255], np.float64)
_BOX = np.array([255, 230, 0], np.uint8)


def normalise_map(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Scales a map to ``[0, 1]`` for display: its minimum to 0, its ``percentile`` and above to 1.

    Clipping at a high percentile keeps a few extreme pixels from making the
    rest of the map black. A constant map gives zeros.

    Args:
      saliency: ``[H, W]`` (or any shape) of finite real numbers, not empty.
      percentile: in ``[0, 100]``, the value mapped to 1.

    Returns:
      float32, the shape of ``saliency``, values in ``[0, 1]``.

    Raises:
      ValueError: for an empty map or one with NaN or infinite values (a
        broken map would otherwise be drawn as a plausible blank one).
    """
    percentile = _checks.check_number(percentile, "percentile", low=0.0, high=100.0)
    values = _real_array(saliency, "saliency")
    with np.errstate(over="ignore"):  # beyond float32's range: infinite, refused below
        saliency = values.astype(np.float32)
    if saliency.size == 0:
        raise ValueError(f"saliency must not be empty, got shape {saliency.shape}")
    if not np.isfinite(saliency).all():
        raise ValueError("saliency contains NaN or infinite values (beyond float32's range, or a broken map)")
    wide = saliency.astype(np.float64)  # the range of float32 values can pass float32's (3e38 - -3e38)
    low = float(wide.min())
    top = float(np.percentile(wide, percentile)) - low
    if not top > 0:
        return np.zeros_like(saliency)
    return np.clip((wide - low) / top, 0.0, 1.0).astype(np.float32)


def _rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as float64 ``[H, W, 3]`` on 0-255, by the library's pixel rule (:func:`saliency_jax.io.load_image`).

    Floats all within [0, 1] are on the 0-1 scale (as :func:`~saliency_jax.localisation.localise`
    takes them), other floats on 0-255; uint8 as is, bool as black/white, uint16 on its range.
    """
    return to_rgb_uint8(image, name).astype(np.float64)


def _mask(mask, name: str, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` as bool ``[H, W]``, refused unless it has the image's height and width."""
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{name} must be a mask of the image's shape {list(shape)}, got shape {list(mask.shape)}")
    return mask.astype(bool)


def saliency_panel(saliency: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """A map ``[H, W]`` as grey uint8 ``[H, W, 3]``, white at its ``percentile`` and above."""
    _check_map(saliency)
    grey = (normalise_map(saliency, percentile) * 255).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _check_map(saliency, shape: tuple[int, int] | None = None, name: str = "saliency") -> None:
    """``ValueError`` unless ``saliency`` is ``[H, W]`` (of ``shape``, when given)."""
    dims = np.shape(saliency)
    if len(dims) != 2:
        raise ValueError(f"{name} must be one map [H, W], got shape {list(dims)}")
    if shape is not None and dims != tuple(shape):
        raise ValueError(f"{name} must have the image's height and width {list(shape)}, got shape {list(dims)}")


def seeds_panel(image: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The image dimmed, foreground seeds in red and background seeds in blue.

    Args:
      image: ``[H, W]`` or ``[H, W, 3]``; uint8, or floats on the 0-1 or 0-255 scale.
      foreground: bool ``[H, W]``.
      background: bool ``[H, W]``.

    Returns:
      uint8 ``[H, W, 3]``.
    """
    out = _rgb(image) * 0.45
    out[_mask(foreground, "foreground", out.shape[:2])] = _FOREGROUND
    background = _mask(background, "background", out.shape[:2])
    out[background] = 0.5 * out[background] + 0.5 * _BACKGROUND
    return out.round().astype(np.uint8)


def mask_panel(image: np.ndarray, mask: np.ndarray, segmentation: np.ndarray | None = None) -> np.ndarray:
    """The image inside ``mask``; other GraphCut foreground half-dimmed, the rest dark.

    Args:
      image: ``[H, W]`` or ``[H, W, 3]``; uint8, or floats on the 0-1 or 0-255 scale.
      mask: bool ``[H, W]``, the object.
      segmentation: bool ``[H, W]``, all of GraphCut's foreground, or ``None``.

    Returns:
      uint8 ``[H, W, 3]``.
    """
    pixels = _rgb(image)
    out = pixels * 0.15
    if segmentation is not None:
        other = _mask(segmentation, "segmentation", out.shape[:2])
        out[other] = pixels[other] * 0.5
    keep = _mask(mask, "mask", out.shape[:2])
    out[keep] = pixels[keep]
    return out.round().astype(np.uint8)


def box_panel(image: np.ndarray, box, thickness: int | None = None) -> np.ndarray:
    """The image with the box ``x0, y0, x1, y1`` (exclusive ends) outlined in yellow.

    Args:
      image: ``[H, W]`` or ``[H, W, 3]``; uint8, or floats on the 0-1 or 0-255 scale.
      box: four finite numbers ``x0, y0, x1, y1`` in pixels (clipped to the image).
      thickness: the outline's width in pixels, an integer >= 1; ``None`` scales it
        with the image (1 pixel per 112).

    Returns:
      uint8 ``[H, W, 3]``.
    """
    if thickness is not None:
        thickness = _checks.check_int(thickness, "thickness", 1)
    try:
        values = np.asarray(box, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"box must be four numbers x0, y0, x1, y1, got {type(box).__name__}") from None
    if values.shape != (4,):
        raise ValueError(f"box must be four numbers x0, y0, x1, y1 (shape [4]), got shape {list(values.shape)}")
    if not np.isfinite(values).all():
        raise ValueError(f"box must be four finite numbers x0, y0, x1, y1, got {values.tolist()}")
    out = to_rgb_uint8(image, "image").copy()
    height, width = out.shape[:2]
    if not (values[0] < values[2] and values[1] < values[3]):
        raise ValueError(f"box must have x0 < x1 and y0 < y1, got {values.tolist()}")
    if values[2] <= 0 or values[3] <= 0 or values[0] >= width or values[1] >= height:
        raise ValueError(f"box must overlap the {width} x {height} image, got {values.tolist()}")
    x0, y0, x1, y1 = (int(v) for v in values)
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
      image: the ``[H, W, 3]`` image the pipeline ran on: uint8, or floats on the
        0-1 or 0-255 scale (the library's pixel rule).
      saliency: its ``[H, W]`` map.
      found: the pipeline's :class:`~saliency_jax.localisation.Localisation`.
    """
    if not all(hasattr(found, field) for field in ("seeds", "mask", "segmentation", "box")):
        raise ValueError(f"found must be the pipeline's Localisation (seeds, mask, segmentation, box), "
                         f"got {type(found).__name__}")
    _check_map(saliency, np.shape(image)[:2])
    return [
        to_rgb_uint8(image, "image"),
        saliency_panel(saliency),
        seeds_panel(image, found.seeds.foreground, found.seeds.background),
        mask_panel(image, found.mask, found.segmentation),
        box_panel(image, found.box),
    ]


def title_above(figure: Figure, text: str, fontsize: float = 9) -> None:
    """A title for the whole figure, above its panels' own titles (a centred suptitle overlaps them).

    It sits on the figure's top edge, outside it; figures saved with a tight box
    (:func:`saliency_jax.io.save_figure`) grow to take it in.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()  # where the panels' titles end, in pixels
    height = figure.bbox.height
    top = max([ax.title.get_window_extent(renderer).y1 for ax in figure.axes if ax.get_title()] + [height])
    figure.suptitle(text, fontsize=fontsize, y=(top + 2) / height, va="bottom")


def localisation_titles(found) -> list[str]:
    """:data:`PANEL_TITLES` for ``found``, the mask's title saying when it came from the seeds."""
    titles = list(PANEL_TITLES)
    if getattr(found, "from_seeds", False):
        titles[3] = SEED_MASK_TITLE
    return titles


def saliency_figure(photo: np.ndarray, saliency: np.ndarray, title: str = "") -> Figure:
    """The photo beside its saliency map, as in the paper's Figure 2.

    Args:
      photo: ``[H, W, 3]``: uint8, or floats on the 0-1 scale (all within [0, 1]) or
        the 0-255 scale (the library's pixel rule, :func:`saliency_jax.io.load_image`).
      saliency: ``[H, W]``.
      title: text above the pair.
    """
    pixels = to_rgb_uint8(photo, "photo")
    _check_map(saliency)
    shown = normalise_map(saliency)
    fig = Figure(figsize=(6.4, 3.4))
    axes = fig.subplots(1, 2)
    axes[0].imshow(pixels)
    axes[1].imshow(shown, cmap="gray", vmin=0.0, vmax=1.0)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


MAX_ASPECT = 4.0  # the tallest row of image_grid, in cells


def _real_array(value, name: str) -> np.ndarray:
    """``value`` as an array of real numbers (bool, integer or float), else a ``ValueError`` naming ``name``."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # a ragged sequence
        raise ValueError(f"{name} must be an array of real numbers, got a ragged {type(value).__name__}") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def _grid_image(image, index: int) -> np.ndarray:
    """An image of :func:`image_grid`: a map ``[H, W]`` as it is, colours by the library's pixel rule."""
    array = _real_array(image, f"images[{index}]")
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[-1] == 3:
        return to_rgb_uint8(array, f"images[{index}]")  # floats over 1 on the 0-255 scale, not clipped white
    raise ValueError(f"images[{index}] must be [H, W] (a map) or [H, W, 3], got shape {list(array.shape)}")


def image_grid(images, titles, columns: int, cell: float = 2.2, cmap=None) -> Figure:
    """A grid of images with a title under each, for the paper's figure layouts.

    Args:
      images: a sequence of ``[H, W, 3]`` uint8 or ``[H, W]`` float arrays.
      titles: one string per image.
      columns: images per row, an integer >= 1.
      cell: inches per image across (a row is as tall as its tallest image at that width, at
        most :data:`MAX_ASPECT` cells; a taller image is drawn narrower), > 0.
      cmap: colormap for 2-D images.

    Raises:
      ValueError: for titles whose count is not the images' (``zip`` would
        silently drop the images without one), or a bad ``columns`` or ``cell``.
    """
    columns = _checks.check_int(columns, "columns", 1)
    cell = _checks.check_number(cell, "cell", low=0.0, open_low=True)
    if isinstance(images, (str, bytes)) or not hasattr(images, "__iter__"):
        raise ValueError(f"images must be a sequence of images, got {type(images).__name__}")
    if not hasattr(titles, "__iter__"):
        raise ValueError(f"titles must be a sequence of strings, one per image, got {type(titles).__name__}")
    images = [_grid_image(image, i) for i, image in enumerate(images)]
    if isinstance(titles, (str, bytes)):
        raise ValueError(f"titles must be a sequence of strings, one per image, got a single {type(titles).__name__}")
    titles = list(titles)
    if len(titles) != len(images):
        raise ValueError(f"titles must have one string per image: {len(images)} for {len(images)} images, "
                         f"got {len(titles)}")
    columns = min(columns, max(1, len(images)))  # 10**4 columns for one image once built 10**4 axes
    rows = max(1, -(-len(images) // columns))
    # Each row as tall as its tallest image at the cell's width: landscape photos leave no empty bands.
    # At most MAX_ASPECT cells tall: a 5000 x 1 image is drawn narrower, not on an 11,000-inch canvas.
    aspects = [min(shape[0] / shape[1], MAX_ASPECT) if len(shape) >= 2 and min(shape[:2]) > 0 else 1.0
               for shape in (np.shape(image) for image in images)]
    heights = [max(aspects[r * columns:(r + 1) * columns], default=1.0) for r in range(rows)]
    fig = Figure(figsize=(cell * columns, cell * sum(heights) + 0.3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(image, cmap=cmap)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig

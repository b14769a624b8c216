"""Drawing the cluttered-objects images: NumPy only, deterministic per ``(seed, split, index)``.

:mod:`saliency_jax.data.cluttered_objects` describes the dataset and wraps this
as a TFDS builder. This module imports neither JAX nor TFDS (the argument checks
are imported when a :class:`ClutterConfig` is made), so the worker processes that
render a split start in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import NamedTuple

import numpy as np

SHAPES = ("disc", "square", "triangle", "cross", "ring", "star", "arrow", "crescent")

_SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}


# Bounds that keep drawing one image within seconds: an image at the defaults takes ~4 ms on one
# core, a clutter item ~0.3 ms plus its window's sub-pixels, and the worst the bounds allow (16
# image-filling clutter items at 1024 x 1024) ~6 s.
MAX_IMAGE_SIZE = 1024
MAX_SUPERSAMPLE = 8
MAX_SUBPIXELS_PER_SIDE = 2048  # image_size * supersample: the object's window holds up to 2048**2 sub-pixels
MAX_CLUTTER_SIZE = 4.0  # a clutter item up to four times the largest object (larger ones just fill the image)
MAX_CLUTTER = 1024  # items per image, whatever the image size: each costs ~0.3 ms however small
CLUTTER_COVER = 16  # the clutter items' windows cover the image at most 16 times over
MAX_TEXTURE_CONTRAST = 255.0  # the full 0-255 scale; beyond, every texture saturates
MAX_SPLIT_BYTES = 2**30  # render_split's images and masks, held in memory


@dataclasses.dataclass(frozen=True)
class ClutterConfig:
    """How an image is drawn.

    Every field is checked when the config is made: integers where the field is a
    count or a pixel size (NumPy integers are fine, floats and booleans are not),
    finite numbers in range elsewhere, and bounds (the ``MAX_*`` constants of this
    module, and :meth:`max_clutter`) that keep drawing one image within seconds.
    Fields are stored as plain ``int``, ``float`` and tuples, so equal configs have
    equal ``repr``.

    Attributes:
      image_size: side of the square image, pixels, in ``[16, MAX_IMAGE_SIZE]``.
      num_classes: ``K``, the first ``K`` of :data:`SHAPES`, in ``[2, len(SHAPES)]``.
      object_size: (min, max) object diameter, integer pixels, ``4 <= min <= max <= image_size``.
      num_clutter: (min, max) number of clutter items, inclusive, integers,
        ``0 <= min <= max <= max_clutter()``.
      clutter_size: (min, max) clutter diameter as a fraction of ``object_size[1]``,
        ``0 < min <= max <= MAX_CLUTTER_SIZE``, and the smallest item at least one pixel across.
      fragment_fraction: share of clutter items that are cut class shapes, in ``[0, 1]``.
      texture_contrast: amplitude of the background colour texture, 0-255 scale, in
        ``[0, MAX_TEXTURE_CONTRAST]``.
      supersample: sub-pixels per side used to anti-alias edges, in ``[1, MAX_SUPERSAMPLE]``
        with ``image_size * supersample <= MAX_SUBPIXELS_PER_SIDE``.
    """

    image_size: int = 64
    num_classes: int = 6
    object_size: tuple[int, int] = (20, 36)
    num_clutter: tuple[int, int] = (2, 5)
    clutter_size: tuple[float, float] = (0.3, 0.55)
    fragment_fraction: float = 0.25
    texture_contrast: float = 40.0
    supersample: int = 2

    def __post_init__(self):
        from saliency_jax._checks import check_int, check_number  # here: render workers never import JAX

        def store(name, value):
            object.__setattr__(self, name, value)

        size = check_int(self.image_size, "image_size", 16, MAX_IMAGE_SIZE)
        store("image_size", size)
        store("num_classes", check_int(self.num_classes, "num_classes", 2, len(SHAPES)))
        supersample = check_int(self.supersample, "supersample", 1, MAX_SUPERSAMPLE)
        if size * supersample > MAX_SUBPIXELS_PER_SIDE:
            raise ValueError(
                f"supersample must be <= {MAX_SUBPIXELS_PER_SIDE // size} for image_size {size} "
                f"(image_size * supersample <= {MAX_SUBPIXELS_PER_SIDE} sub-pixels per side), got {supersample}"
            )
        store("supersample", supersample)
        # NaN would paint every pixel black.
        store("texture_contrast", check_number(self.texture_contrast, "texture_contrast", low=0.0,
                                               high=MAX_TEXTURE_CONTRAST))
        store("fragment_fraction", check_number(self.fragment_fraction, "fragment_fraction", low=0.0, high=1.0))

        pairs = {}
        for name in ("object_size", "num_clutter", "clutter_size"):
            pair = getattr(self, name)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"{name} must be a (min, max) pair, got {pair!r}")
            if name == "clutter_size":
                pairs[name] = tuple(check_number(value, f"{name} entries") for value in pair)
                continue
            for value in pair:  # a count or pixel size: 2.5 items is a mistake, not a request
                if not isinstance(value, numbers.Integral):
                    check_number(value, f"{name} entries")  # says so if it is no number at all
            least = 4 if name == "object_size" else 0
            pairs[name] = tuple(check_int(value, f"{name} entries", least) for value in pair)

        lo, hi = pairs["object_size"]
        if not 4 <= lo <= hi <= size:
            raise ValueError(f"object_size must satisfy 4 <= min <= max <= image_size ({size}), got {(lo, hi)}")
        store("object_size", (lo, hi))

        lo, hi = pairs["clutter_size"]
        if not 0 < lo <= hi <= MAX_CLUTTER_SIZE:
            raise ValueError(f"clutter_size must satisfy 0 < min <= max <= {MAX_CLUTTER_SIZE}, got {(lo, hi)}")
        if lo * self.object_size[1] < 1:
            raise ValueError(
                f"clutter_size min must be >= 1 / object_size max = {1 / self.object_size[1]:.4g} (the smallest "
                f"clutter item at least one pixel across), got {lo}"
            )
        store("clutter_size", (lo, hi))

        lo, hi = pairs["num_clutter"]
        most = self.max_clutter()
        if not 0 <= lo <= hi <= most:
            side = self._clutter_window()
            raise ValueError(
                f"num_clutter must satisfy 0 <= min <= max <= {most}, got {(lo, hi)}: at most {MAX_CLUTTER} items, "
                f"and for image_size {size}, object_size max {self.object_size[1]} and clutter_size max "
                f"{self.clutter_size[1]}, items whose drawing windows ({side} x {side} pixels) cover the image "
                f"at most {CLUTTER_COVER} times over"
            )
        store("num_clutter", (lo, hi))

    def _clutter_window(self) -> int:
        """Side, pixels, of the window drawn for the largest clutter item (see ``_coverage``)."""
        diameter = self.object_size[1] * self.clutter_size[1]
        return min(self.image_size, int(np.ceil(1.5 * diameter)) + 2)

    def max_clutter(self) -> int:
        """The largest ``num_clutter`` this config allows.

        Drawing an item costs a fixed ~0.3 ms plus work in proportion to its
        window's sub-pixels, so both the count (``MAX_CLUTTER``) and the windows'
        total area (``CLUTTER_COVER`` times the image's) are bounded: the latter
        ties the count to the image area and the clutter size.
        """
        return min(MAX_CLUTTER, CLUTTER_COVER * self.image_size**2 // self._clutter_window() ** 2)

    @property
    def class_names(self) -> tuple[str, ...]:
        return SHAPES[: self.num_classes]


class Example(NamedTuple):
    """One rendered example.

    Attributes:
      image: uint8 ``[S, S, 3]``.
      label: the object's class id, ``0 <= label < K``.
      mask: bool ``[S, S]``, the object's visible pixels (evaluation only).
      box: int32 ``[4]``, ``(x0, y0, x1, y1)``, exclusive ends (evaluation only).
    """

    image: np.ndarray
    label: int
    mask: np.ndarray
    box: np.ndarray


# ----------------------------------------------------------------------------
# Shapes in a unit frame: (u, v) with the shape inside the unit disc.


def _regular_polygon(n: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    t = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


_CROSS = 0.34 * np.array(
    [[1, 3], [1, 1], [3, 1], [3, -1], [1, -1], [1, -3], [-1, -3], [-1, -1], [-3, -1], [-3, 1], [-1, 1], [-1, 3]],
    dtype=np.float64,
) / 1.05
_ARROW = np.array(
    [[-0.95, -0.25], [0.15, -0.25], [0.15, -0.7], [0.95, 0.0], [0.15, 0.7], [0.15, 0.25], [-0.95, 0.25]]
)
_POLYGONS = {
    "square": _regular_polygon(4, 1.0, np.pi / 4),
    "triangle": _regular_polygon(3, 1.0, -np.pi / 2) + np.array([0.0, 0.2]),
    "cross": _CROSS,
    "star": _star(),
    "arrow": _ARROW,
}


def _inside_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule: is each point (u, v) inside the closed polygon?"""
    inside = np.zeros(u.shape, bool)
    x0, y0 = vertices[-1]
    for x1, y1 in vertices:
        crosses = (y1 > v) != (y0 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (u < x_at)
        x0, y0 = x1, y1
    return inside


def _shape_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    if shape == "disc":
        return r2 <= 1.0
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if shape == "crescent":
        return (r2 <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.8**2)
    if shape == "blob":
        raise AssertionError("blobs are polygons")
    return _inside_polygon(u, v, _POLYGONS[shape])


def _coverage(
    inside_fn, centre: np.ndarray, radius: float, angle: float, size: int, supersample: int
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Fraction of each pixel covered by a shape placed at ``centre``.

    Only the window around the shape is computed (every shape lies within 1.5
    units of its centre).

    Returns:
      float32 ``[h, w]`` coverage of the window, and the window's (rows, cols)
      slices into the ``[S, S]`` image.
    """
    reach = 1.5 * radius
    y0, x0 = (max(0, int(np.floor(c - reach))) for c in centre)
    y1, x1 = (min(size, int(np.ceil(c + reach)) + 1) for c in centre)
    window = (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)))
    h, w = max(0, y1 - y0), max(0, x1 - x0)
    offsets = (np.arange(supersample) + 0.5) / supersample
    ys = (np.arange(y0, y0 + h)[:, None] + offsets[None, :]).reshape(-1)  # sub-pixel centres
    xs = (np.arange(x0, x0 + w)[:, None] + offsets[None, :]).reshape(-1)
    c, s = np.cos(angle), np.sin(angle)
    dx = ((xs - centre[1]) / radius)[None, :]
    dy = ((ys - centre[0]) / radius)[:, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    covered = inside_fn(u, v).astype(np.float32)
    return covered.reshape(h, supersample, w, supersample).mean(axis=(1, 3)), window


# ----------------------------------------------------------------------------
# Colours and textures.


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour (HSV with S, V in [0.45, 1]) as float RGB in 0-255."""
    h = rng.uniform(0.0, 6.0)
    s, v = rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0)
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return 255.0 * (np.array(rgb) + (v - c))


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a ``[g, g, C]`` grid to ``[size, size, C]``."""
    g = grid.shape[0]
    t = np.linspace(0, g - 1, size)
    i0 = np.clip(np.floor(t).astype(int), 0, g - 2)
    w = (t - i0)[:, None]
    rows = grid[i0] * (1 - w)[..., None] + grid[i0 + 1] * w[..., None]
    cols = rows[:, i0] * (1 - w.T)[..., None] + rows[:, i0 + 1] * w.T[..., None]
    return cols


def _background(rng: np.random.Generator, config: ClutterConfig) -> np.ndarray:
    """Multi-scale colour noise around a random base colour, plus faint stripes."""
    size = config.image_size
    base = 0.5 * _random_colour(rng) + 0.5 * rng.uniform(60, 200, 3)
    image = np.broadcast_to(base, (size, size, 3)).astype(np.float64)
    for cells, weight in ((3, 1.0), (6, 0.6), (12, 0.35)):
        image = image + weight * config.texture_contrast * _upsample(rng.uniform(-1, 1, (cells, cells, 3)), size)
    yy, xx = np.mgrid[0:size, 0:size]
    theta, period = rng.uniform(0, np.pi), rng.uniform(4.0, 12.0)
    stripes = np.sin(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period)
    image = image + 0.25 * config.texture_contrast * stripes[..., None] * rng.uniform(-1, 1, 3)
    image = image + rng.normal(0, 6.0, image.shape)  # pixel grain
    return image


def _paint(
    image: np.ndarray,
    alpha: np.ndarray,
    window: tuple[slice, slice],
    colour: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Alpha-blends a flat colour with a gentle shading gradient into ``image[window]`` in place."""
    size = image.shape[0]
    yy = np.arange(size)[window[0]][:, None] / size - 0.5
    xx = np.arange(size)[window[1]][None, :] / size - 0.5
    shade = 1.0 + 0.25 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx)
    fill = colour * shade[..., None] + rng.normal(0, 4.0, alpha.shape + (3,))
    a = alpha[..., None]
    region = image[window]
    region *= 1 - a
    region += a * fill


def _clutter_item(rng: np.random.Generator, config: ClutterConfig, image: np.ndarray) -> None:
    size = config.image_size
    radius = 0.5 * config.object_size[1] * rng.uniform(*config.clutter_size)
    centre = rng.uniform(0, size, 2)
    angle = rng.uniform(0, 2 * np.pi)
    kind = rng.uniform()
    if kind < config.fragment_fraction:
        # A class shape cut by a half-plane through its middle third: never whole.
        shape = config.class_names[rng.integers(config.num_classes)]
        cut_angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3)
        n = np.array([np.cos(cut_angle), np.sin(cut_angle)])

        def inside(u, v, shape=shape, n=n, offset=offset):
            return _shape_inside(shape, u, v) & (n[0] * u + n[1] * v < offset)

    elif kind < config.fragment_fraction + 0.5 * (1 - config.fragment_fraction):
        # An irregular blob: a star-shaped polygon with random radii.
        k = rng.integers(5, 10)
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(0.35, 1.0, k)
        vertices = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)

        def inside(u, v, vertices=vertices):
            return _inside_polygon(u, v, vertices)

    else:
        # A thick stroke, possibly bent.
        width = rng.uniform(0.12, 0.3)
        bend = rng.uniform(-0.8, 0.8)

        def inside(u, v, width=width, bend=bend):
            return (np.abs(u) <= 1.0) & (np.abs(v - bend * (u * u - 0.33)) <= width)

    alpha, window = _coverage(inside, centre, radius, angle, size, config.supersample)
    _paint(image, alpha, window, _random_colour(rng), rng)


def render_example(rng: np.random.Generator, config: ClutterConfig | None = None) -> Example:
    """Draws one image: textured background, clutter, then the object on top.

    Args:
      rng: the random generator (consumed).
      config: how to draw (``None``: ``ClutterConfig()``).

    Returns:
      :class:`Example`; ``image`` uint8 ``[S, S, 3]``, ``mask`` bool ``[S, S]``,
      ``box`` int32 ``[4]``.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator (e.g. example_rng(seed, split, index)), "
                         f"got {type(rng).__name__}")
    config = _clutter_config(config)
    size = config.image_size
    label = int(rng.integers(config.num_classes))
    image = _background(rng, config)
    for _ in range(rng.integers(config.num_clutter[0], config.num_clutter[1] + 1)):
        _clutter_item(rng, config, image)

    shape = config.class_names[label]
    radius = 0.5 * rng.uniform(config.object_size[0], config.object_size[1])
    # The centre stays one radius from the border. Every shape but the triangle
    # (1.11 radii) and the cross (1.02) lies within one radius of it, so about one
    # image in a thousand loses a border pixel of its object; the mask and box
    # describe the visible object.
    centre = rng.uniform(radius, size - radius, 2)
    angle = 0.0 if shape == "disc" else rng.uniform(0, 2 * np.pi)
    alpha, window = _coverage(
        lambda u, v: _shape_inside(shape, u, v), centre, radius, angle, size, config.supersample
    )
    _paint(image, alpha, window, _random_colour(rng), rng)

    mask = np.zeros((size, size), bool)
    mask[window] = alpha >= 0.5
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.int32)
    return Example(np.clip(np.rint(image), 0, 255).astype(np.uint8), label, mask, box)


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of example ``index`` of ``split``: independent of the others."""
    if not isinstance(split, str) or split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {tuple(_SPLIT_IDS)}, got {split!r}")
    seed, index = _natural(seed, "seed"), _natural(index, "index")
    return np.random.default_rng([seed, _SPLIT_IDS[split], index])


def _clutter_config(config) -> ClutterConfig:
    """``config``, ``None`` meaning ``ClutterConfig()``; anything else is refused (a dict has no fields)."""
    if config is None:
        return ClutterConfig()
    if not isinstance(config, ClutterConfig):
        raise ValueError(f"config must be a ClutterConfig or None, got {type(config).__name__}")
    return config


def _natural(value, name: str) -> int:
    """``value`` if it is a plain ``int >= 0`` (a worker's task, checked without importing JAX), else
    what ``check_int`` makes of it (a NumPy integer) or says of it (anything else)."""
    if type(value) is int and value >= 0:
        return value
    from saliency_jax._checks import check_int

    return check_int(value, name, 0)


def render_split(
    split: str, num_examples: int, config: ClutterConfig | None = None, *, seed: int = 0
) -> Example:
    """Renders a whole split into stacked arrays (for tests and small in-memory use).

    Args:
      split: ``"train"``, ``"validation"`` or ``"test"``.
      num_examples: ``N``, at most what fits in ``MAX_SPLIT_BYTES`` of images and masks
        (65536 at the default 64 x 64); the :class:`ClutteredObjects` builder writes
        larger splits to disk.
      config: how to draw (``None``: ``ClutterConfig()``).
      seed: dataset seed; example ``i`` is the same whatever ``num_examples``.

    Returns:
      :class:`Example` with a leading ``[N]`` axis on every field (``label`` int32 ``[N]``).
    """
    from saliency_jax._checks import check_int

    config = _clutter_config(config)
    example_rng(seed, split, 0)  # checks split and seed before anything is drawn
    size = config.image_size
    most = MAX_SPLIT_BYTES // (4 * size * size)  # uint8 RGB image and bool mask per example
    num_examples = check_int(num_examples, "num_examples", 1)
    if num_examples > most:
        raise ValueError(
            f"num_examples must be an integer >= 1 and <= {most} for image_size {size} (render_split holds the "
            f"whole split in memory, at most {MAX_SPLIT_BYTES // 2**20} MiB of images and masks; the "
            f"ClutteredObjects builder writes larger splits to disk), got {num_examples}"
        )
    images = np.empty((num_examples, size, size, 3), np.uint8)
    labels = np.empty(num_examples, np.int32)
    masks = np.empty((num_examples, size, size), bool)
    boxes = np.empty((num_examples, 4), np.int32)
    for i in range(num_examples):
        images[i], labels[i], masks[i], boxes[i] = render_example(example_rng(seed, split, i), config)
    return Example(images, labels, masks, boxes)


def render_job(job) -> dict[str, np.ndarray]:
    """``render_example`` of ``(seed, split, index, clutter)``, as a dict (a worker process's task)."""
    seed, split, index, clutter = job
    return render_example(example_rng(seed, split, index), clutter)._asdict()

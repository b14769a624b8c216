"""A localisation benchmark with exact ground truth, generated from bundled photos.

Real objects cut from the photos that ship with scikit-image and scikit-learn (a
cat's head, an espresso cup, a dahlia, a pagoda, an astronaut's face, the
scikit-image logo, a horse silhouette filled with fur) are pasted at random
places and scales onto real textures (brick, grass, gravel, moon surface,
tissue, deep field). The paste is hard-edged, so the object mask and its box are
known exactly. Nothing is downloaded; the same seed gives the same images.

Beside the benchmark: the box baselines (centre box, whole image, a box around
the thresholded saliency map), a simulated speckled saliency map for tests and
timing without a model, the per-method scores, and a table builder.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from saliency_jax import _checks
from saliency_jax.evaluation import metrics
from saliency_jax.localisation.components import bounding_box, largest_component


class LocalisationBenchmark(NamedTuple):
    """Images with one object each, and its exact extent.

    Attributes:
      images: uint8 ``[N, S, S, 3]``.
      masks: bool ``[N, S, S]``, the object's pixels.
      boxes: int64 ``[N, 4]``, ``x0, y0, x1, y1`` around ``masks`` (exclusive ends).
      objects: ``N`` object names (e.g. ``"cat"``).
      backgrounds: ``N`` texture names.
    """

    images: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    objects: tuple[str, ...]
    backgrounds: tuple[str, ...]


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0


def _crop_to(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = bounding_box(mask)
    return rgb[y0:y1, x0:x1], mask[y0:y1, x0:x1]


def _photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    return getattr(skimage.data, name)()


# name: (photo, ellipse centre y, x, radius y, x) in the photo's pixels.
_ELLIPSE_OBJECTS = {
    "cat": ("chelsea", 150, 170, 150, 170),
    "espresso": ("coffee", 230, 300, 175, 245),
    "astronaut": ("astronaut", 112, 215, 88, 72),
    "dahlia": ("flower", 180, 300, 112, 112),
    "pagoda": ("china", 215, 210, 195, 130),
}
OBJECT_NAMES = (*_ELLIPSE_OBJECTS, "logo", "horse")
BACKGROUND_NAMES = ("brick", "grass", "gravel", "moon", "immunohistochemistry", "hubble_deep_field")


@functools.lru_cache(maxsize=None)
def _object(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The object's RGB uint8 ``[h, w, 3]`` and bool mask ``[h, w]``, tightly cropped."""
    if name in _ELLIPSE_OBJECTS:
        photo, cy, cx, ry, rx = _ELLIPSE_OBJECTS[name]
        rgb = _photo(photo)
        return _crop_to(rgb, _ellipse(rgb.shape[:2], cy, cx, ry, rx))
    if name == "logo":
        from skimage.morphology import convex_hull_image

        rgb = np.ascontiguousarray(_photo("logo")[..., :3])
        # The logo is an ellipse on an opaque white square: its hull of non-white pixels.
        return _crop_to(rgb, convex_hull_image(rgb.min(axis=-1) < 230))
    if name == "horse":
        import skimage.data

        silhouette = ~skimage.data.horse()  # the horse is False (black) in the file
        fur = _photo("chelsea")[:, :300]  # the cat's coat, resized to the horse
        fur = np.asarray(Image.fromarray(fur).resize(silhouette.shape[::-1], Image.BILINEAR))
        return _crop_to(fur, silhouette)
    raise ValueError(f"object must be one of {OBJECT_NAMES}, got {name!r}")


@functools.lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    if name not in BACKGROUND_NAMES:
        raise ValueError(f"background must be one of {BACKGROUND_NAMES}, got {name!r}")
    texture = _photo(name)
    return texture if texture.ndim == 3 else np.repeat(texture[..., None], 3, axis=-1)


def _background(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of a texture, flipped at random; grey textures get a random tint."""
    texture = _texture(name)
    side = int(rng.integers(size, min(texture.shape[:2]) + 1))
    y = int(rng.integers(0, texture.shape[0] - side + 1))
    x = int(rng.integers(0, texture.shape[1] - side + 1))
    crop = texture[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR), np.float64)
    if _photo_is_grey(name):
        crop = crop * rng.uniform(0.55, 1.15, size=3)
    return np.clip(crop, 0, 255)


def _photo_is_grey(name: str) -> bool:
    return name in ("brick", "grass", "gravel", "moon")


def _fraction(value, name: str, *, open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a ``float`` in ``[0, 1]`` (ends open as asked), else ``ValueError`` naming ``name``."""
    wanted = f"{name} must be in {'(' if open_low else '['}0, 1{')' if open_high else ']'} (a finite number)"
    try:
        number = _checks.check_number(value, name)
    except ValueError:
        raise ValueError(f"{wanted}, got {value!r}") from None
    if not 0 <= number <= 1 or (open_low and number == 0) or (open_high and number == 1):
        raise ValueError(f"{wanted}, got {number:g}")
    return number


def _position(position) -> tuple[float, float]:
    """``position`` as two fractions ``(fy, fx)`` in ``[0, 1]``, else ``ValueError``."""
    wanted = "position must be two fractions (fy, fx), each in [0, 1]"
    try:
        values = tuple(position)
        if len(values) != 2:
            raise ValueError
        return _fraction(values[0], "position"), _fraction(values[1], "position")
    except (TypeError, ValueError):
        raise ValueError(f"{wanted}, got {position!r}") from None


def _check_rng(rng) -> np.random.Generator:
    """``rng``, or seed 0's generator for ``None``; anything else is refused (it has no ``integers``)."""
    if rng is None:
        return np.random.default_rng(0)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)) or None, "
                         f"got {type(rng).__name__}")
    return rng


def composite(
    object_name: str,
    background_name: str,
    *,
    size: int = 224,
    scale: float = 0.5,
    position: tuple[float, float] = (0.5, 0.5),
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pastes one object onto one texture.

    Args:
      object_name: one of :data:`OBJECT_NAMES`.
      background_name: one of :data:`BACKGROUND_NAMES`.
      size: side of the square image.
      scale: the object's longer side as a fraction of ``size``, in ``(0, 1]``.
      position: where the object's box sits, ``(fy, fx)`` in ``[0, 1]``: 0 = at the
        top/left edge, 1 = at the bottom/right edge.
      rng: randomness of the background crop and tint (``None``: seed 0).

    Returns:
      ``(image, mask)``: uint8 ``[size, size, 3]`` and bool ``[size, size]``.
    """
    scale = _fraction(scale, "scale", open_low=True)
    position = _position(position)
    size = _checks.check_int(size, "size", 8)
    rng = _check_rng(rng)
    rgb, mask = _object(object_name)
    image = _background(background_name, size, rng)
    factor = scale * size / max(mask.shape)
    height, width = max(1, round(mask.shape[0] * factor)), max(1, round(mask.shape[1] * factor))
    rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
    small = np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
    y = round(position[0] * (size - height))
    x = round(position[1] * (size - width))
    full = np.zeros((size, size), bool)
    full[y : y + height, x : x + width] = small
    image[y : y + height, x : x + width][small] = rgb[small]
    return np.round(image).astype(np.uint8), full


def make_benchmark(
    num_images: int = 42,
    *,
    size: int = 224,
    seed: int = 0,
    scale_range: tuple[float, float] = (0.35, 0.7),
) -> LocalisationBenchmark:
    """The generated benchmark: every object on every texture in turn, placed at random.

    Image ``i`` shows object ``i % 7`` on texture ``(i // 7) % 6`` (the first 42
    images cover every pair once), at a uniformly random scale in ``scale_range``
    and a uniformly random position fully inside the image.

    Args:
      num_images: ``N``.
      size: image side ``S`` (224 for the models).
      seed: the random state; the same seed gives the same benchmark.
      scale_range: bounds of the object's longer side as a fraction of ``size``.

    Returns:
      :class:`LocalisationBenchmark`.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    size = _checks.check_int(size, "size", 8)
    try:
        low, high = (_checks.check_number(v, "scale_range") for v in scale_range)
    except (TypeError, ValueError):  # not two finite numbers
        low = high = float("nan")
    if not 0 < low <= high <= 1:
        raise ValueError(f"scale_range must satisfy 0 < low <= high <= 1, got {scale_range!r}")
    rng = np.random.default_rng(seed)
    images, masks, objects, backgrounds = [], [], [], []
    for i in range(num_images):
        object_name = OBJECT_NAMES[i % len(OBJECT_NAMES)]
        background_name = BACKGROUND_NAMES[(i // len(OBJECT_NAMES)) % len(BACKGROUND_NAMES)]
        scale = float(rng.uniform(low, high))
        position = (float(rng.random()), float(rng.random()))
        image, mask = composite(object_name, background_name, size=size, scale=scale, position=position, rng=rng)
        images.append(image)
        masks.append(mask)
        objects.append(object_name)
        backgrounds.append(background_name)
    masks = np.stack(masks)
    return LocalisationBenchmark(
        images=np.stack(images),
        masks=masks,
        boxes=np.stack([bounding_box(m) for m in masks]),
        objects=tuple(objects),
        backgrounds=tuple(backgrounds),
    )


def simulated_saliency(
    masks: np.ndarray,
    *,
    seed: int = 0,
    coverage: float = 0.35,
    contrast: float = 4.0,
    distractors: int = 2,
) -> np.ndarray:
    """Speckled maps that point at part of each object, like plain gradient maps.

    A stand-in for a model's maps when testing and timing the pipeline: the map is
    ``|noise|`` times a smooth bump of height ``contrast`` over a random part of
    the object (Gaussian of width ``coverage`` times the object's size), plus
    weaker bumps at random background places.

    Args:
      masks: bool ``[N, H, W]`` object masks, ``N >= 1``, each non-empty.
      seed: random state.
      coverage: width of the object's bump relative to the object's box, ``> 0``.
      contrast: the bump's height over the background speckle, ``>= 0`` (0: speckle only).
      distractors: weaker bumps (half the height) placed off the object, an integer ``>= 0``.

    Returns:
      float32 ``[N, H, W]``, finite and non-negative.
    """
    masks = metrics._as_mask(masks, "masks")
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape [N, H, W], got shape {masks.shape}")
    if masks.shape[0] == 0:
        raise ValueError(f"masks must hold at least one mask (N >= 1), got shape {masks.shape}")
    coverage = _checks.check_number(coverage, "coverage", low=0.0, open_low=True)
    # The bump divides by 2 sigma**2 >= coverage**2 / 2 (the box is a pixel or more): a coverage whose
    # square underflows to 0 would divide 0 by 0 at the bump's centre.
    if not 2 * (0.5 * min(coverage, 1.0)) ** 2 > 0:
        raise ValueError(f"coverage must be a finite number > 0, got {coverage!r}, so small that the bump's "
                         f"width squared underflows to 0")
    contrast = _checks.check_number(contrast, "contrast", low=0.0)
    distractors = _checks.check_int(distractors, "distractors", 0)
    rng = np.random.default_rng(seed)
    height, width = masks.shape[1:]
    yy, xx = np.mgrid[:height, :width]
    maps = []
    # A huge coverage or contrast overflows to inf here: the maps are checked below.
    with np.errstate(over="ignore", invalid="ignore"):
        for mask in masks:
            if not mask.any():
                raise ValueError("masks must each contain at least one object pixel")
            x0, y0, x1, y1 = bounding_box(mask)
            ys, xs = np.nonzero(mask)
            k = int(rng.integers(len(ys)))
            sigma = coverage * 0.5 * max(x1 - x0, y1 - y0)
            bump = contrast * np.exp(-((yy - ys[k]) ** 2 + (xx - xs[k]) ** 2) / (2 * sigma**2))
            for _ in range(distractors):
                cy, cx = rng.integers(height), rng.integers(width)
                bump = bump + 0.5 * contrast * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)) * ~mask
            speckle = np.abs(rng.standard_normal((height, width)))
            maps.append(speckle * (1.0 + bump))
        maps = np.stack(maps).astype(np.float32)
    if not np.isfinite(maps).all():
        raise ValueError(f"contrast must be small enough for the maps to fit in float32, got {contrast:g}")
    return maps


# ----------------------------------------------------------------------------- multi-object scenes


class SceneObject(NamedTuple):
    """An object cut from a bundled photo, with the class the embedded model gives it.

    Attributes:
      photo: the bundled photo it is cut from.
      ellipse: ``(cy, cx, ry, rx)`` of the cut in the photo's pixels; the cut's
        edge is this ellipse, wobbled and feathered (see :func:`make_scenes`).
      label: EfficientNet-Lite0's top-1 ImageNet class of the object alone (the
        cut, feathered, centred at 80% of the side on mid-grey, 224x224).
      probability: that class's softmax probability there, as measured.
    """

    photo: str
    ellipse: tuple[float, float, float, float]
    label: int
    probability: float


# Objects the embedded EfficientNet-Lite0 recognises on their own, with the top-1
# class it gives each (measured with ``object_alone``; checked by a test that runs
# the model). Candidates it did not recognise are left out: the dahlia (sea
# anemone 0.14), the astronaut's face, the coins, the rocket (ballpoint 0.34).
SCENE_OBJECTS = {
    "cat": SceneObject("chelsea", (150, 170, 150, 170), 285, 0.881),  # Egyptian cat
    "espresso": SceneObject("coffee", (230, 300, 175, 245), 967, 0.427),  # espresso
    "motorcycle": SceneObject("motorcycle", (260, 370, 190, 330), 665, 0.351),  # moped
    "tripod": SceneObject("camera", (250, 250, 230, 180), 872, 0.848),  # the cameraman's tripod
    "pagoda": SceneObject("china", (200, 200, 200, 150), 442, 0.524),  # bell cote
}
SCENE_OBJECT_NAMES = tuple(SCENE_OBJECTS)
# name: (photo, rows, columns) of a region with none of the objects in it.
_PHOTO_BACKGROUNDS = {
    "lakeside": ("china", slice(0, 427), slice(400, 640)),
    "bokeh": ("flower", slice(0, 427), slice(0, 170)),
    "garage": ("motorcycle", slice(0, 200), slice(250, 741)),
    "table": ("coffee", slice(0, 140), slice(0, 600)),
}
SCENE_BACKGROUND_NAMES = (*_PHOTO_BACKGROUNDS, *BACKGROUND_NAMES)


@functools.lru_cache(maxsize=None)
def _scene_photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name == "camera":
        return np.repeat(skimage.data.camera()[..., None], 3, axis=-1)
    return _photo(name)


def _object_cut(name: str) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The object's photo cropped to its ellipse's box, and the ellipse in the crop's pixels."""
    if name not in SCENE_OBJECTS:
        raise ValueError(f"object must be one of {SCENE_OBJECT_NAMES}, got {name!r}")
    obj = SCENE_OBJECTS[name]
    photo = _scene_photo(obj.photo)
    cy, cx, ry, rx = obj.ellipse
    y0, y1 = max(0, int(np.floor(cy - ry))), min(photo.shape[0], int(np.ceil(cy + ry)))
    x0, x1 = max(0, int(np.floor(cx - rx))), min(photo.shape[1], int(np.ceil(cx + rx)))
    return photo[y0:y1, x0:x1], (cy - y0, cx - x0, ry, rx)


def _feathered_alpha(height: int, width: int, ellipse, *, feather: float, wobble: np.ndarray) -> np.ndarray:
    """Opacity ``[height, width]`` in ``[0, 1]`` of a wobbled ellipse with a soft edge.

    The edge lies where ``rho = 1`` with ``rho`` the ellipse radius divided by
    ``1 + sum_k a_k cos(k theta) + b_k sin(k theta)`` (``wobble`` holds ``a, b``
    for ``k = 2, 3, ...``); the opacity falls linearly from 1 to 0 across a band
    ``feather`` pixels wide centred on it.
    """
    cy, cx, ry, rx = ellipse
    yy, xx = np.mgrid[:height, :width] + 0.5
    dy, dx = (yy - cy) / ry, (xx - cx) / rx
    theta = np.arctan2(dy, dx)
    bend = 1.0 + sum(a * np.cos(k * theta) + b * np.sin(k * theta) for k, (a, b) in enumerate(wobble, start=2))
    rho = np.hypot(dy, dx) / bend
    pixels = (1.0 - rho) * min(ry, rx)  # ~ distance inside the edge, in pixels
    return np.clip(pixels / max(feather, 1e-6) + 0.5, 0.0, 1.0)


def object_alone(name: str, size: int = 224, fill: float = 0.8) -> np.ndarray:
    """The object as the model is asked about it alone: feathered, centred on mid-grey.

    Returns:
      uint8 ``[size, size, 3]``: the cut, its longer side ``fill * size``, on grey 128.
    """
    rgb, ellipse = _object_cut(name)
    factor = fill * size / max(rgb.shape[:2])
    height, width = max(1, round(rgb.shape[0] * factor)), max(1, round(rgb.shape[1] * factor))
    small = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR), np.float64)
    alpha = _feathered_alpha(height, width, tuple(v * factor for v in ellipse), feather=2.0,
                             wobble=np.zeros((0, 2)))[..., None]
    canvas = np.full((size, size, 3), 128.0)
    y, x = (size - height) // 2, (size - width) // 2
    canvas[y : y + height, x : x + width] = alpha * small + (1 - alpha) * canvas[y : y + height, x : x + width]
    return np.round(canvas).astype(np.uint8)


def _scene_background(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    if name in BACKGROUND_NAMES:
        return _background(name, size, rng)
    if name not in _PHOTO_BACKGROUNDS:
        raise ValueError(f"background must be one of {SCENE_BACKGROUND_NAMES}, got {name!r}")
    photo, rows, cols = _PHOTO_BACKGROUNDS[name]
    region = _scene_photo(photo)[rows, cols]
    side = int(rng.integers(min(region.shape[:2]) // 2, min(region.shape[:2]) + 1))
    y = int(rng.integers(0, region.shape[0] - side + 1))
    x = int(rng.integers(0, region.shape[1] - side + 1))
    crop = region[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR), np.float64)


class SceneBenchmark(NamedTuple):
    """Scenes of several objects, one entry per (scene, object): localise the object given its class.

    Entries of one scene share the image; ``images`` repeats it per entry so the
    benchmark scores like a :class:`LocalisationBenchmark`.

    Attributes:
      images: uint8 ``[T, S, S, 3]``, the scene of each target.
      masks: bool ``[T, S, S]``, the target's visible pixels (its opacity in the
        final image, after objects in front of it, is at least 0.5).
      boxes: int64 ``[T, 4]``, ``x0, y0, x1, y1`` around ``masks`` (exclusive ends).
      classes: int64 ``[T]``, the target's ImageNet class (its ``SceneObject.label``).
      objects: ``T`` object names.
      backgrounds: ``T`` background names (of the target's scene).
      scenes: int64 ``[T]``, the scene each target belongs to.
    """

    images: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    objects: tuple[str, ...]
    backgrounds: tuple[str, ...]
    scenes: np.ndarray


def scene(
    object_names: Sequence[str],
    background_name: str,
    *,
    size: int = 224,
    scales: Sequence[float],
    positions: Sequence[tuple[float, float]],
    rng: np.random.Generator | None = None,
    feather: float = 0.04,
    wobble: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """Blends objects, back to front, onto one background.

    Args:
      object_names: names from :data:`SCENE_OBJECT_NAMES`, drawn in this order
        (later ones in front).
      background_name: one of :data:`SCENE_BACKGROUND_NAMES` (photo regions and textures).
      size: image side.
      scales: each object's longer side as a fraction of ``size``, in ``(0, 1]``.
      positions: each object's box position ``(fy, fx)`` in ``[0, 1]`` (0 = top/left edge).
      rng: randomness of the background crop and the edge wobble (``None``: seed 0).
      feather: width of the soft edge as a fraction of the object's shorter radius.
      wobble: size of the edge's random low-frequency bends (0 = an exact ellipse).

    Returns:
      ``(image, masks)``: uint8 ``[size, size, 3]`` and bool ``[N, size, size]``,
      each object's visible pixels (its final opacity ``>= 0.5``).
    """
    for value, name in ((object_names, "object_names"), (scales, "scales"), (positions, "positions")):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            raise ValueError(f"{name} must be a sequence, one entry per object, got {value!r}")
    if not (len(object_names) == len(scales) == len(positions)) or not len(object_names):
        raise ValueError(
            f"object_names, scales and positions must have the same length >= 1, got "
            f"{len(object_names)}, {len(scales)} and {len(positions)}"
        )
    size = _checks.check_int(size, "size", 8)
    scales = [_fraction(scale, "scales", open_low=True) for scale in scales]
    positions = [_position(position) for position in positions]
    feather = _checks.check_number(feather, "feather", low=0.0)
    wobble = _checks.check_number(wobble, "wobble", low=0.0)
    rng = _check_rng(rng)
    image = _scene_background(background_name, size, rng)
    weights = []
    for name, scale, position in zip(object_names, scales, positions):
        rgb, ellipse = _object_cut(name)
        factor = scale * size / max(rgb.shape[:2])
        height, width = max(1, round(rgb.shape[0] * factor)), max(1, round(rgb.shape[1] * factor))
        small = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR), np.float64)
        ellipse = tuple(v * factor for v in ellipse)
        bends = rng.uniform(-wobble, wobble, size=(3, 2))
        alpha = _feathered_alpha(height, width, ellipse, feather=feather * min(ellipse[2:]), wobble=bends)
        y, x = round(position[0] * (size - height)), round(position[1] * (size - width))
        full = np.zeros((size, size))
        full[y : y + height, x : x + width] = alpha
        patch = np.zeros((size, size, 3))
        patch[y : y + height, x : x + width] = small
        image = full[..., None] * patch + (1 - full[..., None]) * image
        weights = [w * (1 - full) for w in weights] + [full]
    return np.round(image).astype(np.uint8), np.stack(weights) >= 0.5


def make_scenes(
    num_scenes: int = 20,
    *,
    objects_per_scene: tuple[int, int] = (2, 3),
    size: int = 224,
    seed: int = 0,
    scale_range: tuple[float, float] = (0.25, 0.6),
    min_visible: float = 0.7,
    backgrounds: Sequence[str] = SCENE_BACKGROUND_NAMES,
) -> SceneBenchmark:
    """Scenes of objects of different classes on real photo and texture backgrounds.

    Scene ``i`` draws ``objects_per_scene`` (inclusive range) distinct objects of
    :data:`SCENE_OBJECTS` at random, scales their longer side uniformly in
    ``scale_range`` of the side, and places them uniformly at random, fully
    inside the image, on background ``backgrounds[i % len(backgrounds)]``. A
    placement that hides more than ``1 - min_visible`` of an object behind later
    ones is drawn again. Every object of every scene is a target.

    Args:
      num_scenes: scenes ``S``; targets ``T`` = the sum of their object counts.
      objects_per_scene: ``(low, high)`` objects per scene; ``(1, 1)`` gives
        single-object composites.
      size: image side.
      seed: the random state; the same seed gives the same scenes.
      scale_range: bounds of an object's longer side as a fraction of ``size``.
      min_visible: fraction of each object's own area that stays visible.
      backgrounds: background names to cycle through.

    Returns:
      :class:`SceneBenchmark`.

    Raises:
      ValueError: naming the argument, for a bad argument, or when 50 placements
        of one scene's objects all break ``min_visible``.
    """
    if isinstance(num_scenes, bool) or not isinstance(num_scenes, int) or num_scenes < 1:
        raise ValueError(f"num_scenes must be an integer >= 1, got {num_scenes!r}")
    wanted = f"objects_per_scene must be two integers with 1 <= low <= high <= {len(SCENE_OBJECTS)}"
    try:
        low, high = (_checks.check_int(n, "objects_per_scene", 1) for n in objects_per_scene)
    except (TypeError, ValueError):
        raise ValueError(f"{wanted}, got {objects_per_scene!r}") from None
    if not low <= high <= len(SCENE_OBJECTS):
        raise ValueError(f"{wanted}, got {objects_per_scene}")
    size = _checks.check_int(size, "size", 8)
    seed = _checks.check_int(seed, "seed", 0)
    try:
        scale_low, scale_high = (_fraction(v, "scale_range", open_low=True) for v in scale_range)
    except (TypeError, ValueError):
        raise ValueError(f"scale_range must be two numbers with 0 < low <= high <= 1, got {scale_range!r}") from None
    if scale_low > scale_high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high <= 1, got {scale_range}")
    scale_range = (scale_low, scale_high)
    min_visible = _fraction(min_visible, "min_visible")
    if isinstance(backgrounds, (str, bytes)):
        raise ValueError(f"backgrounds must be a sequence of background names, got the string {backgrounds!r}")
    if not backgrounds:
        raise ValueError("backgrounds must name at least one background")
    rng = np.random.default_rng(seed)
    images, masks, classes, objects, names, scene_ids = [], [], [], [], [], []
    for i in range(num_scenes):
        count = int(rng.integers(low, high + 1))
        chosen = [SCENE_OBJECT_NAMES[k] for k in rng.choice(len(SCENE_OBJECTS), size=count, replace=False)]
        background = backgrounds[i % len(backgrounds)]
        state = rng.bit_generator.state
        for _attempt in range(50):
            scales = rng.uniform(*scale_range, size=count).tolist()
            positions = [tuple(rng.random(2).tolist()) for _ in range(count)]
            state = rng.bit_generator.state
            image, visible = scene(chosen, background, size=size, scales=scales, positions=positions,
                                   rng=np.random.default_rng(rng.integers(2**31)))
            alone = [
                scene([name], background, size=size, scales=[s], positions=[p],
                      rng=np.random.default_rng(0))[1][0].sum()
                for name, s, p in zip(chosen, scales, positions)
            ]
            if all(v.sum() >= min_visible * a for v, a in zip(visible, alone)):
                break
            rng.bit_generator.state = state
            rng.random()  # move on from the rejected draw
        else:
            raise ValueError(
                f"min_visible={min_visible} could not be met: 50 placements of {count} objects at scale_range "
                f"{scale_range} on a {size}-pixel scene (scene {i}) all hid more of an object; lower min_visible, "
                "the scales or objects_per_scene"
            )
        for name, mask in zip(chosen, visible):
            images.append(image)
            masks.append(mask)
            classes.append(SCENE_OBJECTS[name].label)
            objects.append(name)
            names.append(background)
            scene_ids.append(i)
    masks = np.stack(masks)
    return SceneBenchmark(
        images=np.stack(images),
        masks=masks,
        boxes=np.stack([bounding_box(m) for m in masks]),
        classes=np.asarray(classes, np.int64),
        objects=tuple(objects),
        backgrounds=tuple(names),
        scenes=np.asarray(scene_ids, np.int64),
    )


# ----------------------------------------------------------------------------- baselines


def whole_image_box(shape: tuple[int, ...]) -> np.ndarray:
    """The box of the whole ``[H, W, ...]`` image: ``[0, 0, W, H]``."""
    return np.array([0, 0, shape[1], shape[0]], dtype=np.int64)


def _image_sides(shape, minimum: int) -> tuple[int, int]:
    """``(H, W)`` of an ``(H, W, ...)`` shape, each an integer ``>= minimum``, else ``ValueError``."""
    wanted = f"shape must be (H, W, ...) with integers H, W >= {minimum}"
    try:
        sides = tuple(shape)[:2]
        if len(sides) != 2:
            raise ValueError
        return _checks.check_int(sides[0], "shape", minimum), _checks.check_int(sides[1], "shape", minimum)
    except (TypeError, ValueError):
        raise ValueError(f"{wanted}, got {shape!r}") from None


def centre_box(shape: tuple[int, ...], fraction: float = 0.5) -> np.ndarray:
    """A centred box whose sides are ``fraction`` of the image's sides.

    Args:
      shape: ``(H, W, ...)``, ``H, W >= 1``.
      fraction: in ``(0, 1]``; 1 is the whole image.

    Returns:
      int64 ``[4]``, ``x0, y0, x1, y1`` (exclusive ends).
    """
    height, width = _image_sides(shape, minimum=1)
    fraction = _fraction(fraction, "fraction", open_low=True)
    box_h, box_w = max(1, round(fraction * height)), max(1, round(fraction * width))
    y0, x0 = (height - box_h) // 2, (width - box_w) // 2
    return np.array([x0, y0, x0 + box_w, y0 + box_h], dtype=np.int64)


def saliency_threshold_box(
    saliency: np.ndarray, quantile: float = 0.95, *, largest_only: bool = False
) -> np.ndarray:
    """The box around a saliency map's pixels above its ``quantile``, without GraphCut.

    Args:
      saliency: ``[H, W]`` finite, real, non-empty map.
      quantile: in ``(0, 1)``; the paper's foreground seed threshold by default.
      largest_only: box only the largest 8-connected group of those pixels.

    Returns:
      int64 ``[4]``; for a constant map, the whole image.
    """
    saliency = metrics._as_map(saliency, "saliency")
    quantile = _fraction(quantile, "quantile", open_low=True, open_high=True)
    above = saliency > np.quantile(saliency, quantile)
    if not above.any():  # ties at the top (or a constant map)
        above = saliency >= saliency.max()
    if largest_only:
        above = largest_component(above, connectivity=2)
    return bounding_box(above)


def box_mask(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """bool ``[H, W]`` that is True inside ``box`` (``x0, y0, x1, y1``, exclusive ends).

    ``box`` is 4 finite numbers (fractions are truncated towards 0); ``shape`` is ``(H, W, ...)``.
    """
    try:
        values = np.asarray(box)
    except (TypeError, ValueError):  # a ragged nest of sequences
        values = np.asarray(None)
    if values.shape != (4,) or not (values.dtype == bool or np.issubdtype(values.dtype, np.integer)
                                    or np.issubdtype(values.dtype, np.floating)):
        raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {box!r}")
    if not np.isfinite(values).all():
        raise ValueError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    mask = np.zeros(_image_sides(shape, minimum=0), bool)
    x0, y0, x1, y1 = (int(v) for v in values)
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


# ----------------------------------------------------------------------------- scoring


class TableRow(NamedTuple):
    """One method's scores on a benchmark.

    Attributes:
      method: what made the boxes (``"graphcut"``, ``"centre box"``, ...).
      seed_map: the saliency map it used (``"-"`` for map-free baselines).
      box_iou: mean IoU of the predicted and true boxes.
      accuracy: fraction of images with box IoU ``>= 0.5`` (ILSVRC criterion).
      mask_iou: mean IoU of the predicted mask (a box's filled rectangle for box
        methods) and the true mask.
      pointing: pointing-game accuracy of the map (``nan`` without a map).
      seconds: seconds per image of the method (not counting the map).
    """

    method: str
    seed_map: str
    box_iou: float
    accuracy: float
    mask_iou: float
    pointing: float
    seconds: float


def score(
    method: str,
    seed_map: str,
    pred_boxes: np.ndarray,
    benchmark: LocalisationBenchmark,
    *,
    pred_masks: Sequence[np.ndarray] | None = None,
    saliency_maps: np.ndarray | None = None,
    seconds: float = float("nan"),
) -> TableRow:
    """Scores one method's boxes (and masks) against the benchmark's truth.

    Args:
      method: the row's method name.
      seed_map: the row's map name.
      pred_boxes: ``[N, 4]``.
      benchmark: the ground truth.
      pred_masks: ``N`` bool masks, or ``None`` to score the filled boxes.
      saliency_maps: ``[N, H, W]`` for the pointing game, or ``None``.
      seconds: seconds per image to report.

    Returns:
      :class:`TableRow`.
    """
    pred_boxes = np.asarray(pred_boxes)
    count, shape = len(benchmark.boxes), benchmark.masks.shape[1:]
    if pred_boxes.shape != (count, 4):
        raise ValueError(f"pred_boxes must have shape [{count}, 4], one box per image of the benchmark, got shape "
                         f"{pred_boxes.shape}")
    if pred_masks is None:
        pred_masks = [box_mask(b, shape) for b in pred_boxes]
    elif isinstance(pred_masks, (str, bytes)) or len(pred_masks := list(pred_masks)) != count:
        raise ValueError(f"pred_masks must hold {count} masks, one per image of the benchmark, got "
                         f"{len(pred_masks) if isinstance(pred_masks, list) else type(pred_masks).__name__}")
    ious = np.diagonal(metrics.box_iou(pred_boxes[:, None], benchmark.boxes[None])) if len(pred_boxes) else []
    return TableRow(
        method=method,
        seed_map=seed_map,
        box_iou=float(np.mean(ious)),
        accuracy=metrics.localisation_accuracy(pred_boxes, benchmark.boxes),
        mask_iou=float(np.mean([metrics.mask_iou(p, t) for p, t in zip(pred_masks, benchmark.masks)])),
        pointing=(
            float("nan") if saliency_maps is None
            else metrics.pointing_accuracy(saliency_maps, masks=benchmark.masks)
        ),
        seconds=float(seconds),
    )


def baseline_rows(benchmark: LocalisationBenchmark, *, centre_fraction: float = 0.5) -> list[TableRow]:
    """The map-free baselines: the centre box and the whole image."""
    shape = benchmark.images.shape[1:3]
    count = len(benchmark.images)
    return [
        score("centre box", "-", np.stack([centre_box(shape, centre_fraction)] * count), benchmark, seconds=0.0),
        score("whole image", "-", np.stack([whole_image_box(shape)] * count), benchmark, seconds=0.0),
    ]


def map_rows(
    benchmark: LocalisationBenchmark,
    saliency_maps: np.ndarray,
    seed_map: str,
    localisers: Mapping[str, Callable[[np.ndarray, np.ndarray], Sequence]] | None = None,
    *,
    quantile: float = 0.95,
) -> list[TableRow]:
    """Rows of the map-based methods for one choice of seed map.

    Args:
      benchmark: images and truth.
      saliency_maps: ``[N, H, W]`` maps of the benchmark's images.
      seed_map: the map's name in the table.
      localisers: ``{method name: (images, maps) -> N results}``, each result with
        ``.mask`` and ``.box`` (e.g. ``{"graphcut": functools.partial(localise_many,
        config=..., processes=...)}``).
      quantile: threshold of the thresholded-map baselines.

    Returns:
      Rows for the thresholded-map boxes (all pixels above ``quantile``, and their
      largest group), then one per localiser.
    """
    maps = np.asarray(saliency_maps)
    if maps.shape != benchmark.masks.shape:
        raise ValueError(f"saliency_maps must have shape {benchmark.masks.shape}, got {maps.shape}")
    rows = []
    for name, largest in (("threshold box", False), ("threshold box, largest part", True)):
        start = time.perf_counter()
        boxes = np.stack([saliency_threshold_box(m, quantile, largest_only=largest) for m in maps])
        seconds = (time.perf_counter() - start) / len(maps)
        rows.append(score(name, seed_map, boxes, benchmark, saliency_maps=maps, seconds=seconds))
    for name, localise_fn in (localisers or {}).items():
        start = time.perf_counter()
        found = list(localise_fn(benchmark.images, maps))
        seconds = (time.perf_counter() - start) / len(maps)
        rows.append(
            score(
                name, seed_map, np.stack([f.box for f in found]), benchmark,
                pred_masks=[f.mask for f in found], saliency_maps=maps, seconds=seconds,
            )
        )
    return rows


def format_table(rows: Sequence[TableRow]) -> str:
    """A Markdown table of :class:`TableRow`, in the order given."""
    header = (
        "| method | seed map | box IoU | loc. acc. (IoU>=0.5) | mask IoU | pointing game | s / image |\n"
        "|---|---|---|---|---|---|---|"
    )

    def number(value: float, digits: int = 3) -> str:
        return "-" if np.isnan(value) else f"{value:.{digits}f}"

    lines = [header]
    for row in rows:
        lines.append(
            f"| {row.method} | {row.seed_map} | {number(row.box_iou)} | {number(row.accuracy)} | "
            f"{number(row.mask_iou)} | {number(row.pointing)} | {number(row.seconds, 4)} |"
        )
    return "\n".join(lines)

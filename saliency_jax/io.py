"""Reading images and writing results: the library's edge with the file system.

Every writer is atomic: it writes a temporary file in the destination folder and
renames it into place, so a crash never leaves a half-written output behind and a
resumed run can trust any file it finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageOps

# Photos that ship with scikit-image and scikit-learn (no download needed).
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left")
SKLEARN_PHOTOS = ("china", "flower")
BUNDLED_PHOTOS = SKIMAGE_PHOTOS + SKLEARN_PHOTOS


def _float_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """Float pixels to uint8: values all within [0, 1] are on the 0-1 scale, others on 0-255 (clipped)."""
    array = np.asarray(array, np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite pixels")
    if array.size and array.min() >= 0.0 and array.max() <= 1.0:
        array = array * 255.0
    return np.clip(np.round(array), 0, 255).astype(np.uint8)


def _scale_to_uint8(array: np.ndarray, top: int) -> np.ndarray:
    """Integer pixels on ``[0, top]`` to uint8 (``value * 255 / top``, rounded); outside the range clipped."""
    array = np.clip(np.asarray(array, np.float64), 0, top)
    return np.round(array * (255.0 / top)).astype(np.uint8)


def to_rgb_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """An image array as uint8 ``[H, W, 3]``.

    uint8 is taken as is, bool as black/white, uint16 on its full range
    (``value / 257``), other integers as 0-255 (clipped) and floats by the rule of
    :func:`load_image`. A fourth channel (alpha) is dropped.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name} must be an image of shape [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    if array.shape[-1] == 4:
        array = array[..., :3]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = _scale_to_uint8(array, 65535)
    elif np.issubdtype(array.dtype, np.floating):
        array = _float_to_uint8(array, name)
    elif array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must hold numbers, got dtype {array.dtype}")
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def bundled_photo(name: str) -> np.ndarray:
    """A real photo shipped with scikit-image or scikit-learn, as uint8 ``[H, W, 3]``.

    Args:
      name: one of :data:`BUNDLED_PHOTOS`.
    """
    if name in SKIMAGE_PHOTOS:
        import skimage.data

        loader = skimage.data.stereo_motorcycle if name == "motorcycle_left" else getattr(skimage.data, name)
        photo = loader()
        return to_rgb_uint8(photo[0] if name == "motorcycle_left" else photo, name)
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        return to_rgb_uint8(load_sample_image(f"{name}.jpg"), name)
    raise ValueError(f"name must be one of {BUNDLED_PHOTOS}, got {name!r}")


# Pillow's pixel limit is a module global that its readers consult while opening and
# decoding; load_image sets it for the duration of one read. The lock keeps
# concurrent reads from restoring each other's value.
_PIXEL_LIMIT_LOCK = threading.Lock()


class _TooManyPixels(Exception):
    def __init__(self, size: tuple[int, int]):
        super().__init__(size)
        self.size = size


@contextlib.contextmanager
def _pillow_pixel_limit() -> Iterator[Callable[[int | None], None]]:
    """Yields a setter of Pillow's pixel limit; inside the block Pillow refuses, rather than warns."""

    def set_limit(limit: int | None) -> None:
        Image.MAX_IMAGE_PIXELS = limit

    with _PIXEL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        try:
            yield set_limit
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(img: Image.Image, limit: int | None) -> None:
    width, height = img.size
    if limit is not None and width * height > limit:
        raise _TooManyPixels((width, height))


class _Frame(NamedTuple):
    image: Image.Image  # decoded and turned as its EXIF orientation says
    frames: int  # in the file
    integer_top: int  # the largest value of a mode-I image, from the file's header


def _read_first_frame(path: str, limit: int | None) -> _Frame:
    """The first frame of the image file ``path``."""
    with _pillow_pixel_limit() as set_limit:
        # Opening reads only the header; the size it declares is checked here, so the
        # message can give it, and Pillow's own checks while decoding use the limit.
        set_limit(None)
        with Image.open(path) as img:
            _check_pixels(img, limit)
            set_limit(limit)
            # An MPO (a camera's JPEG with previews or a stereo pair) holds the photo in
            # its first frame; only animations and multi-page files are worth a warning.
            frames = 1 if img.format == "MPO" else int(getattr(img, "n_frames", 1))
            if frames > 1:
                img.seek(0)
            img.load()
            _check_pixels(img, limit)  # a GIF frame may extend the canvas
            # exif_transpose returns a copy (kept after the file closes), without the TIFF tags
            return _Frame(ImageOps.exif_transpose(img), frames, _integer_top(img))


def _integer_top(img: Image.Image) -> int:
    """The largest value of a mode-I image: a TIFF's declared bit depth, otherwise the 16-bit range.

    Pillow opens 16-bit PGM/PPM files as mode I already scaled to 0-65535.
    """
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return 65535
    bits = tags.get(258, (16,))
    sample_format = tags.get(339, (1,))
    bits = int(bits[0] if isinstance(bits, tuple) else bits)
    signed = (sample_format[0] if isinstance(sample_format, tuple) else sample_format) == 2
    return 2 ** (bits - signed) - 1 if bits in (8, 16, 24, 32) else 65535


def _has_transparency(img: Image.Image) -> bool:
    """An alpha band, a transparent colour or palette entry, or a palette with alpha."""
    palette_alpha = img.mode == "P" and img.palette is not None and img.palette.mode.endswith("A")
    return "A" in img.getbands() or "transparency" in img.info or palette_alpha


def _pillow_to_rgb_uint8(img: Image.Image, name: str, integer_top: int = 65535) -> np.ndarray:
    """A decoded Pillow image of any mode as uint8 ``[H, W, 3]`` (see :func:`load_image` for the rule).

    ``integer_top`` is the largest value of a mode-I image (see :func:`_integer_top`).
    """
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        array = np.asarray(img)
        if mode == "F":
            grey = _float_to_uint8(array, name)
        else:
            top = 65535 if mode.startswith("I;16") else integer_top
            if top == 2**32 - 1:  # unsigned 32-bit: Pillow stores the bits as int32
                array = array.view(np.uint32)
            grey = _scale_to_uint8(array, top)
            key = img.info.get("transparency")
            if isinstance(key, int) and not isinstance(key, bool):
                grey[array == key] = 255  # a colour-key transparent pixel, shown on white
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))
    if mode in ("La", "RGBa"):  # premultiplied alpha: over white is colour + (255 - alpha)
        array = np.asarray(img).astype(np.int32)
        colour, alpha = array[..., :-1], array[..., -1:]
        rgb = np.clip(colour + 255 - alpha, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.broadcast_to(rgb, rgb.shape[:2] + (3,)))
    if _has_transparency(img):
        return _over_white(np.asarray(img if img.mode == "RGBA" else img.convert("RGBA")))
    return np.ascontiguousarray(np.asarray(img.convert("RGB")))


def _over_white(rgba: np.ndarray, rows: int = 256) -> np.ndarray:
    """uint8 RGBA ``[H, W, 4]`` composited over white, rounded: ``(c * a + 255 * (255 - a)) / 255``.

    Exact integer arithmetic (the quotient never ends in .5), a band of rows at a
    time, so that a large image costs little more than its output.
    """
    out = np.empty(rgba.shape[:2] + (3,), np.uint8)
    for top in range(0, rgba.shape[0], rows):
        band = rgba[top:top + rows].astype(np.uint32)
        alpha = band[..., 3:]
        out[top:top + rows] = (band[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return out


def _check_source(text: str) -> None:
    """Raises, naming ``text``, unless it is a bundled photo's name or a regular file."""
    if text.startswith("bundled:"):
        name = text.split(":", 1)[1]
        if name not in BUNDLED_PHOTOS:
            raise ValueError(f"image: {text!r}: no bundled photo named {name!r}; the bundled photos are "
                             f"{', '.join(BUNDLED_PHOTOS)}")
        return
    if os.path.isfile(text):
        return
    if os.path.islink(text) and not os.path.exists(text):
        raise FileNotFoundError(f"image: {text!r} is a broken symbolic link")
    if not os.path.exists(text):
        raise FileNotFoundError(f"image: no such file {text!r}")
    what = "a folder" if os.path.isdir(text) else "not a regular file (a pipe, socket or device)"
    raise ValueError(f"image: {text!r} is {what}, not an image file")


def _positive_int(value, name: str) -> int:
    """``value`` as an ``int`` if it is an integer >= 1, else ``ValueError`` naming ``name``."""
    from saliency_jax._checks import check_int  # imports jax: only when needed

    return check_int(value, name, 1)


def _pixel_limit(max_pixels: int | None) -> int | None:
    """The pixel limit of one read: ``max_pixels`` checked, or Pillow's limit when None."""
    return Image.MAX_IMAGE_PIXELS if max_pixels is None else _positive_int(max_pixels, "max_pixels")


def check_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> None:
    """Checks, from the file's header only, that :func:`load_image` can start reading ``path``.

    Raises the errors of :func:`load_image` for a missing file, a folder or pipe,
    an unknown bundled name, a file Pillow cannot open, or more than
    ``max_pixels`` pixels, and refuses a ``max_pixels`` that is not an integer
    >= 1 as it does; a file that is corrupt past its header passes.
    """
    limit = _pixel_limit(max_pixels)
    text = os.fsdecode(path)  # str, bytes or os.PathLike
    _check_source(text)
    if text.startswith("bundled:"):
        return
    try:
        with _pillow_pixel_limit() as set_limit:
            set_limit(None)
            with Image.open(text) as img:
                _check_pixels(img, limit)
    except _TooManyPixels as e:
        width, height = e.size
        raise ValueError(
            f"image: {text!r} has {width}x{height} = {width * height} pixels, more than the limit of {limit} "
            "pixels (max_pixels); refused as a possible decompression bomb"
        ) from None
    except MemoryError:
        raise
    except Exception as e:
        raise ValueError(f"image: {text!r} is not a readable image file ({type(e).__name__}: {e})") from None


def load_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Reads an image file as uint8 RGB ``[H, W, 3]``, as an image viewer shows it.

    A path of the form ``bundled:NAME`` names a photo from :data:`BUNDLED_PHOTOS`.

    The reading rule, for every Pillow mode:

    * Pixel values keep their real range. 8-bit images are read as stored; 1-bit
      images as black and white; palette images through their palette; CMYK,
      YCbCr, LAB and HSV through Pillow's conversion to RGB (an embedded ICC colour
      profile is not applied). 16-bit images are scaled to 0-255 (``value / 257``,
      rounded); 32-bit integer TIFFs by their declared range (``value * 255 /
      (2**32 - 1)``, or ``/ (2**31 - 1)`` when signed, negatives clipped to 0); other
      32-bit integer images (e.g. 16-bit PGM) as 16-bit. Float images are taken on
      the 0-1 scale when every value lies within [0, 1] and on the 0-255 scale
      otherwise, clipped to [0, 255]; a NaN or infinite pixel is refused.
    * Transparency (an alpha channel, a transparent palette entry or colour key) is
      composited over white. Greyscale becomes three equal channels.
    * The EXIF orientation is applied, so a photo is read the way up it is shown.
    * An animated or multi-page file (GIF, APNG, TIFF, ...) is read at its first
      frame, with a ``UserWarning`` that says so. The extra frames of a camera's MPO
      file (previews, the second view of a stereo pair) pass without a warning.
    * An image of more than ``max_pixels`` pixels is refused before it is decoded,
      so that a small file cannot declare a huge image and fill the memory (a
      "decompression bomb"). Unlike Pillow, which only warns up to twice its
      limit, the limit is hard.

    Args:
      path: an image file, or ``bundled:NAME``.
      max_pixels: the largest width x height to read; None (the default) uses
        Pillow's limit, ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 pixels unless
        changed; setting that to None lifts the default limit).

    Returns:
      uint8 ``[H, W, 3]``.

    Raises:
      FileNotFoundError: no such file (or a broken symbolic link).
      ValueError: ``path`` is a folder, pipe or unknown bundled name, the file is not an image that Pillow can read (unknown format,
        truncated or corrupt), holds NaN or infinite pixels, or has more than
        ``max_pixels`` pixels; the message names the file.
    """
    limit = _pixel_limit(max_pixels)
    text = os.fsdecode(path)  # str, bytes or os.PathLike
    _check_source(text)
    if text.startswith("bundled:"):
        return bundled_photo(text.split(":", 1)[1])
    try:
        frame = _read_first_frame(text, limit)
    except (_TooManyPixels, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if isinstance(e, _TooManyPixels):
            width, height = e.size
            size = f"has {width}x{height} = {width * height} pixels, more than"
        else:
            size = "has more pixels than"
        raise ValueError(
            f"image: {text!r} {size} the limit of {limit} pixels (max_pixels); refused as a possible "
            "decompression bomb"
        ) from None
    except MemoryError:
        raise
    except Exception as e:  # Pillow's readers fail in many ways on truncated or corrupt files
        raise ValueError(f"image: {text!r} is not a readable image file ({type(e).__name__}: {e})") from None
    if frame.frames > 1:
        warnings.warn(f"image: {text!r} has {frame.frames} frames; reading the first only", UserWarning, stacklevel=2)
    return _pillow_to_rgb_uint8(frame.image, f"image: {text!r}", frame.integer_top)


def image_stem(path: str | os.PathLike) -> str:
    """The output name of an input: the file's stem, or NAME for ``bundled:NAME``."""
    text = os.fsdecode(path)
    if text.startswith("bundled:"):
        return text.split(":", 1)[1]
    return os.path.splitext(os.path.basename(text))[0]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes an RGB image to ``size x size`` float32 on the 0-255 scale (bicubic).

    Pixels are first taken to uint8 by the rule of :func:`load_image` (uint8 as
    is, bool as black/white, uint16 on its full range, floats all within [0, 1]
    on the 0-1 scale and others on 0-255, clipped). An image that is already
    ``size x size`` gets the same conversion but no resampling, so a uint8 image
    keeps its exact values.

    Args:
      image: ``[H, W, 3]`` of uint8, uint16, bool, another integer type or float;
        not empty, no NaN or infinite pixels.
      size: the side of the output, an integer >= 1 whose square is at most
        Pillow's ``Image.MAX_IMAGE_PIXELS`` (the reading limit of :func:`load_image`).

    Returns:
      float32 ``[size, size, 3]``, values in [0, 255].
    """
    size = _positive_int(size, "size")
    if size * size > Image.MAX_IMAGE_PIXELS:
        raise ValueError(f"size must give at most {Image.MAX_IMAGE_PIXELS:,} pixels (Pillow's limit), got "
                         f"{size} x {size}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {image.shape}")
    if image.size == 0:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    rgb = to_rgb_uint8(image, "image")
    if rgb.shape[:2] != (size, size):
        rgb = Image.fromarray(rgb).resize((size, size), Image.BICUBIC)
    return np.asarray(rgb, dtype=np.float32)


def resize_map(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a 2-D map to ``[height, width]`` (bilinear), keeping float32 values.

    Args:
      saliency: ``[H, W]`` of real numbers (bool, integer or float); not empty,
        finite and within float32's range.
      height: the output's height, an integer >= 1.
      width: the output's width, an integer >= 1.

    Returns:
      float32 ``[height, width]``; a map already of that shape is returned unresampled.
    """
    height = _positive_int(height, "height")
    width = _positive_int(width, "width")
    values = np.asarray(saliency)
    if values.ndim != 2:
        raise ValueError(f"saliency must be a 2-D map [H, W], got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"saliency must not be empty, got shape {values.shape}")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"saliency must hold real numbers, got dtype {values.dtype}")
    if not np.isfinite(values).all():
        raise ValueError("saliency contains NaN or infinite values")
    with np.errstate(over="ignore"):
        saliency = values.astype(np.float32, copy=False)
    if not np.isfinite(saliency).all():
        raise ValueError("saliency holds values beyond float32's range")
    if saliency.shape == (height, width):
        return saliency
    return np.asarray(Image.fromarray(saliency, mode="F").resize((width, height), Image.BILINEAR), np.float32)


# The marker of this library's temporaries: a later run removes a dead writer's
# leftovers by this name, so it must not be a name a person would give a file.
_TEMP_PREFIX = ".saliency-jax-tmp-"
# The temporaries this process is writing now: a signal handler that ends the
# process at once (os._exit) removes them first (remove_live_temporaries).
_LIVE_TEMPORARIES: set[str] = set()
# <prefix><host>-<pid>-<mkstemp's 8 characters><the target's extension>
_TEMP_NAME = re.compile(re.escape(_TEMP_PREFIX) + r"([^-/]+)-([0-9]+)-[a-z0-9_]{8}(\.[^./]*)?")


def _temporary_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of the writer of a temporary named by :func:`atomic_path`."""
    match = _TEMP_NAME.fullmatch(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside ``path``; on success renames it onto ``path``.

    The temporary is named ``.saliency-jax-tmp-<host>-<pid>-...``, so a later run can tell
    the leftovers of a writer that died (:func:`remove_stale_temporaries`) from
    the files of one that is still writing in the same folder.
    """
    path = os.fsdecode(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{_TEMP_PREFIX}{_host()}-{os.getpid()}-", suffix=suffix)
    _LIVE_TEMPORARIES.add(tmp)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates the file private (0600); give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        _LIVE_TEMPORARIES.discard(tmp)


def remove_live_temporaries() -> None:
    """Removes the temporaries this process is writing (for a handler that ends the process at once)."""
    for tmp in list(_LIVE_TEMPORARIES):
        with contextlib.suppress(OSError):
            os.remove(tmp)


def remove_stale_temporaries(folder: str | os.PathLike, keep: Iterable[str | os.PathLike] = ()) -> list[str]:
    """Removes the temporaries that writers on this host left behind when they died.

    Only plain files named as :func:`atomic_path` names its temporaries are
    candidates; one whose writer process still runs is kept (two runs may share
    a folder), those of other hosts are left alone, and so is any of ``keep``
    (e.g. the inputs of the run about to start).

    Returns:
      The paths removed.
    """
    removed = []
    host = _host()
    kept = [os.fspath(k) for k in keep]
    for name in os.listdir(folder):
        owner = _temporary_owner(name)
        if owner is None or owner[0] != host or _alive(owner[1]):
            continue
        path = os.path.join(folder, name)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode) or any(same_file(path, k) for k in kept):
                continue
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one existing file (``False`` if either cannot be looked up)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_atomic(path, writer: Callable[[str], Any]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def save_npy(path, array: np.ndarray) -> None:
    """Writes ``array`` to a ``.npy`` file atomically.

    An array of Python objects is refused (``ValueError``): it would be pickled,
    and :func:`numpy.load` refuses pickles by default, so the file could not be read back.
    """
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"array must hold numbers (or strings), not Python objects, got dtype {array.dtype}")

    def writer(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)

    _write_atomic(path, writer)


def save_json(path, obj: Any, *, strict: bool = False) -> None:
    """Writes ``obj`` as indented JSON atomically.

    With ``strict``, NaN or infinity (not JSON) raises ``ValueError`` (the command
    line's records); otherwise they are written as Python's ``json`` writes them
    (``NaN``, ``Infinity``: the experiments' tables mark a missing figure so).
    NumPy scalars and arrays are written as the numbers and lists they hold; any
    other value JSON has no form for raises ``ValueError`` naming its type, before
    ``path`` is touched.
    """
    try:
        text = json.dumps(obj, indent=2, allow_nan=not strict, default=_json_default) + "\n"
    except TypeError as e:
        raise ValueError(f"obj must hold only what JSON writes (dicts with string keys, lists, strings, numbers, "
                         f"booleans, None, NumPy numbers): {e}") from None

    def writer(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    _write_atomic(path, writer)


def _json_default(value):
    """NumPy scalars and arrays as the Python numbers and lists they hold; anything else refused."""
    if isinstance(value, (np.generic, np.ndarray)) and not value.dtype.hasobject:
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def save_png(path, image: np.ndarray) -> None:
    """Writes a uint8 ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB) image as PNG atomically.

    Anything else (another dtype, an alpha channel, an extra axis, an empty image)
    raises ``ValueError`` before ``path`` is touched.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise ValueError(f"image must be uint8 [H, W] or [H, W, 3] for PNG, got dtype {image.dtype} "
                         f"and shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    _write_atomic(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def save_figure(path, figure) -> None:
    """Saves a matplotlib figure atomically (format from the extension) and closes it."""
    if not hasattr(figure, "savefig"):
        raise ValueError(f"figure must be a matplotlib Figure, got {type(figure).__name__}")
    fmt = os.path.splitext(os.fsdecode(path))[1].lstrip(".") or "png"
    try:
        _write_atomic(path, lambda tmp: figure.savefig(tmp, format=fmt, dpi=100, bbox_inches="tight"))
    finally:
        if getattr(figure.canvas, "manager", None) is not None:  # made by pyplot: release it
            import matplotlib.pyplot as plt

            plt.close(figure)

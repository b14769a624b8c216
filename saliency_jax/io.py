"""Reading images and writing results: the library's edge with the file system.

Every writer is atomic: it writes a temporary file in the destination folder and
renames it into place, so a crash never leaves a half-written output behind and a
resumed run can trust any file it finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# Photos that ship with scikit-image and scikit-learn (no download needed).
SKIMAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left")
SKLEARN_PHOTOS = ("china", "flower")
BUNDLED_PHOTOS = SKIMAGE_PHOTOS + SKLEARN_PHOTOS


def _to_rgb_uint8(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name} must be an image of shape [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.shape[-1] == 4:
        array = array[..., :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.max(initial=0) <= 1.0:
            array = array * 255.0
        array = np.clip(np.round(array), 0, 255).astype(np.uint8)
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
        return _to_rgb_uint8(photo[0] if name == "motorcycle_left" else photo, name)
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        return _to_rgb_uint8(load_sample_image(f"{name}.jpg"), name)
    raise ValueError(f"name must be one of {BUNDLED_PHOTOS}, got {name!r}")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as uint8 RGB ``[H, W, 3]`` (grey and RGBA are converted).

    A path of the form ``bundled:NAME`` names a photo from :data:`BUNDLED_PHOTOS`.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not an image that Pillow can read.
    """
    text = os.fspath(path)
    if text.startswith("bundled:"):
        return bundled_photo(text.split(":", 1)[1])
    if not os.path.isfile(text):
        raise FileNotFoundError(f"image: no such file {text!r}")
    try:
        with Image.open(text) as img:
            img.load()
            return _to_rgb_uint8(np.asarray(img.convert("RGB")), "image")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image: {text!r} is not a readable image file ({e})") from None


def image_stem(path: str | os.PathLike) -> str:
    """The output name of an input: the file's stem, or NAME for ``bundled:NAME``."""
    text = os.fspath(path)
    if text.startswith("bundled:"):
        return text.split(":", 1)[1]
    return os.path.splitext(os.path.basename(text))[0]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes an RGB image to ``size x size`` float32 on the 0-255 scale.

    An image that is already ``size x size`` is returned unresampled.

    Args:
      image: uint8 or float ``[H, W, 3]``.
      size: the side of the output.

    Returns:
      float32 ``[size, size, 3]``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {image.shape}")
    if image.shape[:2] == (size, size):
        return image.astype(np.float32)
    pil = Image.fromarray(_to_rgb_uint8(image, "image"))
    return np.asarray(pil.resize((size, size), Image.BICUBIC), dtype=np.float32)


def resize_map(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes a 2-D map to ``[height, width]`` (bilinear), keeping float32 values."""
    saliency = np.asarray(saliency, np.float32)
    if saliency.shape == (height, width):
        return saliency
    return np.asarray(Image.fromarray(saliency, mode="F").resize((width, height), Image.BILINEAR), np.float32)


_TEMP_PREFIX = ".tmp-"


def _temporary_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of the writer of a temporary named by :func:`atomic_path`."""
    if not name.startswith(_TEMP_PREFIX):
        return None
    parts = name[len(_TEMP_PREFIX):].split("-", 2)
    if len(parts) < 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside ``path``; on success renames it onto ``path``.

    The temporary is named ``.tmp-<host>-<pid>-...``, so a later run can tell
    the leftovers of a writer that died (:func:`remove_stale_temporaries`) from
    the files of one that is still writing in the same folder.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{_TEMP_PREFIX}{_host()}-{os.getpid()}-", suffix=suffix)
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


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Removes the temporaries that writers on this host left behind when they died.

    A temporary whose writer process still runs is kept (two runs may share a
    folder); those of other hosts are left alone.

    Returns:
      The paths removed.
    """
    removed = []
    host = _host()
    for name in os.listdir(folder):
        owner = _temporary_owner(name)
        if owner is None or owner[0] != host or _alive(owner[1]):
            continue
        path = os.path.join(folder, name)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


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
    """Writes ``array`` to a ``.npy`` file atomically."""

    def writer(tmp):
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array))

    _write_atomic(path, writer)


def save_json(path, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically."""

    def writer(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    _write_atomic(path, writer)


def save_png(path, image: np.ndarray) -> None:
    """Writes a uint8 ``[H, W]`` or ``[H, W, 3]`` image as PNG atomically."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 for PNG, got {image.dtype}")
    _write_atomic(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def save_figure(path, figure) -> None:
    """Saves a matplotlib figure atomically (format from the extension) and closes it."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    try:
        _write_atomic(path, lambda tmp: figure.savefig(tmp, format=fmt, dpi=100, bbox_inches="tight"))
    finally:
        if getattr(figure.canvas, "manager", None) is not None:  # made by pyplot: release it
            import matplotlib.pyplot as plt

            plt.close(figure)

"""Input pipeline: TFDS random-access data sources to numpy batches, without TensorFlow.

Any TFDS image classification dataset prepared as ``array_record`` (e.g.
``imagenet2012``, or the generated ``cluttered_objects``) is read through
``tfds.data_source``, which needs no TensorFlow. The examples of a step are a
pure function of ``(seed, step)`` (an epoch-wise permutation of the indices), so
a resumed run sees exactly the batches an uninterrupted run would have seen,
with no iterator state to checkpoint. Each host reads only its own rows of the
global batch.

Images are decoded on threads, resized and cropped with Pillow, and stay uint8
until the jitted step: copying bytes to the devices is four times cheaper than
copying floats. Images must be uint8 (as TFDS decodes them) and labels integer
class ids within int32, on every path: a cast would silently blacken a 0-1 float
image or move a label onto another class, so either raises a ``ValueError``.

A record of a TFDS source that cannot be read (a corrupt, truncated or missing
``array_record`` file) raises a ``ValueError`` naming the dataset, split, data
directory and file, on whichever thread reads it first.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import operator
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from saliency_jax._checks import check_int


class Batch(NamedTuple):
    """One batch of this process.

    Attributes:
      images: uint8 ``[b, S, S, 3]``.
      labels: int32 ``[b]``.
      mask: bool ``[b]``; ``False`` marks padding rows (only in evaluation).
    """

    images: np.ndarray
    labels: np.ndarray
    mask: np.ndarray


class ArraySource:
    """A random-access source over in-memory arrays (same protocol as a TFDS data source).

    Args:
      features: name -> array ``[N, ...]``.
      num_classes: ``K`` if known (what :func:`num_classes_of` reports).
    """

    def __init__(self, features: Mapping[str, np.ndarray], num_classes: int | None = None):
        lengths = {name: len(value) for name, value in features.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise ValueError(f"features must be non-empty arrays of one length, got lengths {lengths}")
        self.features = {name: np.asarray(value) for name, value in features.items()}
        self.num_classes = num_classes
        self._length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {name: value[index] for name, value in self.features.items()}

    def get_batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``indices`` of every feature, stacked."""
        return {name: value[indices] for name, value in self.features.items()}


def load_source(name: str, split: str, data_dir: str | None = None):
    """A TFDS dataset split as a random-access data source (``len``, ``[i]``).

    The dataset must already be prepared under ``data_dir``, in ``array_record``
    format (or as TFRecord files, read into memory, when TensorFlow is installed) (for ``imagenet2012``, follow TFDS's manual download
    instructions); ``cluttered_objects`` is generated here on first use.

    Args:
      name: TFDS name, optionally with a config and version, e.g.
        ``"cluttered_objects/k6_64"``.
      split: e.g. ``"train"``, ``"validation"``, ``"train[:10%]"``.
      data_dir: TFDS data directory (``None``: TFDS's default).

    Returns:
      A data source whose items are dicts of numpy values (its ``dataset_info``
      is TFDS's). Reading an example of a corrupt, truncated or missing file
      raises ``ValueError`` naming the dataset, split, ``data_dir`` and file.
    """
    import tensorflow_datasets as tfds

    try:
        if name.split("/")[0] == "cluttered_objects":
            import saliency_jax.data.cluttered_objects  # noqa: F401  (registers the builder)

            _prepare_generated(tfds.builder(name, data_dir=data_dir))  # generated once, no download
        return _checked(tfds.data_source(name, split=split, data_dir=data_dir, download=False))
    except Exception as error:  # TFDS raises several types for a missing dataset or split
        if _is_unreadable_file(error):  # prepared, but a file is damaged: no other format will help
            raise _unreadable_data(tfds.builder(name, data_dir=data_dir).info, split, error) from error
        try:
            import tensorflow  # noqa: F401  (TFRecord files need it)
        except ImportError:
            raise ValueError(
                f"cannot open TFDS dataset {name!r} split {split!r} in data_dir {data_dir!r} as an "
                f"array_record data source ({error}); prepare it with file_format='array_record', or install "
                "TensorFlow to read TFRecord files"
            ) from error
        return list(tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir, download=False)))


class _TfdsSource:
    """A TFDS data source whose unreadable examples raise a clear ``ValueError``.

    ``array_record`` opens each file at its first read, so a corrupt or truncated
    file shows up there, as a bare ``RuntimeError`` from its Riegeli reader that
    names neither the dataset nor the file.

    Args:
      source: a TFDS data source (with ``dataset_info`` and ``split``).
    """

    def __init__(self, source):
        self.source = source
        self.dataset_info = source.dataset_info
        self.split = source.split

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index) -> Any:
        n, index = len(self.source), operator.index(index)
        if not -n <= index < n:  # checked here: TFDS reports it as a ValueError, like a damaged file
            raise IndexError(f"index {index} is out of range for a source of {n} examples")
        index %= n
        try:
            return self.source[index]
        except (RuntimeError, ValueError, OSError) as error:  # Riegeli's errors; a record read as None
            raise _unreadable_data(self.dataset_info, self.split, error, index=index) from error

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"


def _checked(source):
    """``source`` read through :class:`_TfdsSource` if it is a TFDS data source, else as it is."""
    if isinstance(source, _TfdsSource) or getattr(source, "dataset_info", None) is None:
        return source
    if getattr(source, "split", None) is None:
        return source
    return _TfdsSource(source)


def _is_unreadable_file(error: BaseException) -> bool:
    """Whether ``error`` is ``array_record``'s report of a damaged file (Riegeli names no file)."""
    if not isinstance(error, RuntimeError) or isinstance(error, NotImplementedError):
        return False  # TFDS's NotImplementedError: a dataset prepared in a format without random access
    return "Riegeli" in str(error) or "ArrayRecord" in str(error)


def _split_files(info, split, index: int | None = None) -> list[str]:
    """The files of ``split``: the one that holds example ``index``, or all of them."""
    try:
        instructions = info.splits[split].file_instructions
    except (KeyError, ValueError, TypeError, AttributeError):  # no file list in the metadata
        return []
    if index is None:
        return [os.fspath(instruction.filename) for instruction in instructions]
    for instruction in instructions:
        if index < instruction.take:
            return [os.fspath(instruction.filename)]
        index -= instruction.take
    return []


def _unreadable_data(info, split, error: BaseException, *, index: int | None = None) -> ValueError:
    """The error for a prepared TFDS split whose file cannot be read, with what to do about it.

    Args:
      info: the dataset's ``tfds.core.DatasetInfo``.
      split: the split read.
      error: what the reader raised.
      index: the example being read (``None``: the failure came when opening the split).
    """
    from etils import epath

    folder = os.fspath(info.data_dir)  # <data_dir>/<name>/<config>/<version>
    full_name = info.full_name
    name = full_name.rsplit("/", 1)[0]  # without the version
    data_dir = folder[: -len(full_name)].rstrip("/") if folder.endswith(full_name) else folder
    files = _split_files(info, split, index)
    if len(files) == 1:
        what = f"its file {files[0]!r}"
        state = "is corrupt or truncated" if epath.Path(files[0]).exists() else "is missing"
    else:
        what = f"one of its {len(files)} files" if files else "one of its files"
        state = "is corrupt, truncated or missing"
    if name.split("/")[0] == "cluttered_objects":
        remedy = ("run again: this project generates cluttered_objects wherever it is missing (load_source, "
                  "and experiments/reproduce_small.py's build_dataset)")
    else:
        remedy = f"prepare it again, e.g. `tfds build {name} --data_dir={data_dir} --file_format=array_record`"
    example = "" if index is None else f"example {index} of "
    return ValueError(
        f"cannot read {example}TFDS dataset {name!r} split {str(split)!r} in data_dir {data_dir!r}: {what} {state} "
        f"({type(error).__name__}: {error}); delete the dataset's folder {folder!r} and {remedy}"
    )


def _prepare_generated(builder) -> None:
    """Generates a dataset of this package where it is missing, one process first.

    With several processes (``jax.distributed``), process 0 generates it while
    the others wait at a barrier, then the others prepare it too: on a shared
    ``data_dir`` they find it ready, on a disk of their own they make their own
    copy. Two processes never write the same folder at once.
    """
    import jax

    if jax.process_count() == 1:
        builder.download_and_prepare()
        return
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        builder.download_and_prepare()
    multihost_utils.sync_global_devices(f"saliency_jax: {builder.info.full_name} prepared")
    if jax.process_index() != 0:
        builder.download_and_prepare()


def num_classes_of(source, label_key: str = "label") -> int:
    """``K`` from a source's TFDS metadata (or an :class:`ArraySource`'s ``num_classes``)."""
    k = getattr(source, "num_classes", None)
    if k is None:
        info = getattr(source, "dataset_info", None)
        feature = None if info is None else info.features[label_key]
        k = getattr(feature, "num_classes", None)
    if k is None:
        raise ValueError(f"cannot tell the number of classes of feature {label_key!r}; set it explicitly")
    return int(k)


def cache_in_memory(source, keys: Sequence[str], *, label_key: str = "label", num_workers: int = 8) -> ArraySource:
    """Reads every example of ``source`` once and keeps ``keys`` as stacked arrays.

    For datasets whose examples share one shape (e.g. the generated dataset).
    ``K`` is taken from the source's metadata for ``label_key`` when known. A
    TFDS file that cannot be read raises ``ValueError`` naming it (on the caller's
    thread: the pool hands the error back).
    """
    source = _checked(source)
    with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
        examples = list(pool.map(source.__getitem__, range(len(source)), chunksize=256))
    features = {key: np.stack([np.asarray(e[key]) for e in examples]) for key in keys}
    try:
        k = num_classes_of(source, label_key)
    except (ValueError, KeyError):
        k = None
    return ArraySource(features, num_classes=k)


@functools.lru_cache(maxsize=4)
def _permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def train_indices(num_examples: int, global_batch_size: int, step: int, seed: int) -> np.ndarray:
    """The example indices of training step ``step`` (a pure function of its arguments).

    Epoch ``e`` visits the examples in the order ``permutation(seed, e)``; steps
    run through the concatenated epochs without dropping a remainder.

    Returns:
      int64 ``[global_batch_size]``.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    global_batch_size = check_int(global_batch_size, "global_batch_size", 1)
    step, seed = check_int(step, "step", 0), check_int(seed, "seed", 0)
    positions = step * global_batch_size + np.arange(global_batch_size)
    epochs, offsets = np.divmod(positions, num_examples)
    out = np.empty(global_batch_size, np.int64)
    for epoch in np.unique(epochs):
        chosen = epochs == epoch
        out[chosen] = _permutation(num_examples, seed, int(epoch))[offsets[chosen]]
    return out


def _check_pipeline_args(image_size, resize_size, num_workers, prefetch) -> None:
    image_size = check_int(image_size, "image_size", 1)
    if resize_size is not None:
        check_int(resize_size, "resize_size (or None)", image_size)
    check_int(num_workers, "num_workers", 0)
    check_int(prefetch, "prefetch", 1)  # 0 would make the queue unbounded


def process_rows(global_batch_size: int, process_index: int, process_count: int) -> slice:
    """This process's rows of a global batch (contiguous, equal shares)."""
    process_count = check_int(process_count, "process_count", 1)
    process_index = check_int(process_index, "process_index", 0, process_count - 1)
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size must be divisible by the {process_count} processes, got {global_batch_size}"
        )
    share = global_batch_size // process_count
    return slice(process_index * share, (process_index + 1) * share)


def _check_uint8(dtype) -> None:
    """``ValueError`` unless images of ``dtype`` are uint8."""
    if dtype != np.uint8:
        # A cast would wrap other integers and turn a float image on the 0-1 scale black.
        raise ValueError(f"image must be uint8 (0-255, as TFDS decodes images), got dtype {dtype}")


_INT32 = np.iinfo(np.int32)


def _class_ids(labels, indices: np.ndarray, key: str) -> np.ndarray:
    """The labels of examples ``indices`` as int32 ``[b]``, checked (vectorised) rather than cast.

    A cast would wrap int64 labels past int32 onto other classes and truncate
    float labels, so labels must have an integer dtype (not bool or float, even
    whole) and lie in int32's range; the range of classes ``[0, K)`` is checked
    by the training loop, which knows ``K``.

    Args:
      labels: ``[b]`` values of feature ``key``.
      indices: int ``[b]`` the examples they belong to (named in the error).
      key: the label feature's name.

    Raises:
      ValueError: naming ``key`` and the first example whose label is no int32 class id.
    """
    labels = np.asarray(labels)
    if labels.shape != indices.shape:
        raise ValueError(
            f"{key} must be one integer class id per example, got shape {labels.shape} for {len(indices)} examples"
        )
    if not np.issubdtype(labels.dtype, np.integer):  # bool and float (even whole) labels too
        i = 0
        if np.issubdtype(labels.dtype, np.floating) and labels.size:
            i = int(np.argmax(labels != np.round(labels)))  # the first fraction (or NaN), if any
        raise ValueError(
            f"{key} must be integer class ids (of an integer dtype), got dtype {labels.dtype}: "
            f"example {int(indices[i])} has {labels[i]}"
        )
    if not np.can_cast(labels.dtype, np.int32):
        outside = (labels < _INT32.min) | (labels > _INT32.max)
        if outside.any():
            i = int(np.argmax(outside))
            raise ValueError(
                f"{key} of example {int(indices[i])} must be a class id in int32's range "
                f"[{_INT32.min}, {_INT32.max}], got {labels[i]} (dtype {labels.dtype})"
            )
    return labels.astype(np.int32)


def fit_image(
    image: np.ndarray,
    image_size: int,
    resize_size: int | None = None,
    *,
    crop_offset: tuple[float, float] = (0.5, 0.5),
    flip: bool = False,
) -> np.ndarray:
    """Resizes and crops one image to ``[image_size, image_size, 3]`` uint8.

    The shorter side is resized to ``resize_size`` (keeping the aspect ratio),
    then an ``image_size`` square is cut at the relative ``crop_offset``
    (``(0.5, 0.5)`` is the centre). With ``resize_size=None`` the image is
    centre-cropped to a square and resized straight to ``image_size``.

    Args:
      image: uint8 ``[H, W, C]`` with ``C`` 1 or 3 (or ``[H, W]``), ``H, W >= 1``.
      image_size: output side.
      resize_size: shorter side before cropping, ``>= image_size``.
      crop_offset: (row, col) position of the crop, each in [0, 1] (0: top or
        left edge, 1: bottom or right edge).
      flip: mirror left-right.

    Returns:
      uint8 ``[image_size, image_size, 3]``.

    Raises:
      ValueError: ``image`` is not uint8, not ``[H, W, 1 or 3]`` or empty, or
        ``crop_offset`` is not two numbers in [0, 1].
    """
    image = np.asarray(image)
    _check_uint8(image.dtype)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image must have shape [H, W, 1 or 3], got {image.shape}")
    if 0 in image.shape[:2]:
        raise ValueError(f"image must have at least one pixel, got shape {image.shape}")
    try:
        row, col = (float(x) for x in crop_offset)
    except (TypeError, ValueError):  # not a pair, or not numbers
        row = col = math.nan
    if not (0 <= row <= 1 and 0 <= col <= 1):  # outside [0, 1] the crop runs off the image (NaN too)
        raise ValueError(f"crop_offset must be a (row, col) pair of numbers in [0, 1], got {crop_offset!r}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    h, w = image.shape[:2]
    if resize_size is None:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top : top + side, left : left + side]
        target = (image_size, image_size)
    else:
        scale = resize_size / min(h, w)
        target = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
    if image.shape[:2] != target:
        image = np.asarray(Image.fromarray(image.astype(np.uint8)).resize(target[::-1], Image.BILINEAR))
    h, w = image.shape[:2]
    top = round(row * (h - image_size))
    left = round(col * (w - image_size))
    image = image[top : top + image_size, left : left + image_size]
    if flip:
        image = image[:, ::-1]
    return np.ascontiguousarray(image, dtype=np.uint8)


class _Reader:
    """Turns example indices into a :class:`Batch` (threaded decoding)."""

    def __init__(self, source, *, image_key, label_key, image_size, resize_size, num_workers):
        self.source = _checked(source)  # a damaged TFDS file is named, through the prefetch thread
        self.image_key, self.label_key = image_key, label_key
        self.image_size, self.resize_size = image_size, resize_size
        self.pool = concurrent.futures.ThreadPoolExecutor(num_workers) if num_workers > 1 else None

    def _one(self, args) -> tuple[np.ndarray, np.ndarray]:
        index, offset, flip = args
        example = self.source[int(index)]
        image = fit_image(example[self.image_key], self.image_size, self.resize_size, crop_offset=offset, flip=flip)
        label = np.asarray(example[self.label_key])
        if label.ndim:
            raise ValueError(f"{self.label_key} of example {int(index)} must be one integer class id, "
                             f"got shape {label.shape}")
        return image, _class_ids(label[None], np.asarray([index]), self.label_key)[0]

    def read(self, indices: np.ndarray, offsets: np.ndarray, flips: np.ndarray, mask: np.ndarray) -> Batch:
        get_batch = getattr(self.source, "get_batch", None)
        images = None
        if get_batch is not None and self.resize_size in (None, self.image_size):
            rows = get_batch(indices)
            images = np.asarray(rows[self.image_key])
            if images.ndim == 4 and images.shape[1:] == (self.image_size, self.image_size, 3):
                _check_uint8(images.dtype)  # as fit_image does on the other path
                images = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
                labels = _class_ids(rows[self.label_key], np.asarray(indices), self.label_key)
            else:
                images = None
        if images is None:
            args = list(zip(indices, map(tuple, offsets), flips))
            results = list(self.pool.map(self._one, args)) if self.pool else [self._one(a) for a in args]
            images = np.stack([r[0] for r in results])
            labels = np.array([r[1] for r in results], np.int32)
        return Batch(images, labels, mask)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


class _Prefetch:
    """Runs a generator on a background thread, ``depth`` items ahead.

    Once the items are exhausted, the generator failed (its error is raised
    once) or :meth:`close` was called, ``next`` raises ``StopIteration`` at
    once, like a Python generator's: it never waits for an item that cannot come.
    """

    _DONE = object()

    def __init__(self, items: Iterator[Any], depth: int, on_close=None):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._on_close = on_close
        self._thread = threading.Thread(target=self._run, args=(items,), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        """Queues ``item`` unless closed first; whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items):
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as error:  # hand the failure to the consumer
            self._put(error)

    def __iter__(self):
        return self

    def __next__(self):
        while not self._finished:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() or (not self._thread.is_alive() and self._queue.empty()):
                    self._finished = True  # closed, or the thread is gone without a last word
                continue
            if item is self._DONE:
                self._finished = True
            elif isinstance(item, BaseException):
                self._finished = True
                raise item
            else:
                return item
        raise StopIteration

    def close(self):
        self._stop.set()
        self._finished = True
        self._thread.join(timeout=5)
        if self._on_close is not None:
            self._on_close()


def train_batches(
    source,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    num_steps: int | None = None,
    image_size: int,
    resize_size: int | None = None,
    random_flip: bool = True,
    image_key: str = "image",
    label_key: str = "label",
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 8,
    prefetch: int = 2,
) -> _Prefetch:
    """This process's training batches from step ``start_step`` on.

    Step ``s`` holds examples :func:`train_indices` ``(N, global_batch_size, s,
    seed)`` (this process's slice of them), with a random crop position and flip
    drawn from ``(seed, s)``: resuming at ``start_step`` reproduces an
    uninterrupted run exactly.

    Returns:
      An iterator of :class:`Batch` (``b = global_batch_size / process_count``
      rows), prefetched on a thread; call ``close()`` when done early.
    """
    global_batch_size = check_int(global_batch_size, "global_batch_size", 1)
    seed = check_int(seed, "seed", 0)
    start_step = check_int(start_step, "start_step", 0)
    if num_steps is not None:
        num_steps = check_int(num_steps, "num_steps (or None)", 0)
    _check_pipeline_args(image_size, resize_size, num_workers, prefetch)
    rows = process_rows(global_batch_size, process_index, process_count)
    n = len(source)
    if n < 1:
        raise ValueError("source must hold at least one example, got an empty source")
    reader = _Reader(source, image_key=image_key, label_key=label_key, image_size=image_size,
                     resize_size=resize_size, num_workers=num_workers)

    def batches():
        step = start_step
        while num_steps is None or step < start_step + num_steps:
            indices = train_indices(n, global_batch_size, step, seed)[rows]
            rng = np.random.default_rng([seed, step, 1])  # augmentation draws of the global batch
            offsets = rng.uniform(size=(global_batch_size, 2))[rows]
            flips = (rng.uniform(size=global_batch_size) < 0.5)[rows] & random_flip
            if resize_size is None:
                offsets = np.full_like(offsets, 0.5)
            yield reader.read(indices, offsets, flips, np.ones(len(indices), bool))
            step += 1

    return _Prefetch(batches(), prefetch, on_close=reader.close)


def eval_batches(
    source,
    *,
    global_batch_size: int,
    image_size: int,
    resize_size: int | None = None,
    num_examples: int | None = None,
    image_key: str = "image",
    label_key: str = "label",
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 8,
    prefetch: int = 2,
) -> _Prefetch:
    """This process's evaluation batches: every example once, in order, centre crops.

    The last batch is padded to ``global_batch_size`` with copies of example 0,
    flagged ``mask=False``, so every step has the same shape (one compilation)
    and padding is left out of the metrics.

    Raises:
      ValueError: naming the argument, for an empty ``source``, bad sizes, or
        (when read) images that are not uint8 and labels that are not int32 class ids.

    Returns:
      An iterator of :class:`Batch`, prefetched on a thread.
    """
    global_batch_size = check_int(global_batch_size, "global_batch_size", 1)
    if num_examples is not None:
        num_examples = check_int(num_examples, "num_examples (or None)", 1)
    _check_pipeline_args(image_size, resize_size, num_workers, prefetch)
    n = len(source) if num_examples is None else min(num_examples, len(source))
    if not n:  # an evaluation of nothing would report the mean of no batches
        raise ValueError("source must hold at least one example, got an empty source")
    rows = process_rows(global_batch_size, process_index, process_count)
    reader = _Reader(source, image_key=image_key, label_key=label_key, image_size=image_size,
                     resize_size=resize_size, num_workers=num_workers)

    def batches():
        for i in range(math.ceil(n / global_batch_size)):
            positions = i * global_batch_size + np.arange(global_batch_size)
            mask = positions < n
            indices = np.where(mask, positions, 0)[rows]
            size = len(indices)
            yield reader.read(indices, np.full((size, 2), 0.5), np.zeros(size, bool), mask[rows])

    return _Prefetch(batches(), prefetch, on_close=reader.close)

"""Weakly supervised object localisation from a saliency map (paper §3.2).

Seeds from the map's quantiles, colour mixtures fitted on them, a GraphCut of the
image, and the largest connected foreground component with its box. Numpy in,
numpy out; many images run over a process pool.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from saliency_jax.localisation._inputs import as_image, as_int, as_number, as_saliency, unit_range
from saliency_jax.localisation.components import bounding_box, largest_component, most_salient_component
from saliency_jax.localisation.config import GraphCutConfig, check_config
from saliency_jax.localisation.gmm import _colour_costs, _fit_colour_models
from saliency_jax.localisation.graphcut import build_graph, solve
from saliency_jax.localisation.seeds import Seeds, quantile_seeds


class StageTimes(NamedTuple):
    """Wall-clock seconds spent in each stage of one :func:`localise` call.

    ``gmm`` covers fitting both mixtures and scoring every pixel under them.
    """

    seeds: float
    gmm: float
    graph: float
    maxflow: float
    components: float

    @property
    def total(self) -> float:
        return float(sum(self))


class Localisation(NamedTuple):
    """The object found in one image.

    Attributes:
      mask: bool ``[H, W]``, the largest connected component of ``segmentation``.
      box: int64 ``[4]``, ``x0, y0, x1, y1`` around ``mask``; ``x1``/``y1`` exclusive.
      segmentation: bool ``[H, W]``, the GraphCut foreground before keeping the
        largest component.
      seeds: the :class:`Seeds` the map gave.
      timings: :class:`StageTimes` of this call (for benchmarks; not part of
        the result's value).
      from_seeds: True when the cut labelled no pixel foreground, so that
        ``mask`` (and ``box``) is the largest connected group of foreground
        seeds instead: an answer the paper does not give (it reports no box).
    """

    mask: np.ndarray
    box: np.ndarray
    segmentation: np.ndarray
    seeds: Seeds
    timings: StageTimes
    from_seeds: bool = False


def saliency_prior(saliency: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The unary saliency prior: extra costs of the foreground and background labels.

    With ``s`` the map scaled to ``[0, 1]`` by its minimum and maximum, the
    foreground label costs ``weight * (1 - s)`` and the background label
    ``weight * s``: the most salient pixel leans to the foreground by ``weight``
    nats, the least salient to the background.

    Args:
      saliency: ``[H, W]`` finite, not constant.
      weight: a finite number ``>= 0``.

    Returns:
      ``(foreground_extra, background_extra)``, float64 ``[H, W]`` each.
    """
    saliency = as_saliency(saliency)
    weight = as_number(weight, "weight", low=0)
    scaled = unit_range(saliency)
    return weight * (1.0 - scaled), weight * scaled


def _outside_cost(foreground_cost: np.ndarray, background_cost: np.ndarray, outside: np.ndarray,
                  pairwise_weight: float) -> float:
    """What a pixel outside the support adds to its foreground cost: more than its colours'
    lean to the foreground plus all its pairwise edges (at most ``8 * pairwise_weight``), so
    that no cut keeps it, whatever the weight."""
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused by build_graph
        lean = float(np.max(background_cost - foreground_cost, where=outside, initial=0.0))
        return 1.0 + 8.0 * pairwise_weight + max(lean, 0.0)


def support_mask(saliency: np.ndarray, support: float) -> np.ndarray:
    """bool ``[H, W]``: the pixels outside the support, where the map scaled to ``[0, 1]`` is below ``support``.

    Args:
      saliency: ``[H, W]`` finite map.
      support: fraction in ``[0, 1)``; 0 gives no pixel.

    Returns:
      bool ``[H, W]``; no pixel for a constant map.
    """
    saliency = as_saliency(saliency)
    support = as_number(support, "support", low=0, high=1, open_high=True)
    if not saliency.max() > saliency.min():
        return np.zeros(saliency.shape, bool)
    return unit_range(saliency) < support


def localise(image: np.ndarray, saliency: np.ndarray, config: GraphCutConfig = GraphCutConfig()) -> Localisation:
    """Localises the object a saliency map points at (paper §3.2).

    With the default ``config`` this is the paper's pipeline: the pixels above
    the 95% and below the 30% quantile of the map estimate a foreground and a
    background colour mixture; a GraphCut labels every pixel from its colour
    likelihoods and the contrast-sensitive Potts term (no pixel is fixed); the
    largest connected foreground component is the object and its bounding box
    the answer. The variants of :class:`GraphCutConfig` (hard seeds, iterated
    colour re-estimation, a saliency prior, a support outside which no pixel is
    foreground) change only the cut's energy.

    Should the cut label no pixel foreground (possible without hard seeds when
    the foreground colours are also common in the background), the mask is the
    largest connected group of foreground seeds, so there is always a box, and
    the result's ``from_seeds`` is True (the paper gives no box then).

    Args:
      image: ``[H, W, 3]`` (``[H, W]`` grey is accepted), at least 2 pixels.
        Integer images (uint8, say) are on the 0-255 scale. Float images follow
        the rule of the library's image reader (:func:`saliency_jax.io.load_image`):
        on the 0-1 scale when every value lies within ``[0, 1]``, on the 0-255
        scale otherwise (so a float image on 0-255 that is nowhere brighter than
        1 is read as 0-1: pass such an image as uint8).
      saliency: ``[H, W]`` finite map of the same height and width; larger = more
        salient. Only its ranking matters (and, with ``config.saliency_weight``,
        its values scaled to ``[0, 1]``).
      config: :class:`GraphCutConfig`, the paper's pipeline by default.

    Returns:
      :class:`Localisation`. The result depends only on the inputs and
      ``config`` (the mixtures use ``config.seed``).

    Raises:
      ValueError: naming the argument, for a wrong shape or dtype, NaN or
        infinite values, values outside the image's scale, a map whose shape
        differs from the image, fewer than 2 pixels, or a constant (e.g.
        all-zero) map. Seed sets with fewer distinct colours than
        ``config.num_components`` are not an error: their mixture gets one
        component per distinct colour.
    """
    check_config(config)
    pixels = as_image(image)
    return _localise(pixels, as_saliency(saliency, pixels.shape[:2]), config)


def _localise(pixels: np.ndarray, saliency: np.ndarray, config: GraphCutConfig) -> Localisation:
    """:func:`localise` of a checked float64 ``[H, W, 3]`` image on 0-255 and its checked float64 ``[H, W]`` map."""
    start = time.perf_counter()
    seeds = quantile_seeds(saliency, config.foreground_quantile, config.background_quantile)
    prior = saliency_prior(saliency, config.saliency_weight) if config.saliency_weight > 0 else None
    outside = support_mask(saliency, config.support) if config.support > 0 else None
    after_seeds = time.perf_counter()
    gmm_seconds = graph_seconds = flow_seconds = 0.0
    fit_on = seeds
    segmentation = None
    for _ in range(config.iterations):
        tick = time.perf_counter()
        # Unchecked: ``pixels`` is already on 0-255, and a second pass of the scale rule could misread it.
        models = _fit_colour_models(pixels, fit_on.foreground, fit_on.background, config)
        foreground_cost, background_cost = _colour_costs(models, pixels)
        if prior is not None:
            foreground_cost = foreground_cost + prior[0]
            background_cost = background_cost + prior[1]
        if outside is not None:
            # A hard constraint: far more than any colour cost or cut of the pixel's edges.
            hard = _outside_cost(foreground_cost, background_cost, outside, config.pairwise_weight)
            foreground_cost = np.where(outside, foreground_cost + hard, foreground_cost)
        tock = time.perf_counter()
        graph = build_graph(
            pixels, foreground_cost, background_cost, seeds,
            pairwise_weight=config.pairwise_weight, neighbourhood=config.neighbourhood,
            hard_seeds=config.hard_seeds,
        )
        built = time.perf_counter()
        cut = solve(graph)
        solved = time.perf_counter()
        gmm_seconds += tock - tick
        graph_seconds += built - tock
        flow_seconds += solved - built
        if segmentation is not None and np.array_equal(cut, segmentation):
            break  # converged: re-fitting on the same labelling gives the same cut
        segmentation = cut
        if not cut.any() or cut.all():
            break  # nothing left to fit one of the models on
        # GrabCut's re-estimation: both models from the current labelling.
        fit_on = Seeds(cut, ~cut, seeds.foreground_threshold, seeds.background_threshold)

    tick = time.perf_counter()
    if config.component == "salient":
        mask = most_salient_component(segmentation, saliency, config.connectivity)
    else:
        mask = largest_component(segmentation, config.connectivity)
    from_seeds = not mask.any()
    if from_seeds:  # the cut kept no foreground: fall back to the seeds themselves
        mask = largest_component(seeds.foreground, config.connectivity)
    box = bounding_box(mask)
    end = time.perf_counter()

    timings = StageTimes(
        seeds=after_seeds - start,
        gmm=gmm_seconds,
        graph=graph_seconds,
        maxflow=flow_seconds,
        components=end - tick,
    )
    return Localisation(mask, box, segmentation, seeds, timings, bool(from_seeds))


def _resize(array: np.ndarray, shape: tuple[int, int], resample) -> np.ndarray:
    """``[h, w]`` float or bool, or ``[h, w, 3]`` float on 0-255, resized to ``shape`` with PIL."""
    from PIL import Image

    height, width = shape
    if array.shape[:2] == (height, width):
        return array
    if array.dtype == bool:
        out = Image.fromarray(array.astype(np.uint8) * 255).resize((width, height), resample)
        return np.asarray(out) >= 128
    if array.ndim == 2:
        out = Image.fromarray(array.astype(np.float32), mode="F").resize((width, height), resample)
        return np.asarray(out, np.float64)
    out = Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8)).resize((width, height), resample)
    return np.asarray(out, np.float64)


def working_shape(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``(h, w)`` of an ``[H, W]`` photo whose longer side is reduced to ``max_side`` (0: unchanged)."""
    height, width = int(shape[0]), int(shape[1])
    if max_side <= 0 or max(height, width) <= max_side:
        return height, width
    factor = max_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def localise_photo(image: np.ndarray, saliency: np.ndarray, config: GraphCutConfig = GraphCutConfig()) -> Localisation:
    """:func:`localise` on a photo at its own resolution, with a map of any size.

    The photo is reduced (area-averaging) until its longer side is at most
    ``config.max_side`` pixels (never enlarged); the map, e.g. a model's 224x224
    saliency map, is resized bilinearly to that working size; the GraphCut runs
    there; the mask, segmentation and seeds are resized (nearest neighbour) back
    to the photo. The box is the mask's, so boxes and masks are in the input
    photo's pixel coordinates (``x1``/``y1`` exclusive).

    Args:
      image: ``[H, W, 3]`` photo (grey ``[H, W]`` accepted), at least 2 pixels,
        on the scale :func:`localise` reads (uint8 on 0-255; floats on 0-1 when
        all within ``[0, 1]``, else on 0-255).
      saliency: ``[h, w]`` finite map of the same scene, any size (its aspect
        ratio should be the photo's, or it is stretched to it). Its scale does
        not matter: a map resized to the working size is first scaled to
        ``[0, 1]`` by its minimum and maximum, in float64.
      config: :class:`GraphCutConfig`; ``config.max_side`` sets the working size.

    Returns:
      :class:`Localisation` in the photo's ``[H, W]`` pixels (``timings`` of the
      cut at the working size).

    Raises:
      ValueError: as :func:`localise`, naming the argument.
    """
    from PIL import Image

    check_config(config)
    pixels = as_image(image)
    saliency = as_saliency(saliency)
    shape = pixels.shape[:2]
    work = working_shape(shape, config.max_side)
    small = _resize(pixels, work, Image.BOX)
    if saliency.shape != work:
        if not saliency.max() > saliency.min():
            quantile_seeds(saliency, config.foreground_quantile, config.background_quantile)  # raises: constant
        # The resize works in float32, where a map of huge or tiny values would
        # overflow or flush to zero: scale it to [0, 1] first (the pipeline uses
        # only the map's ranking and its values scaled to [0, 1]).
        saliency = _resize(unit_range(saliency), work, Image.BILINEAR)
    found = _localise(small, saliency, config)
    if work == shape:
        return found
    mask = _resize(found.mask, shape, Image.NEAREST)  # enlarging: every working pixel is kept
    seeds = Seeds(
        _resize(found.seeds.foreground, shape, Image.NEAREST),
        _resize(found.seeds.background, shape, Image.NEAREST),
        found.seeds.foreground_threshold,
        found.seeds.background_threshold,
    )
    return Localisation(mask, bounding_box(mask), _resize(found.segmentation, shape, Image.NEAREST), seeds,
                        found.timings, found.from_seeds)


class ClassBoxes(NamedTuple):
    """One box per class of one image, the paper's ILSVRC protocol (top-5 classes).

    Attributes:
      classes: int64 ``[N]``, the classes in the order given.
      boxes: int64 ``[N, 4]``, ``x0, y0, x1, y1`` (exclusive ends) per class.
      localisations: the :class:`Localisation` of each class.
    """

    classes: np.ndarray
    boxes: np.ndarray
    localisations: tuple[Localisation, ...]


def localise_classes(
    image: np.ndarray,
    saliency_maps: np.ndarray,
    classes: Sequence[int],
    config: GraphCutConfig = GraphCutConfig(),
) -> ClassBoxes:
    """One box per predicted class, each from that class's saliency map (§3.2).

    The ILSVRC-2013 submission of the paper predicted a box for each of the top-5
    classes of an image; pass their maps here.

    Args:
      image: ``[H, W, 3]``, as :func:`localise` reads it.
      saliency_maps: ``[N, H, W]``, the map of ``classes[n]`` at ``n``.
      classes: ``N`` class ids, integers ``>= 0`` (a sequence or an integer
        ``[N]`` array).
      config: :class:`GraphCutConfig`.

    Returns:
      :class:`ClassBoxes`.

    Raises:
      ValueError: naming the argument, for maps that are not ``[N, H, W]``,
        classes that are not ``N`` integers ``>= 0``, or as :func:`localise`.
    """
    try:
        maps = np.asarray(saliency_maps)
    except ValueError:  # maps of different shapes: numpy's "inhomogeneous shape"
        shapes = sorted({np.shape(m) for m in saliency_maps})
        raise ValueError(f"saliency_maps must have shape [N, H, W] (maps of one size), got maps of shapes {shapes}") \
            from None
    if maps.ndim != 3:
        raise ValueError(f"saliency_maps must have shape [N, H, W], got shape {maps.shape}")
    classes = _class_ids(classes)
    if len(classes) != maps.shape[0]:
        raise ValueError(
            f"classes must name one class per map: saliency_maps has {maps.shape[0]} maps, "
            f"classes has {len(classes)} entries"
        )
    found = tuple(localise(image, m, config) for m in maps)
    boxes = np.stack([f.box for f in found]) if found else np.zeros((0, 4), np.int64)
    return ClassBoxes(classes, boxes, found)


def _class_ids(classes) -> np.ndarray:
    """int64 ``[N]``: ``classes`` checked to be a flat sequence of integers ``>= 0``."""
    wanted = "a sequence of class ids (integers >= 0)"
    try:
        array = np.asarray(classes)
    except (ValueError, TypeError):  # a ragged nest of sequences
        raise ValueError(f"classes must be {wanted}, got {classes!r}") from None
    if array.ndim != 1:
        raise ValueError(f"classes must be {wanted} of shape [N], got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, np.int64)  # numpy makes [] float64
    # Floats, even whole ones, are refused: a class id of 1.7 is a mistake, not a request.
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"classes must be {wanted}, got {classes!r} (dtype {array.dtype})")
    if array.min() < 0 or array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"classes must be {wanted}, got values from {array.min()} to {array.max()}")
    return array.astype(np.int64)


def _limit_threads() -> None:
    """Keeps each pool worker on one BLAS/OpenMP thread, so N workers use N cores."""
    from threadpoolctl import threadpool_limits

    global _THREAD_LIMITS
    _THREAD_LIMITS = threadpool_limits(limits=1)


_THREAD_LIMITS = None


def _localise_indexed(job) -> Localisation:
    index, image, saliency, config = job
    try:
        return localise(image, saliency, config)
    except ValueError as error:
        raise ValueError(f"image {index}: {error}") from None


def _as_items(items, name: str, what: str):
    """``items`` as it is if a list, tuple or array; any other iterable read once into a list."""
    if isinstance(items, (list, tuple)):
        return items
    if hasattr(items, "shape"):
        if len(items.shape) == 0:
            raise ValueError(f"{name} must be {what}, got a 0-d array")
        return items
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError(f"{name} must be {what}, got {type(items).__name__}")
    return list(items)


def localise_many(
    images: Iterable[np.ndarray] | np.ndarray,
    saliency_maps: Iterable[np.ndarray] | np.ndarray,
    config: GraphCutConfig = GraphCutConfig(),
    *,
    processes: int | None = None,
    chunksize: int = 1,
    progress: bool = False,
    start_method: str = "spawn",
) -> list[Localisation]:
    """:func:`localise` over many images, in a process pool.

    Every image is localised independently with the same ``config`` (and so the
    same mixture seed), and results come back in input order, so the output is
    the same for any number of processes.

    Args:
      images: ``N`` images ``[H_i, W_i, 3]``: a list, an ``[N, H, W, 3]`` array, or
        any iterable (a generator, say), which is read into a list first.
      saliency_maps: ``N`` maps ``[H_i, W_i]``, likewise (a list, an ``[N, H, W]``
        array, or any iterable).
      config: :class:`GraphCutConfig`.
      processes: worker processes; ``None`` = one per CPU (at most ``N``),
        ``1`` = run here without a pool.
      chunksize: images sent to a worker at a time.
      progress: show a ``tqdm`` progress bar on stderr.
      start_method: ``multiprocessing`` start method of the workers. ``"spawn"``
        is safe when the parent has started threads (JAX does).

    Returns:
      ``N`` :class:`Localisation`, in input order.

    Raises:
      ValueError: if the counts differ, or for any image as :func:`localise`
        does, with the image's index in the message.
    """
    from tqdm.auto import tqdm

    images = _as_items(images, "images", "N images [H, W, 3] (a list, an [N, H, W, 3] array, or an iterable)")
    saliency_maps = _as_items(
        saliency_maps, "saliency_maps", "N maps [H, W] (a list, an [N, H, W] array, or an iterable)"
    )
    if not isinstance(saliency_maps, (list, tuple)) and np.ndim(saliency_maps) == 2:
        raise ValueError(f"saliency_maps must be N maps [H, W] (a list, or an [N, H, W] array), got one map of "
                         f"shape {np.shape(saliency_maps)}: for one image call localise, or pass [saliency]")
    if not isinstance(images, (list, tuple)) and np.ndim(images) == 3:
        raise ValueError(f"images must be N images [H, W, 3] (a list, or an [N, H, W, 3] array), got one image of "
                         f"shape {np.shape(images)}: for one image call localise, or pass [image]")
    if not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if start_method not in multiprocessing.get_all_start_methods():
        raise ValueError(f"start_method must be one of {multiprocessing.get_all_start_methods()}, got {start_method!r}")
    if len(images) != len(saliency_maps):
        raise ValueError(
            f"images and saliency_maps must have the same length, got {len(images)} and {len(saliency_maps)}"
        )
    if processes is not None:
        try:
            processes = as_int(processes, "processes", 1)
        except ValueError:
            raise ValueError(f"processes must be None or an integer >= 1, got {processes!r}") from None
    chunksize = as_int(chunksize, "chunksize", 1)
    check_config(config)
    count = len(images)
    workers = min(processes or os.cpu_count() or 1, max(count, 1))
    jobs = ((i, images[i], saliency_maps[i], config) for i in range(count))
    with tqdm(total=count, disable=not progress, desc="localise", unit="image") as bar:
        if workers == 1:
            results = []
            for job in jobs:
                results.append(_localise_indexed(job))
                bar.update()
            return results
        context = multiprocessing.get_context(start_method)
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_limit_threads) as pool:
            results = []
            for result in pool.map(_localise_indexed, jobs, chunksize=chunksize):
                results.append(result)
                bar.update()
            return results

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
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from saliency_jax.localisation._inputs import as_image, as_saliency
from saliency_jax.localisation.components import bounding_box, largest_component
from saliency_jax.localisation.config import GraphCutConfig
from saliency_jax.localisation.gmm import colour_costs, fit_colour_models
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
    """

    mask: np.ndarray
    box: np.ndarray
    segmentation: np.ndarray
    seeds: Seeds
    timings: StageTimes


def localise(image: np.ndarray, saliency: np.ndarray, config: GraphCutConfig = GraphCutConfig()) -> Localisation:
    """Localises the object a saliency map points at (paper §3.2).

    Args:
      image: ``[H, W, 3]`` uint8 (or real values on the 0-255 scale; ``[H, W]``
        grey is accepted), at least 2 pixels.
      saliency: ``[H, W]`` finite map of the same height and width; larger = more
        salient. Only its ranking matters.
      config: :class:`GraphCutConfig`, the paper's settings by default.

    Returns:
      :class:`Localisation`. The result depends only on the inputs and
      ``config`` (the mixtures use ``config.seed``).

    Raises:
      ValueError: naming the argument, for a wrong shape or dtype, NaN or
        infinite values, a map whose shape differs from the image, fewer than 2
        pixels, or a constant (e.g. all-zero) map. Seed sets with fewer distinct
        colours than ``config.num_components`` are not an error: their mixture
        gets one component per distinct colour.
    """
    if not isinstance(config, GraphCutConfig):
        raise ValueError(f"config must be a GraphCutConfig, got {type(config).__name__}")
    pixels = as_image(image)
    saliency = as_saliency(saliency, pixels.shape[:2])

    start = time.perf_counter()
    seeds = quantile_seeds(saliency, config.foreground_quantile, config.background_quantile)
    after_seeds = time.perf_counter()
    models = fit_colour_models(pixels, seeds, config)
    foreground_cost, background_cost = colour_costs(models, pixels)
    after_gmm = time.perf_counter()
    graph = build_graph(
        pixels, foreground_cost, background_cost, seeds,
        pairwise_weight=config.pairwise_weight, neighbourhood=config.neighbourhood,
        hard_background=config.hard_background_seeds,
    )
    after_graph = time.perf_counter()
    segmentation = solve(graph)
    after_flow = time.perf_counter()
    # Foreground seeds are hard constraints, so the segmentation is never empty.
    mask = largest_component(segmentation, config.connectivity)
    box = bounding_box(mask)
    end = time.perf_counter()

    timings = StageTimes(
        seeds=after_seeds - start,
        gmm=after_gmm - after_seeds,
        graph=after_graph - after_gmm,
        maxflow=after_flow - after_graph,
        components=end - after_flow,
    )
    return Localisation(mask, box, segmentation, seeds, timings)


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
      image: ``[H, W, 3]``.
      saliency_maps: ``[N, H, W]``, the map of ``classes[n]`` at ``n``.
      classes: ``N`` class ids.
      config: :class:`GraphCutConfig`.

    Returns:
      :class:`ClassBoxes`.
    """
    maps = np.asarray(saliency_maps)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    if maps.ndim != 3:
        raise ValueError(f"saliency_maps must have shape [N, H, W], got shape {maps.shape}")
    if len(classes) != maps.shape[0]:
        raise ValueError(
            f"classes must name one class per map: saliency_maps has {maps.shape[0]} maps, "
            f"classes has {len(classes)} entries"
        )
    found = tuple(localise(image, m, config) for m in maps)
    boxes = np.stack([f.box for f in found]) if found else np.zeros((0, 4), np.int64)
    return ClassBoxes(classes, boxes, found)


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


def localise_many(
    images: Sequence[np.ndarray] | np.ndarray,
    saliency_maps: Sequence[np.ndarray] | np.ndarray,
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
      images: ``N`` images ``[H_i, W_i, 3]`` (a list, or an ``[N, H, W, 3]`` array).
      saliency_maps: ``N`` maps ``[H_i, W_i]``.
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

    if len(images) != len(saliency_maps):
        raise ValueError(
            f"images and saliency_maps must have the same length, got {len(images)} and {len(saliency_maps)}"
        )
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        raise ValueError(f"processes must be None or an integer >= 1, got {processes!r}")
    if not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"chunksize must be an integer >= 1, got {chunksize!r}")
    if not isinstance(config, GraphCutConfig):
        raise ValueError(f"config must be a GraphCutConfig, got {type(config).__name__}")
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

"""Binary GraphCut on the pixel grid with PyMaxflow (paper §3.2; Boykov & Jolly, 2001).

The energy is GrabCut's (Rother et al., 2004): unary terms are the negative
log-likelihoods of a pixel's colour under the foreground and background colour
models, the pairwise term between neighbours ``p, q`` is the contrast-sensitive
Potts term ``gamma / dist(p, q) * exp(-beta * |z_p - z_q|^2)`` with
``beta = 1 / (2 <|z_p - z_q|^2>)`` averaged over all neighbouring pairs. In the
paper's pipeline no pixel is fixed: the seeds only estimate the colour models.
Optionally the foreground seeds, or both seed sets, are hard constraints
(GrabCut's user strokes). The source side of the cut is the foreground.
"""

from __future__ import annotations

from typing import NamedTuple

import maxflow
import numpy as np

from saliency_jax.localisation._inputs import as_choice, as_colours, as_cost, as_number
from saliency_jax.localisation.config import HARD_SEEDS
from saliency_jax.localisation.seeds import Seeds, seed_mask

# (dy, dx) of each undirected neighbour pair, listed once; the first two give 4-neighbours.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


class PixelGraph(NamedTuple):
    """A flow network over the pixels, ready for max-flow.

    Attributes:
      graph: the PyMaxflow graph; solving it mutates it.
      nodes: int ``[H, W]``, the node of each pixel.
    """

    graph: maxflow.GraphFloat
    nodes: np.ndarray


def contrast_weights(
    image: np.ndarray, pairwise_weight: float = 50.0, neighbourhood: int = 8
) -> list[tuple[tuple[int, int], np.ndarray]]:
    """The contrast-sensitive capacities of all neighbouring pixel pairs.

    Args:
      image: finite ``[H, W, 3]`` (or ``[H, W]`` grey); ``beta`` normalises its
        scale away.
      pairwise_weight: ``gamma`` (GrabCut's 50), a finite number ``>= 0``.
      neighbourhood: 4 or 8.

    Returns:
      One ``((dy, dx), weights)`` per direction, each undirected pair listed once:
      ``weights[y, x]`` (float64 ``[H, W]``) is the capacity between pixel
      ``(y, x)`` and ``(y + dy, x + dx)``, and 0 where that neighbour is outside
      the image.

    Raises:
      ValueError: naming the argument, for an image of the wrong shape or with
        NaN or infinite values, a negative or non-finite ``pairwise_weight`` or a
        ``neighbourhood`` other than 4 or 8.
    """
    return _contrast_weights(
        as_colours(image),
        as_number(pairwise_weight, "pairwise_weight", low=0),
        as_choice(neighbourhood, "neighbourhood", (4, 8)),
    )


def _contrast_weights(image: np.ndarray, pairwise_weight: float, neighbourhood: int):
    """:func:`contrast_weights` of a checked float64 ``[H, W, 3]`` image."""
    # beta makes the weights independent of the colours' scale; dividing by a
    # power of two first (exact in floating point, so the weights do not change)
    # keeps the squared differences of huge values finite.
    top = np.abs(image).max()
    if top > 0:
        image = np.ldexp(image, -int(np.frexp(top)[1]))
    height, width = image.shape[:2]
    offsets = _OFFSETS[: 2 if neighbourhood == 4 else 4]
    squared = []
    for dy, dx in offsets:
        diff = np.zeros((height, width))
        first = image[: height - dy, max(0, -dx) : width - max(0, dx)]
        second = image[dy:, max(0, dx) : width - max(0, -dx)]
        diff[: height - dy, max(0, -dx) : width - max(0, dx)] = np.sum((first - second) ** 2, axis=-1)
        squared.append(diff)
    pairs = sum((height - dy) * (width - abs(dx)) for dy, dx in offsets)
    mean = sum(d.sum() for d in squared) / max(pairs, 1)
    beta = 0.0 if mean == 0 else 1.0 / (2.0 * mean)  # a flat image: plain Potts smoothing
    out = []
    for (dy, dx), diff in zip(offsets, squared):
        weights = pairwise_weight / np.hypot(dy, dx) * np.exp(-beta * diff)
        weights[height - dy :] = 0.0
        weights[:, width - max(0, dx) :] = 0.0
        weights[:, : max(0, -dx)] = 0.0
        out.append(((dy, dx), weights))
    return out


def build_graph(
    image: np.ndarray,
    foreground_cost: np.ndarray,
    background_cost: np.ndarray,
    seeds: Seeds,
    *,
    pairwise_weight: float = 50.0,
    neighbourhood: int = 8,
    hard_seeds: str = "none",
) -> PixelGraph:
    """Builds the GraphCut network with one vectorised call per edge direction.

    Terminal capacities: source (foreground) ``background_cost - m`` and sink
    ``foreground_cost - m`` with ``m`` their per-pixel minimum, so cutting a pixel
    to the foreground pays its foreground cost (the shift ``m`` changes no cut).
    With ``hard_seeds`` a fixed seed's edge to its own terminal gets
    ``K = 1 + 8 gamma``, more than all its pairwise edges together, and the other
    edge 0, so no cut relabels it.

    Every input is checked before the graph is built: max-flow does not return
    on a NaN or infinite capacity.

    Args:
      image: finite ``[H, W, 3]`` (or ``[H, W]`` grey), at any scale.
      foreground_cost: finite ``[H, W]``, ``-log p(colour | foreground)``.
      background_cost: finite ``[H, W]``, ``-log p(colour | background)``.
      seeds: the seeds (used only with ``hard_seeds``, then ``[H, W]`` masks).
      pairwise_weight: ``gamma``, a finite number ``>= 0``.
      neighbourhood: 4 or 8.
      hard_seeds: ``"none"`` (the paper: no pixel is fixed), ``"foreground"``
        (fix the foreground seeds) or ``"both"`` (fix both seed sets; a pixel in
        both stays foreground).

    Returns:
      :class:`PixelGraph`.

    Raises:
      ValueError: naming the argument, for a wrong shape, NaN or infinite
        values, a negative ``pairwise_weight``, a ``neighbourhood`` other than 4
        or 8, an unknown ``hard_seeds``, or costs and ``pairwise_weight`` so large
        that the capacities overflow float64.
    """
    image = as_colours(image)
    shape = image.shape[:2]
    foreground_cost = as_cost(foreground_cost, shape, "foreground_cost")
    background_cost = as_cost(background_cost, shape, "background_cost")
    pairwise_weight = as_number(pairwise_weight, "pairwise_weight", low=0)
    neighbourhood = as_choice(neighbourhood, "neighbourhood", (4, 8))
    if not (isinstance(hard_seeds, str) and hard_seeds in HARD_SEEDS):
        raise ValueError(f"hard_seeds must be 'none', 'foreground' or 'both', got {hard_seeds!r}")
    edges = _contrast_weights(image, pairwise_weight, neighbourhood) if pairwise_weight > 0 else []
    shift = np.minimum(foreground_cost, background_cost)
    with np.errstate(over="ignore"):  # an overflow is refused below, with its cause
        source = background_cost - shift
        sink = foreground_cost - shift
    if hard_seeds != "none":
        hard = 1.0 + 8.0 * pairwise_weight
        foreground = seed_mask(seeds, "foreground", shape)
        background = (seed_mask(seeds, "background", shape) & ~foreground if hard_seeds == "both"
                      else np.zeros_like(foreground))
        source = np.where(foreground, hard, np.where(background, 0.0, source))
        sink = np.where(background, hard, np.where(foreground, 0.0, sink))
    # Max-flow adds capacities up along paths: their sum, with room to spare,
    # must be finite, or the cut is meaningless.
    with np.errstate(over="ignore"):
        total = 4.0 * (source.sum() + sink.sum() + sum(weights.sum() for _, weights in edges))
    if not np.isfinite(total):
        raise ValueError(
            "foreground_cost, background_cost and pairwise_weight are too large: the graph's capacities "
            f"overflow float64 (costs up to {max(np.abs(foreground_cost).max(), np.abs(background_cost).max())}, "
            f"pairwise_weight {pairwise_weight}; colour costs are a few tens of nats)"
        )
    graph = maxflow.Graph[float](shape[0] * shape[1], 4 * shape[0] * shape[1])
    nodes = graph.add_grid_nodes(shape)
    for (dy, dx), weights in edges:
        structure = np.zeros((3, 3))
        structure[1 + dy, 1 + dx] = 1.0
        graph.add_grid_edges(nodes, weights=weights, structure=structure, symmetric=True)
    graph.add_grid_tedges(nodes, source, sink)
    return PixelGraph(graph, nodes)


def solve(pixel_graph: PixelGraph) -> np.ndarray:
    """Runs max-flow and reads the cut.

    Args:
      pixel_graph: from :func:`build_graph` (consumed: max-flow mutates it).

    Returns:
      bool ``[H, W]``, True on the source (foreground) side.
    """
    if not isinstance(pixel_graph, PixelGraph):
        raise ValueError(f"pixel_graph must be a PixelGraph (from build_graph), got {type(pixel_graph).__name__}")
    pixel_graph.graph.maxflow()
    return ~pixel_graph.graph.get_grid_segments(pixel_graph.nodes)


def graphcut_segment(
    image: np.ndarray,
    foreground_cost: np.ndarray,
    background_cost: np.ndarray,
    seeds: Seeds,
    *,
    pairwise_weight: float = 50.0,
    neighbourhood: int = 8,
    hard_seeds: str = "none",
) -> np.ndarray:
    """The minimum-energy foreground mask (§3.2): :func:`build_graph` then :func:`solve`.

    Args:
      image: finite ``[H, W, 3]`` (or ``[H, W]`` grey), at any scale.
      foreground_cost: finite ``[H, W]`` unary cost of the foreground label.
      background_cost: finite ``[H, W]`` unary cost of the background label.
      seeds: the seeds; with ``hard_seeds`` every fixed foreground seed ends in
        the mask and no fixed background seed does.
      pairwise_weight: ``gamma`` of the contrast-sensitive term, finite ``>= 0``.
      neighbourhood: 4 or 8.
      hard_seeds: ``"none"`` (the paper), ``"foreground"`` or ``"both"``.

    Returns:
      bool ``[H, W]`` foreground mask.

    Raises:
      ValueError: as :func:`build_graph`, naming the argument.
    """
    return solve(
        build_graph(
            image, foreground_cost, background_cost, seeds,
            pairwise_weight=pairwise_weight, neighbourhood=neighbourhood, hard_seeds=hard_seeds,
        )
    )

"""Settings of the weakly supervised localisation pipeline (paper §3.2)."""

from __future__ import annotations

import dataclasses

from saliency_jax.localisation._inputs import as_choice, as_int, as_number

HARD_SEEDS = ("none", "foreground", "both")
COMPONENTS = ("largest", "salient")
# Colours are scaled to [0, 1], whose variance is at most 1/4: a regularisation
# of the covariances above 1 drowns every colour model in it.
MAX_REG_COVAR = 1.0


@dataclasses.dataclass(frozen=True)
class GraphCutConfig:
    """Settings of the saliency-seeded GraphCut localisation.

    ``GraphCutConfig()`` is the paper's pipeline (§3.2): the pixels above the
    95% and below the 30% quantile of the map only *estimate* the foreground and
    background colour models; the GraphCut then labels every pixel, seeds
    included, from its colour likelihoods and the contrast-sensitive smoothness
    term; the largest connected foreground component gives the box. Settings the
    paper does not give are GrabCut's (Rother et al., 2004: 5 full-covariance
    components per colour model, pairwise weight 50, 8-neighbourhood). The other
    fields select variants beyond the paper, all off by default: hard seed
    constraints (GrabCut's user strokes), iterated colour re-estimation, a
    saliency prior in the unary term.

    Numbers may be Python or numpy scalars; they are stored as ``int`` and
    ``float``. Booleans, strings and non-finite values are refused with a
    ``ValueError`` that names the field.

    Attributes:
      foreground_quantile: pixels whose saliency is above this quantile of the map
        seed the foreground (paper: 0.95).
      background_quantile: pixels whose saliency is below this quantile seed the
        background (paper: 0.30). Must be below ``foreground_quantile``.
      num_components: Gaussians per colour model. A seed set with fewer distinct
        colours than this gets one component per distinct colour instead.
      seed: random state of the mixture fits and of the seed subsampling, so a
        result depends only on its inputs.
      max_gmm_samples: each colour model is fitted on at most this many seed
        pixels, drawn without replacement (0 = all of them). The fit costs time
        linear in the samples; 5 full-covariance components in 3-D have 49 free
        parameters. The draw moves paper mode's boxes (a target's box IoU by 0.09
        between seeds on the generated scenes, 0.05 with every pixel), but more
        samples did not raise the mean box IoU beyond that spread
        (``docs/tuning/localisation.md``).
      gmm_max_iter: EM iterations per fit (a fit that stops here is used as it
        is; on the generated benchmark 10 gives the same boxes as 20 and 100, and
        the fits are a third of the pipeline's time).
      gmm_reg_covar: added to the covariance diagonals, in squared units of
        colours scaled to ``[0, 1]``; keeps a component of a flat region
        non-singular (1e-4 is a standard deviation of 2.5 grey levels). In
        ``(0, 1]``: a variance above 1 is wider than the whole colour cube and
        would make the colour models meaningless.
      pairwise_weight: ``gamma`` of the contrast-sensitive Potts term
        ``gamma / dist(p, q) * exp(-beta * |z_p - z_q|^2)`` (Boykov & Jolly, 2001;
        GrabCut's 50). 0 labels every pixel by its colour likelihoods alone.
      neighbourhood: 4 or 8 neighbours per pixel in the graph.
      hard_seeds: which seeds the cut may not relabel: ``"none"`` (the paper:
        seeds only estimate the colour models), ``"foreground"`` or ``"both"``
        (GrabCut's convention for user strokes). On speckled gradient maps hard
        seeds are scattered islands that the largest component can latch onto.
      iterations: rounds of colour estimation and cut. 1 is the paper; more
        re-fit both colour models on the previous cut's foreground and
        background (GrabCut's iteration) before cutting again.
      saliency_weight: weight ``w`` of a saliency prior in the unary term, 0 in
        the paper. With ``s`` the map scaled to ``[0, 1]`` by its minimum and
        maximum, labelling a pixel foreground costs ``w * (1 - s)`` more and
        background ``w * s`` more (in the same nats as the colour
        log-likelihoods).
      component: which connected foreground component is the object:
        ``"largest"`` (the paper) or ``"salient"``, the one with the largest sum
        of saliency (the map minus its minimum), which in a scene of several
        objects is the one the map points at rather than the biggest.
      support: pixels whose saliency, scaled to ``[0, 1]`` by the map's minimum
        and maximum, is below this fraction may not be foreground (a hard
        background constraint); 0 (the paper) allows every pixel. With a smooth
        class-specific map this keeps the cut off neighbouring objects the map
        does not point at.
      max_side: :func:`~saliency_jax.localisation.localise_photo` runs the cut on
        the photo with its longer side reduced to at most this many pixels
        (0 = never reduced); :func:`~saliency_jax.localisation.localise` ignores it.
      connectivity: connectivity of the largest component: 1 (4-neighbours) or
        2 (8-neighbours).
    """

    foreground_quantile: float = 0.95
    background_quantile: float = 0.30
    num_components: int = 5
    seed: int = 0
    max_gmm_samples: int = 500
    gmm_max_iter: int = 10
    gmm_reg_covar: float = 1e-4
    pairwise_weight: float = 50.0
    neighbourhood: int = 8
    hard_seeds: str = "none"
    connectivity: int = 2
    iterations: int = 1
    saliency_weight: float = 0.0
    max_side: int = 512
    component: str = "largest"
    support: float = 0.0

    def __post_init__(self):
        # Numbers are checked and stored as plain Python int / float, so a numpy
        # scalar gives the same (equal, hashable) config as the number it holds.
        def store(name, value):
            object.__setattr__(self, name, value)

        for name in ("foreground_quantile", "background_quantile"):
            store(name, as_number(getattr(self, name), name, low=0, high=1, open_low=True, open_high=True))
        if not self.background_quantile < self.foreground_quantile:
            raise ValueError(
                f"background_quantile ({self.background_quantile}) must be below "
                f"foreground_quantile ({self.foreground_quantile})"
            )
        for name, low in (("num_components", 1), ("max_gmm_samples", 0), ("gmm_max_iter", 1), ("seed", 0),
                          ("iterations", 1), ("max_side", 0)):
            store(name, as_int(getattr(self, name), name, low))
        if 0 < self.max_gmm_samples < self.num_components:
            raise ValueError(
                f"max_gmm_samples must be 0 (all pixels) or >= num_components "
                f"({self.num_components}), got {self.max_gmm_samples}"
            )
        store("gmm_reg_covar", as_number(self.gmm_reg_covar, "gmm_reg_covar", low=0, high=MAX_REG_COVAR,
                                         open_low=True))
        store("pairwise_weight", as_number(self.pairwise_weight, "pairwise_weight", low=0))
        store("neighbourhood", as_choice(self.neighbourhood, "neighbourhood", (4, 8)))
        if not (isinstance(self.hard_seeds, str) and self.hard_seeds in HARD_SEEDS):
            raise ValueError(f"hard_seeds must be one of {HARD_SEEDS}, got {self.hard_seeds!r}")
        store("saliency_weight", as_number(self.saliency_weight, "saliency_weight", low=0))
        store("support", as_number(self.support, "support", low=0, high=1, open_high=True))
        if not (isinstance(self.component, str) and self.component in COMPONENTS):
            raise ValueError(f"component must be one of {COMPONENTS}, got {self.component!r}")
        if 0 < self.max_side < 2:
            raise ValueError(f"max_side must be 0 (no limit) or >= 2, got {self.max_side}")
        store("connectivity", as_choice(self.connectivity, "connectivity", (1, 2)))


def check_config(config) -> GraphCutConfig:
    """``config`` if it is a :class:`GraphCutConfig`, else a ``ValueError`` naming it."""
    if not isinstance(config, GraphCutConfig):
        raise ValueError(f"config must be a GraphCutConfig, got {type(config).__name__}")
    return config

"""Settings of the weakly supervised localisation pipeline (paper §3.2)."""

from __future__ import annotations

import dataclasses
import math

HARD_SEEDS = ("none", "foreground", "both")
COMPONENTS = ("largest", "salient")


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
        parameters, and on the generated benchmark 250 to 1000 samples give the
        same masks.
      gmm_max_iter: EM iterations per fit (a fit that stops here is used as it
        is; on the generated benchmark 10 gives the same boxes as 20 and 100, and
        the fits are a third of the pipeline's time).
      gmm_reg_covar: added to the covariance diagonals, in squared units of
        colours scaled to ``[0, 1]``; keeps a component of a flat region
        non-singular (1e-4 is a standard deviation of 2.5 grey levels).
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
        for name in ("foreground_quantile", "background_quantile"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        if not self.background_quantile < self.foreground_quantile:
            raise ValueError(
                f"background_quantile ({self.background_quantile}) must be below "
                f"foreground_quantile ({self.foreground_quantile})"
            )
        for name, low in (("num_components", 1), ("max_gmm_samples", 0), ("gmm_max_iter", 1), ("seed", 0),
                          ("iterations", 1), ("max_side", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if 0 < self.max_gmm_samples < self.num_components:
            raise ValueError(
                f"max_gmm_samples must be 0 (all pixels) or >= num_components "
                f"({self.num_components}), got {self.max_gmm_samples}"
            )
        if not (isinstance(self.gmm_reg_covar, (int, float)) and self.gmm_reg_covar > 0):
            raise ValueError(f"gmm_reg_covar must be > 0, got {self.gmm_reg_covar!r}")
        if not (isinstance(self.pairwise_weight, (int, float)) and math.isfinite(self.pairwise_weight)
                and self.pairwise_weight >= 0):
            raise ValueError(f"pairwise_weight must be a finite number >= 0, got {self.pairwise_weight!r}")
        if self.neighbourhood not in (4, 8):
            raise ValueError(f"neighbourhood must be 4 or 8, got {self.neighbourhood!r}")
        if self.hard_seeds not in HARD_SEEDS:
            raise ValueError(f"hard_seeds must be one of {HARD_SEEDS}, got {self.hard_seeds!r}")
        if not (isinstance(self.saliency_weight, (int, float)) and not isinstance(self.saliency_weight, bool)
                and math.isfinite(self.saliency_weight) and self.saliency_weight >= 0):
            raise ValueError(f"saliency_weight must be a finite number >= 0, got {self.saliency_weight!r}")
        if not (isinstance(self.support, (int, float)) and not isinstance(self.support, bool)
                and 0.0 <= self.support < 1.0):
            raise ValueError(f"support must be a number in [0, 1), got {self.support!r}")
        if self.component not in COMPONENTS:
            raise ValueError(f"component must be one of {COMPONENTS}, got {self.component!r}")
        if 0 < self.max_side < 2:
            raise ValueError(f"max_side must be 0 (no limit) or >= 2, got {self.max_side}")
        if self.connectivity not in (1, 2):
            raise ValueError(f"connectivity must be 1 or 2, got {self.connectivity!r}")

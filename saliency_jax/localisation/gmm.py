"""Colour models of foreground and background: Gaussian mixtures (paper §3.2, as GrabCut)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController

if TYPE_CHECKING:
    from sklearn.mixture import GaussianMixture

from saliency_jax.localisation._inputs import as_int, as_number
from saliency_jax.localisation.config import MAX_REG_COVAR, GraphCutConfig
from saliency_jax.localisation.seeds import Seeds

_CONTROLLER: ThreadpoolController | None = None


def _one_blas_thread():
    """A context that keeps BLAS on one thread.

    The mixtures' linear algebra works on 3x3 matrices, where a multithreaded
    BLAS only adds synchronisation (10x slower on a busy machine). The controller
    is built once, after scikit-learn and SciPy have loaded their BLAS.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


class ColourModels(NamedTuple):
    """The fitted colour mixtures, over RGB scaled to ``[0, 1]``.

    Attributes:
      foreground: mixture fitted on the foreground seeds.
      background: mixture fitted on the background seeds.
    """

    foreground: GaussianMixture
    background: GaussianMixture


def fit_colour_model(
    pixels: np.ndarray,
    *,
    num_components: int = 5,
    seed: int = 0,
    max_samples: int = 500,
    max_iter: int = 20,
    reg_covar: float = 1e-4,
    name: str = "pixels",
) -> GaussianMixture:
    """A full-covariance Gaussian mixture of colours.

    At most ``max_samples`` pixels, drawn without replacement with ``seed``, are
    fitted (0 = all). Fallback: a set with fewer distinct colours than
    ``num_components`` (a handful of seeds, a flat region) gets one component per
    distinct colour, so the fit neither fails nor leaves empty components; a
    single pixel gives one Gaussian at its colour with covariance ``reg_covar``.

    Args:
      pixels: finite ``[N, 3]`` colours scaled to ``[0, 1]``, ``N >= 1``.
      num_components: the most components to fit, ``>= 1``.
      seed: random state of the subsample and of the mixture's initialisation, ``>= 0``.
      max_samples: the most pixels to fit on (0 = all).
      max_iter: EM iterations, ``>= 1``.
      reg_covar: added to every covariance diagonal, in ``(0, 1]`` (see
        :class:`GraphCutConfig`).
      name: how errors name ``pixels``.

    Returns:
      A fitted ``sklearn.mixture.GaussianMixture``.

    Raises:
      ValueError: naming the argument, for a wrong shape, NaN or infinite
        colours, or a setting out of range.
    """
    pixels = np.asarray(pixels, np.float64)
    if pixels.ndim != 2 or pixels.shape[1] != 3 or pixels.shape[0] == 0:
        raise ValueError(f"{name} must have shape [N, 3] with N >= 1, got shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    num_components = as_int(num_components, "num_components", 1)
    seed = as_int(seed, "seed", 0)
    max_samples = as_int(max_samples, "max_samples", 0)
    max_iter = as_int(max_iter, "max_iter", 1)
    reg_covar = as_number(reg_covar, "reg_covar", low=0, high=MAX_REG_COVAR, open_low=True)
    rng = np.random.default_rng(seed)
    if 0 < max_samples < len(pixels):
        pixels = pixels[np.sort(rng.choice(len(pixels), size=max_samples, replace=False))]
    distinct = len(np.unique(pixels, axis=0))
    if len(pixels) == 1:  # scikit-learn needs two samples; a repeat fits the same Gaussian
        pixels = np.repeat(pixels, 2, axis=0)
    # Imported here: scikit-learn takes about half a second to import, and a command that makes
    # saliency maps or class models, which builds the same argument parser, never needs it.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(
        n_components=min(num_components, distinct),
        covariance_type="full",
        reg_covar=reg_covar,
        max_iter=max_iter,
        init_params="k-means++",
        random_state=int(rng.integers(2**31 - 1)),
    )
    with warnings.catch_warnings(), _one_blas_thread():
        # A fit stopped by max_iter is still a usable, deterministic colour model.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(pixels)
    return model


def fit_colour_models(image: np.ndarray, seeds: Seeds, config: GraphCutConfig = GraphCutConfig()) -> ColourModels:
    """Fits the foreground and background colour models on their seed pixels.

    Args:
      image: float ``[H, W, 3]`` on the 0-255 scale.
      seeds: :class:`Seeds` of that image, each set non-empty.
      config: the mixture settings.

    Returns:
      :class:`ColourModels`.
    """
    colours = np.asarray(image, np.float64) / 255.0
    kwargs = dict(
        num_components=config.num_components,
        max_samples=config.max_gmm_samples,
        max_iter=config.gmm_max_iter,
        reg_covar=config.gmm_reg_covar,
    )
    return ColourModels(
        foreground=fit_colour_model(colours[seeds.foreground], seed=config.seed, name="foreground seeds", **kwargs),
        background=fit_colour_model(colours[seeds.background], seed=config.seed + 1, name="background seeds", **kwargs),
    )


def log_likelihood(model: GaussianMixture, colours: np.ndarray) -> np.ndarray:
    """``log p(colour)`` under a fitted full-covariance mixture, for many colours.

    The same value as ``model.score_samples`` (to float64 rounding), computed
    from the fitted ``weights_``, ``means_`` and ``precisions_cholesky_`` one
    component at a time with 3-column matrix products. That is half the time of
    ``score_samples`` on a 224x224 image, which validates its input and works
    through generic ``[N, K, D]`` arrays; no model is fitted here.

    Args:
      model: a fitted ``GaussianMixture`` with ``covariance_type="full"``.
      colours: ``[N, D]``.

    Returns:
      float64 ``[N]``.
    """
    colours = np.asarray(colours, np.float64)
    dim = colours.shape[1]
    per_component = np.empty((len(model.weights_), len(colours)))
    for k, (weight, mean, chol) in enumerate(zip(model.weights_, model.means_, model.precisions_cholesky_)):
        # Mahalanobis distance with the Cholesky factor of the precision: |(x - mu) L|^2.
        y = colours @ chol - mean @ chol
        constant = np.log(weight) + np.log(np.diagonal(chol)).sum() - 0.5 * dim * np.log(2 * np.pi)
        per_component[k] = constant - 0.5 * np.einsum("nd,nd->n", y, y)
    top = per_component.max(axis=0)
    return top + np.log(np.exp(per_component - top).sum(axis=0))


def colour_costs(models: ColourModels, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Negative log-likelihoods of every pixel's colour: the GraphCut unary terms.

    Args:
      models: the fitted :class:`ColourModels`.
      image: float ``[H, W, 3]`` on the 0-255 scale.

    Returns:
      ``(foreground_cost, background_cost)``, float64 ``[H, W]`` each:
      ``-log p(colour | foreground)`` and ``-log p(colour | background)``.
    """
    image = np.asarray(image, np.float64)
    colours = image.reshape(-1, 3) / 255.0
    with _one_blas_thread():
        foreground = -log_likelihood(models.foreground, colours).reshape(image.shape[:2])
        background = -log_likelihood(models.background, colours).reshape(image.shape[:2])
    return foreground, background

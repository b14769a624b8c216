"""Colour models of foreground and background: Gaussian mixtures (paper §3.2, as GrabCut)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController

if TYPE_CHECKING:
    from sklearn.mixture import GaussianMixture

from saliency_jax.localisation._inputs import as_colour_array, as_image, as_int, as_number
from saliency_jax.localisation.config import MAX_REG_COVAR, GraphCutConfig, check_config
from saliency_jax.localisation.seeds import Seeds, seed_mask

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
      pixels: finite ``[N, 3]`` colours scaled to ``[0, 1]`` (0-255 colours
        divided by 255: ``reg_covar`` and :func:`colour_costs` count in those
        units), ``N >= 1``.
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
      ValueError: naming the argument, for a wrong shape or dtype, NaN or
        infinite colours, colours outside ``[0, 1]``, or a setting out of range.
    """
    pixels = as_colour_array(pixels, name, 3)
    if pixels.shape[0] == 0:
        raise ValueError(f"{name} must have shape [N, 3] with N >= 1, got shape {pixels.shape}")
    if pixels.min() < 0 or pixels.max() > 1:
        raise ValueError(
            f"{name} must be colours scaled to [0, 1] (0-255 colours divided by 255), "
            f"got values from {pixels.min():g} to {pixels.max():g}"
        )
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
      image: ``[H, W, 3]`` (``[H, W]`` grey is accepted), on the scale
        :func:`~saliency_jax.localisation.localise` reads: integers on 0-255,
        floats on 0-1 when all within ``[0, 1]``, else on 0-255.
      seeds: :class:`Seeds` of that image: boolean (or 0/1) ``[H, W]`` masks,
        each selecting at least one pixel.
      config: the mixture settings, a :class:`GraphCutConfig`.

    Returns:
      :class:`ColourModels`.

    Raises:
      ValueError: naming the argument, for an image as ``localise`` refuses it,
        seeds that are not such masks of the image's height and width or that
        select no pixel, or a ``config`` that is not a ``GraphCutConfig``.
    """
    check_config(config)
    pixels = as_image(image, min_pixels=1)
    shape = pixels.shape[:2]
    foreground, background = (seed_mask(seeds, which, shape) for which in ("foreground", "background"))
    for which, mask in (("foreground", foreground), ("background", background)):
        if not mask.any():
            raise ValueError(f"seeds.{which} must select at least one pixel to fit a colour model on, got none")
    return _fit_colour_models(pixels, foreground, background, config)


def _fit_colour_models(
    pixels: np.ndarray, foreground: np.ndarray, background: np.ndarray, config: GraphCutConfig
) -> ColourModels:
    """:func:`fit_colour_models` of a checked float64 ``[H, W, 3]`` image on 0-255 and non-empty bool masks."""
    colours = pixels / 255.0
    kwargs = dict(
        num_components=config.num_components,
        max_samples=config.max_gmm_samples,
        max_iter=config.gmm_max_iter,
        reg_covar=config.gmm_reg_covar,
    )
    return ColourModels(
        foreground=fit_colour_model(colours[foreground], seed=config.seed, name="foreground seeds", **kwargs),
        background=fit_colour_model(colours[background], seed=config.seed + 1, name="background seeds", **kwargs),
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
      colours: finite ``[N, D]``, ``D`` the model's colour dimension.

    Returns:
      float64 ``[N]``.

    Raises:
      ValueError: naming the argument, for a model that is not a fitted
        full-covariance mixture, or colours of another shape, of non-numbers or
        with NaN or infinite values.
    """
    _check_mixture(model, "model")
    return _log_likelihood(model, as_colour_array(colours, "colours", model.means_.shape[1]))


def _check_mixture(model, name: str) -> None:
    """Refuses anything but a fitted full-covariance ``GaussianMixture`` (duck-typed: scikit-learn loads lazily)."""
    if getattr(model, "covariance_type", None) != "full":
        raise ValueError(f"{name} must be a GaussianMixture with covariance_type='full', got {type(model).__name__}"
                         + (f" with covariance_type={model.covariance_type!r}" if hasattr(model, "covariance_type")
                            else ""))
    if not all(hasattr(model, attribute) for attribute in ("weights_", "means_", "precisions_cholesky_")):
        raise ValueError(f"{name} must be a fitted GaussianMixture (see fit_colour_model), got an unfitted one")


def _log_likelihood(model: GaussianMixture, colours: np.ndarray) -> np.ndarray:
    """:func:`log_likelihood` of a checked model and checked float64 ``[N, D]`` colours."""
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
      models: the fitted :class:`ColourModels` (from :func:`fit_colour_models`).
      image: ``[H, W, 3]`` (``[H, W]`` grey is accepted), on the scale
        :func:`~saliency_jax.localisation.localise` reads: integers on 0-255,
        floats on 0-1 when all within ``[0, 1]``, else on 0-255.

    Returns:
      ``(foreground_cost, background_cost)``, float64 ``[H, W]`` each:
      ``-log p(colour | foreground)`` and ``-log p(colour | background)``.

    Raises:
      ValueError: naming the argument, for ``models`` that are not fitted
        :class:`ColourModels` or an image as ``localise`` refuses it.
    """
    if not isinstance(models, ColourModels):
        raise ValueError(f"models must be ColourModels (from fit_colour_models), got {type(models).__name__}")
    for which in ("foreground", "background"):
        _check_mixture(getattr(models, which), f"models.{which}")
        if getattr(models, which).means_.shape[1] != 3:
            raise ValueError(f"models.{which} must be a mixture of RGB colours (3-D), "
                             f"got one of {getattr(models, which).means_.shape[1]}-D points")
    return _colour_costs(models, as_image(image, min_pixels=1))


def _colour_costs(models: ColourModels, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`colour_costs` of checked models and a checked float64 ``[H, W, 3]`` image on 0-255."""
    colours = pixels.reshape(-1, 3) / 255.0
    with _one_blas_thread():
        foreground = -_log_likelihood(models.foreground, colours).reshape(pixels.shape[:2])
        background = -_log_likelihood(models.background, colours).reshape(pixels.shape[:2])
    return foreground, background

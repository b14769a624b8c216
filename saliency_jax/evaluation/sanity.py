"""Model-randomisation sanity check for saliency methods (Adebayo et al., 2018).

A map that explains a model's decision must depend on the model's weights.
Adebayo et al. re-initialise the weights from the top layer down, one layer more
at each stage ("cascading randomisation"), and measure how similar each map of
the randomised model is to the original one with the Spearman rank correlation.
The gradient map (the paper's saliency, §3.1) decorrelates as soon as the top
layers are random; deconvnet and guided back-propagation (§4) are known to keep
much of their picture, since their ReLU rule ignores the forward gating
(deconvnet) or mostly reconstructs the image (guided).

The randomised models and their maps are computed with JAX; the rank
correlations with :func:`scipy.stats.spearmanr` on the host.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from saliency_jax import _checks
from saliency_jax.backprop_rules import RULES, check_rule
from saliency_jax.reconstruction import list_layers
from saliency_jax.saliency import input_gradients, saliency_from_gradients
from saliency_jax.types import LogitsFn

Stage = str | Sequence[str]


class RandomizationResult(NamedTuple):
    """Similarity of each rule's maps to the original ones, stage by stage.

    Attributes:
      stages: ``S`` stage names; at stage ``s`` the layers of stages ``0..s`` are
        random (cascading) or only stage ``s``'s (independent). A stage of several
        layers is named ``"a+b"``.
      rules: ``R`` backward rules compared.
      classes: int ``[B]``, the class explained, the original model's top-1 unless given.
      rank_correlation: float64 ``[R, S, B]``, Spearman correlation of the saliency
        maps ``max_c |w|`` (absolute values, as the paper's maps).
      signed_rank_correlation: float64 ``[R, S, B]``, Spearman correlation of the
        signed input signals ``w`` (all pixels and channels).
      maps: float32 ``[R, 1 + S, B, H, W]``, the saliency maps; index 0 along the
        second axis is the original model's.
    """

    stages: tuple[str, ...]
    rules: tuple[str, ...]
    classes: np.ndarray
    rank_correlation: np.ndarray
    signed_rank_correlation: np.ndarray
    maps: np.ndarray


def _variables_params(params: Any) -> tuple[Any, bool]:
    """The ``params`` collection of a Flax variables dict, or ``params`` itself."""
    if isinstance(params, dict) and "params" in params and isinstance(params["params"], dict):
        return params["params"], True
    return params, False


def cascade_order(logits_fn: LogitsFn, params: Any, images: jax.Array) -> tuple[str, ...]:
    """Top-level layers that hold weights, from the top of the model down.

    The order is the reverse of the order in which the model calls its top-level
    modules (found with :func:`~saliency_jax.reconstruction.list_layers`), so it
    does not depend on how the weights dict happens to be sorted. For
    EfficientNet-Lite0: ``fc, bn1, conv_head, blocks_15, ..., blocks_0, bn0,
    conv_stem``. Keys the forward pass does not reach through a module (e.g. a
    model that is not built on Flax Linen) follow in reverse dict order.

    Args:
      logits_fn: the model.
      params: its weights: a dict keyed by layer, or a Flax variables dict whose
        ``"params"`` collection is.
      images: ``[B, H, W, C]`` (only the shape matters).

    Returns:
      Layer names, top first.
    """
    tree, _ = _variables_params(params)
    if not isinstance(tree, dict) or not tree:
        raise ValueError(f"params must be a non-empty dict keyed by layer name, got {type(tree).__name__}")
    called = []
    for layer in list_layers(logits_fn, params, images):
        top = layer.name.split("/")[0]
        if top and top in tree and top not in called:
            called.append(top)
    rest = [k for k in reversed(list(tree)) if k not in called]
    return tuple(reversed(called)) + tuple(rest)


def _stage_names(stage: Stage) -> tuple[str, ...]:
    if not isinstance(stage, (str, Sequence)):
        raise ValueError(f"layers: each stage must be a layer name or a sequence of names, got {stage!r}")
    names = (stage,) if isinstance(stage, str) else tuple(stage)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"layers: each stage must be a layer name or a sequence of names, got {stage!r}")
    return names


@jax.jit
def _noise_like(key: jax.Array, leaf: jax.Array) -> jax.Array:
    """Zero-mean Gaussian noise with the leaf's root-mean-square as standard deviation."""
    rms = jnp.sqrt(jnp.mean(jnp.square(leaf.astype(jnp.float32))))
    return (rms * jax.random.normal(key, leaf.shape, jnp.float32)).astype(leaf.dtype)


def randomize_layers(params: Any, layers: Sequence[str], *, key: jax.Array) -> Any:
    """Re-initialises the weights of the named top-level layers.

    Each array of a named layer is replaced by Gaussian noise with zero mean and
    the array's own root-mean-square as standard deviation, so the random layer
    works on the original scale (an all-ones batch-norm scale becomes ``N(0, 1)``,
    an all-zeros bias stays zero). A layer's noise depends only on ``key`` and the
    layer's name, so a layer randomised at one stage of a cascade keeps the same
    random weights at the next. Other collections of a Flax variables dict (e.g.
    batch-norm statistics) are kept.

    Args:
      params: a dict keyed by layer name, or a Flax variables dict.
      layers: names of top-level layers to randomise.
      key: PRNG key.

    Returns:
      A tree of the same structure, shapes and dtypes.
    """
    _checks.check_key(key, "randomize_layers")
    if isinstance(layers, str):
        raise ValueError(f"layers must be a sequence of layer names, got the string {layers!r} (use [{layers!r}])")
    if not isinstance(layers, Sequence) or not all(isinstance(name, str) for name in layers):
        raise ValueError(f"layers must be a sequence of layer names, got {layers!r}")
    tree, is_variables = _variables_params(params)
    if not isinstance(tree, Mapping):
        raise ValueError(f"params must be a mapping of layer names to weights (or Flax variables), "
                         f"got {type(params).__name__}")
    layers = tuple(layers)
    unknown = [name for name in layers if name not in tree]
    if unknown:
        raise ValueError(f"layers: no layer named {unknown} in params; layers: {list(tree)}")
    new_tree = dict(tree)
    for name in layers:
        layer_key = jax.random.fold_in(key, _name_seed(name))
        leaves, treedef = jax.tree_util.tree_flatten(tree[name])
        keys = jax.random.split(layer_key, max(len(leaves), 1))
        new_leaves = [_noise_like(k, jnp.asarray(leaf)) for leaf, k in zip(leaves, keys)]
        new_tree[name] = jax.tree_util.tree_unflatten(treedef, new_leaves)
    if is_variables:
        return {**params, "params": new_tree}
    return new_tree


def _name_seed(name: str) -> int:
    """A stable 31-bit integer for a layer name (Python's ``hash`` is salted per process)."""
    value = 0
    for byte in name.encode("utf-8"):
        value = (value * 131 + byte) % (2**31 - 1)
    return value


def spearman_rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between paired maps, one value per pair.

    Args:
      a: ``[B, ...]``.
      b: ``[B, ...]``, the same shape.

    Returns:
      float64 ``[B]`` in ``[-1, 1]``; ``nan`` where a map is constant or holds NaN.
    """
    from scipy import stats

    for name, maps in (("a", a), ("b", b)):
        if np.asarray(maps).dtype.kind not in "biuf":  # complex would lose its imaginary part
            raise ValueError(f"{name} must hold real numbers, got dtype {np.asarray(maps).dtype}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape [B, ...], got {a.shape} and {b.shape}")
    if a.ndim < 2:
        raise ValueError(f"a and b must be batches of maps [B, ...] (rank >= 2), got shape {a.shape} (use a[None])")
    out = np.empty(a.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        for i in range(a.shape[0]):
            out[i] = stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic
    return out


@functools.partial(jax.jit, static_argnames=("logits_fn", "rule"))
def _gradients(logits_fn, params, images, classes, rule):
    return input_gradients(logits_fn, params, images, classes, rule=rule).gradients


def cascading_randomization(
    logits_fn: LogitsFn,
    params: Any,
    images: jax.Array,
    classes: jax.Array | int | None = None,
    *,
    key: jax.Array,
    layers: Sequence[Stage] | None = None,
    rules: Sequence[str] = RULES,
    cascading: bool = True,
) -> RandomizationResult:
    """Adebayo et al.'s model-randomisation test of the saliency maps of each rule.

    The original model's maps are compared, by Spearman rank correlation, with the
    maps of models whose weights are re-initialised (:func:`randomize_layers`)
    from the top layer down. The class explained stays the original one.

    Each rule's map function is compiled once (weights are an argument), so a
    stage costs one forward and backward pass per rule. To bound the cost, pass
    only the first few stages as ``layers``.

    Args:
      logits_fn: the model; hashable, it is a static argument of ``jax.jit``.
      params: its weights (a dict keyed by layer, or a Flax variables dict).
      images: float32 ``[B, H, W, C]``.
      classes: int ``[B]``, a scalar, or ``None`` for the original top-1 class.
      key: PRNG key for the random weights.
      layers: the stages, top first; each a layer name or a group of names
        randomised together. Default: every layer of :func:`cascade_order`.
      rules: backward rules to test.
      cascading: randomise every stage so far (Adebayo's cascading test) or
        only the current one (their independent test).

    Returns:
      :class:`RandomizationResult`.
    """
    _checks.check_images(images)
    images = jnp.asarray(images, jnp.float32)
    _checks.check_key(key, "cascading_randomization")
    if not isinstance(cascading, (bool, np.bool_)):
        raise ValueError(f"cascading must be True or False, got {cascading!r}")
    # A string is a sequence of its letters: "fc" would be the stages "f" and "c".
    if isinstance(rules, str):
        raise ValueError(f"rules must be a sequence of rule names, got the string {rules!r} (use ({rules!r},))")
    if isinstance(layers, str):
        raise ValueError(f"layers must be a sequence of stages, got the string {layers!r} (use [{layers!r}])")
    if not isinstance(rules, Sequence):
        raise ValueError(f"rules must be a sequence of rule names, got {rules!r}")
    if layers is not None and not isinstance(layers, Sequence):
        raise ValueError(f"layers must be None or a sequence of stages, got {layers!r}")
    rules = tuple(check_rule(r, "rules") for r in rules)
    if not rules:
        raise ValueError("rules must name at least one rule")
    if layers is None:
        layers = cascade_order(logits_fn, params, images)
    stages = tuple(_stage_names(s) for s in layers)
    if not stages:
        raise ValueError("layers must name at least one stage")

    logits = _checks.model_logits(logits_fn, params, images)
    if classes is None:
        classes = jnp.argmax(logits, axis=-1)
    else:
        _checks.check_classes(classes, logits.shape[-1], images.shape[0])
    classes = jnp.broadcast_to(_checks.class_ids(classes), images.shape[:1])

    originals = [np.asarray(_gradients(logits_fn, params, images, classes, rule)) for rule in rules]
    maps = [[np.asarray(saliency_from_gradients(g))] for g in originals]
    abs_corr = np.empty((len(rules), len(stages), images.shape[0]))
    signed = np.empty_like(abs_corr)
    for s in range(len(stages)):
        chosen = [n for stage in stages[: s + 1] for n in stage] if cascading else list(stages[s])
        randomized_params = randomize_layers(params, chosen, key=key)
        for r, rule in enumerate(rules):
            randomized = np.asarray(_gradients(logits_fn, randomized_params, images, classes, rule))
            maps[r].append(np.asarray(saliency_from_gradients(randomized)))
            abs_corr[r, s] = spearman_rank_correlation(maps[r][0], maps[r][-1])
            signed[r, s] = spearman_rank_correlation(originals[r], randomized)
    return RandomizationResult(
        stages=tuple("+".join(s) for s in stages),
        rules=rules,
        classes=np.asarray(classes),
        rank_correlation=abs_corr,
        signed_rank_correlation=signed,
        maps=np.stack([np.stack(m) for m in maps]).astype(np.float32),
    )

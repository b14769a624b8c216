"""Class model visualisation (Simonyan, Vedaldi & Zisserman, 2013, §2).

For a class ``c`` the paper finds the image ``I`` maximising

    S_c(I) - lambda * ||I||_2^2

by gradient ascent with the network's weights fixed, where ``S_c`` is the
*unnormalised* class score. It starts from the zero image and adds the mean image
back for display. Here the optimised image ``z`` lives in the model's preprocessed
space (zero = the mean image) and the model is fed ``pixel_mean + pixel_scale * z``
on its raw scale; the L2 term is ``lambda * sum(z ** 2)`` in preprocessed units.
The softmax posterior ``P_c`` (or ``log P_c``) can be maximised instead, to show why
the paper avoids it: ``P_c`` also rises by pushing the *other* classes down, and
its gradient vanishes once the model is sure.

Two modes:

* ``"paper"``: exactly §2: pixels are the variable, L2 is the only prior.
* ``"regularised"``: beyond the paper: a decorrelated Fourier parametrisation
  (:mod:`saliency_jax.parametrization`) and image priors
  (:mod:`saliency_jax.regularizers`: jitter, random rescaling, total variation,
  blurring every few steps, pixel clipping), which give images that still read as
  the class after a shift or rescale instead of fragile adversarial patterns.

Many classes run at once, as a batch of class images (one per class). The
model's examples are independent, so one backward pass of the summed objectives
gives every image its own gradient; the optimiser's update is ``vmap``-ed over the
classes, so any optax transformation (even one that looks at a global norm) treats
each class image on its own; and each class image draws its randomness from
``fold_in(key, class)``. A batch of ``K`` classes is therefore the same as ``K``
single runs with the same key.

The whole run is one ``lax.scan``; :func:`class_model_ascent` also exposes the
step and a ``run`` over a given number of steps, so a caller can advance a jitted
chunk at a time (e.g. with a progress bar).

The defaults (the paper gives no lambda, step size or step count) and how they were
chosen on EfficientNet-Lite0 are in ``docs/tuning/class_model.md``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from saliency_jax import _batching, _checks
from saliency_jax import regularizers as regs
from saliency_jax.parametrization import Parametrization, make_parametrization
from saliency_jax.parallel import vary_like
from saliency_jax.scores import select_scores
from saliency_jax.types import Classifier, LogitsFn

MODES = ("paper", "regularised")
OBJECTIVES = ("score", "softmax", "log_softmax")


class ModeDefaults(NamedTuple):
    """The defaults of one mode (see the module docstring for how they were chosen).

    Attributes:
      steps: optimiser updates.
      learning_rate: Adam's step size, in preprocessed pixel units.
      l2_weight: the paper's ``lambda``, per squared preprocessed pixel unit.
      parametrization: ``"pixels"`` or ``"fourier"``.
    """

    steps: int
    learning_rate: float
    l2_weight: float
    parametrization: str


PAPER_DEFAULTS = ModeDefaults(steps=100, learning_rate=0.05, l2_weight=1e-3, parametrization="pixels")
REGULARISED_DEFAULTS = ModeDefaults(steps=200, learning_rate=0.01, l2_weight=1e-3, parametrization="fourier")

# The regularised mode's image priors (beyond the paper), in preprocessed units.
JITTER_PIXELS = 8
SCALE_RANGE = (0.85, 1.15)
TV_WEIGHT = 0.05
BLUR_EVERY = 4
BLUR_SIGMA = 0.5


def mode_defaults(mode: str) -> ModeDefaults:
    """The :class:`ModeDefaults` of ``"paper"`` or ``"regularised"``."""
    if mode == "paper":
        return PAPER_DEFAULTS
    if mode == "regularised":
        return REGULARISED_DEFAULTS
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def pixel_bounds(pixel_mean: float, pixel_scale: float, pixel_range: tuple[float, float]) -> tuple[float, float]:
    """The valid raw pixel range mapped into the preprocessed space.

    Raises:
      ValueError: naming the argument, for a ``pixel_range`` that is not two finite
        numbers ``low < high``, a ``pixel_scale`` that is not a finite number ``> 0``,
        or bounds that float32 cannot hold once scaled.
    """
    _checks.check_number(pixel_mean, "pixel_mean", low=-_checks.FLOAT32_MAX, high=_checks.FLOAT32_MAX)
    _check_number("pixel_scale", pixel_scale, positive=True)
    if not isinstance(pixel_range, (tuple, list)) or len(pixel_range) != 2:
        raise ValueError(f"pixel_range must be (low, high) with finite low < high, got {pixel_range!r}")
    low, high = (_checks.check_number(v, "pixel_range") for v in pixel_range)
    if not low < high:
        raise ValueError(f"pixel_range must be (low, high) with finite low < high, got {pixel_range!r}")
    bounds = (low - pixel_mean) / pixel_scale, (high - pixel_mean) / pixel_scale
    if max(abs(b) for b in bounds) > _checks.FLOAT32_MAX:
        raise ValueError(f"pixel_scale must keep pixel_range within float32 once scaled, got pixel_scale "
                         f"{pixel_scale:g} for pixel_range {tuple(pixel_range)}")
    return bounds


def default_regularizer(
    *, pixel_mean: float = 0.0, pixel_scale: float = 1.0, pixel_range: tuple[float, float] | None = None
) -> regs.Regularizer:
    """The regularised mode's priors: jitter, random rescale, TV, blur, clipping.

    Args:
      pixel_mean: raw value of the zero image.
      pixel_scale: raw units per preprocessed unit.
      pixel_range: the valid raw range to clip to, or ``None`` for no clipping.

    Returns:
      :func:`~saliency_jax.regularizers.compose` of the priors listed by the
      module constants ``JITTER_PIXELS``, ``SCALE_RANGE``, ``TV_WEIGHT``,
      ``BLUR_EVERY`` and ``BLUR_SIGMA``.
    """
    parts = [
        regs.jitter(JITTER_PIXELS),
        regs.random_scale(*SCALE_RANGE),
        regs.total_variation(TV_WEIGHT),
        regs.blur_every(BLUR_EVERY, BLUR_SIGMA),
    ]
    if pixel_range is not None:
        parts.append(regs.clip_pixels(*pixel_bounds(pixel_mean, pixel_scale, pixel_range)))
    return regs.compose(*parts)


class ClassModelState(NamedTuple):
    """Where an ascent is: everything a step reads and writes.

    Attributes:
      variables: the parametrisation's variables, one per class, leading axis ``[K]``.
      opt_state: the optimiser's state, ``vmap``-ed over the classes.
      classes: int32 ``[K]``, the target class of each image.
      keys: ``[K]`` PRNG keys, one stream per class image.
      step: int32 ``[]``, updates made so far.
    """

    variables: Any
    opt_state: optax.OptState
    classes: jax.Array
    keys: jax.Array
    step: jax.Array


class ClassModelHistory(NamedTuple):
    """Per-step traces, recorded *before* each update.

    Attributes:
      scores: float32 ``[T, K]``, the unnormalised score ``S_c`` of the image the
        model scored at each step (after the mode's random transforms, if any).
      objectives: float32 ``[T, K]``, the objective maximised at that step
        (target minus L2 and other penalties).
    """

    scores: jax.Array
    objectives: jax.Array


class ClassModelResult(NamedTuple):
    """Class model images and how the model scores them.

    Attributes:
      images: float32 ``[K, H, W, C]`` on the model's raw scale: the mean image
        added back and, with a ``pixel_range``, clipped to it. This is the image to
        display and save; feeding it to the model reproduces ``scores``.
      scores: float32 ``[K]``, ``S_c`` of ``images`` for each target class.
      logits: float32 ``[K, N]``, all class scores of ``images``.
      classes: int32 ``[K]``, the target classes.
      history: :class:`ClassModelHistory` with ``[T, K]`` traces.
    """

    images: jax.Array
    scores: jax.Array
    logits: jax.Array
    classes: jax.Array
    history: ClassModelHistory


class ClassModelAscent(NamedTuple):
    """The pure pieces of one configured ascent (like an optax transformation).

    Attributes:
      init: ``(params, classes, *, key) -> ClassModelState``: zero images for int
        ``[K]`` (or scalar) ``classes``; checks the classes when concrete.
      step: ``(params, state) -> (state, (scores [K], objectives [K]))``: one update.
      run: ``(params, state, num_steps) -> (state, ClassModelHistory)``: ``num_steps``
        updates in one ``lax.scan``; ``num_steps`` must be static under ``jit``.
      render: ``state -> [K, H, W, C]``: the current images on the raw scale, mean
        added, clipped to ``pixel_range`` if given.
      finish: ``(params, state, history) -> ClassModelResult``: renders and scores.
    """

    init: Callable[..., ClassModelState]
    step: Callable[..., tuple[ClassModelState, tuple[jax.Array, jax.Array]]]
    run: Callable[..., tuple[ClassModelState, ClassModelHistory]]
    render: Callable[[ClassModelState], jax.Array]
    finish: Callable[..., ClassModelResult]


MAX_STEP_WEIGHT = 1e6  # of learning_rate and l2_weight


def _check_number(name: str, value, *, positive: bool, high: float = _checks.FLOAT32_MAX) -> None:
    # Bounded by float32's range, in which the ascent runs: 1e39 would turn the images into NaN.
    _checks.check_number(value, name, low=0.0, high=high, open_low=positive)


def _check_class_list(classes) -> jax.Array:
    """``classes`` as int ids if they are a scalar or a non-empty ``[K]`` array, else ``ValueError``."""
    classes = _checks.class_ids(classes)
    if classes.ndim > 1 or classes.size == 0:
        raise ValueError(f"classes must be an int scalar or a non-empty [K] array, got shape {classes.shape}")
    return classes


def check_steps(steps, name: str = "steps") -> int:
    """Returns ``steps`` if it is an int in ``[1, 2**31 - 1]``, else raises ``ValueError``."""
    return _checks.check_int(steps, name, 1, _checks.MAX_COUNT)


def class_model_ascent(
    logits_fn: LogitsFn,
    *,
    image_shape: tuple[int, int, int] = (224, 224, 3),
    mode: str = "paper",
    l2_weight: float | None = None,
    learning_rate: float | None = None,
    optimizer: optax.GradientTransformation | None = None,
    regularizer: regs.Regularizer | None = None,
    parametrization: str | Parametrization | None = None,
    objective: str = "score",
    pixel_mean: float = 0.0,
    pixel_scale: float = 1.0,
    pixel_range: tuple[float, float] | None = None,
) -> ClassModelAscent:
    """Configures class model gradient ascent (paper §2); see the module docstring.

    Args:
      logits_fn: the model, ``(params, [K, H, W, C]) -> [K, N]`` unnormalised scores
        on its raw input scale; examples must be independent.
      image_shape: ``(H, W, C)`` of the images the model takes.
      mode: ``"paper"`` (L2 only, pixels) or ``"regularised"`` (Fourier
        parametrisation and :func:`default_regularizer`).
      l2_weight: the paper's ``lambda >= 0`` on ``sum(z ** 2)``, at most
        :data:`MAX_STEP_WEIGHT`; the mode's default if ``None``.
      learning_rate: Adam's step size ``> 0``, at most :data:`MAX_STEP_WEIGHT`;
        the mode's default if ``None``.
        Ignored when ``optimizer`` is given.
      optimizer: any optax transformation (it *minimises* the negated objective);
        ``optax.adam(learning_rate)`` if ``None``.
      regularizer: image priors for ``mode="regularised"`` (default
        :func:`default_regularizer`); must be ``None`` in paper mode.
      parametrization: ``"pixels"``, ``"fourier"`` or a
        :class:`~saliency_jax.parametrization.Parametrization`; the mode's default
        if ``None``. Must be pixels in paper mode.
      objective: ``"score"`` (the paper's ``S_c``), ``"softmax"`` (``P_c``) or
        ``"log_softmax"`` (``log P_c``).
      pixel_mean: raw value of the zero image (the "mean image" added back).
      pixel_scale: raw units per preprocessed unit.
      pixel_range: the valid raw range ``(low, high)``: the final images are
        clipped to it (and every step, in regularised mode by default); ``None``
        for no clipping.

    Returns:
      A :class:`ClassModelAscent`.
    """
    defaults = mode_defaults(mode)
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C) with positive integer sizes, got {image_shape!r}")
    try:
        image_shape = tuple(_checks.check_int(size, "image_shape", 1) for size in image_shape)
    except ValueError:
        raise ValueError(f"image_shape must be (H, W, C) with positive integer sizes, got {image_shape!r}") from None
    _checks.check_number(pixel_mean, "pixel_mean", low=-_checks.FLOAT32_MAX, high=_checks.FLOAT32_MAX)
    if not isinstance(objective, str) or objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    l2_weight = defaults.l2_weight if l2_weight is None else l2_weight
    # At most MAX_STEP_WEIGHT: the penalty's gradient 2 * lambda * z overflows float32 from lambda ~ 1.7e38
    # (the images all NaN), and far below that the ascent is all penalty or all step.
    _check_number("l2_weight (lambda)", l2_weight, positive=False, high=MAX_STEP_WEIGHT)
    if optimizer is None:
        learning_rate = defaults.learning_rate if learning_rate is None else learning_rate
        _check_number("learning_rate", learning_rate, positive=True, high=MAX_STEP_WEIGHT)
        optimizer = optax.adam(learning_rate)
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(f"optimizer must be an optax GradientTransformation, got {type(optimizer).__name__}")
    _check_number("pixel_scale", pixel_scale, positive=True)
    if pixel_range is not None:
        if not isinstance(pixel_range, (tuple, list)) or len(pixel_range) != 2:
            raise ValueError(f"pixel_range must be (low, high) with finite low < high, got {pixel_range!r}")
        low, high = (_checks.check_number(v, "pixel_range", low=-_checks.FLOAT32_MAX, high=_checks.FLOAT32_MAX)
                     for v in pixel_range)
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ValueError(f"pixel_range must be (low, high) with finite low < high, got {pixel_range}")
    if mode == "paper":
        if regularizer is not None:
            raise ValueError("regularizer is only used with mode='regularised' (paper mode is L2 only)")
        if parametrization not in (None, "pixels"):
            raise ValueError("paper mode optimises pixels; use mode='regularised' for another parametrization")
        regularizer = regs.Regularizer()
    elif regularizer is None:
        regularizer = default_regularizer(pixel_mean=pixel_mean, pixel_scale=pixel_scale, pixel_range=pixel_range)
    elif not isinstance(regularizer, regs.Regularizer):
        raise ValueError(f"regularizer must be a Regularizer, got {type(regularizer).__name__}")
    param = make_parametrization(defaults.parametrization if parametrization is None else parametrization, image_shape)
    to_images = jax.vmap(param.to_image)
    from_images = jax.vmap(param.from_image)

    def model_input(z):
        return pixel_mean + pixel_scale * z

    def objective_fn(variables, params, classes, keys):
        z = to_images(variables)
        seen = z if regularizer.transform is None else jax.vmap(regularizer.transform)(keys, z)
        logits = _checks.model_logits(logits_fn, params, model_input(seen), floating=True)
        scores = select_scores(logits, classes)
        if objective == "score":
            target = scores
        elif objective == "softmax":
            target = select_scores(jax.nn.softmax(logits, axis=-1), classes)
        else:
            target = select_scores(jax.nn.log_softmax(logits, axis=-1), classes)
        value = target - l2_weight * jnp.sum(jnp.square(z), axis=(1, 2, 3))
        if regularizer.penalty is not None:
            value = value - jax.vmap(regularizer.penalty)(z)
        # Examples are independent, so the gradient of the sum is each image's own.
        return -jnp.sum(value), (scores, value)

    def init(params, classes, *, key) -> ClassModelState:
        _checks.check_key(key, "the class models")
        classes = jnp.atleast_1d(_check_class_list(classes))
        zeros = jnp.zeros((classes.shape[0], *image_shape), jnp.float32)
        logits = jax.eval_shape(logits_fn, params, model_input(zeros))
        if len(logits.shape) != 2 or logits.shape[0] != classes.shape[0]:
            raise ValueError(
                f"logits_fn must map [K, {', '.join(map(str, image_shape))}] images to [K, N] logits, "
                f"got {logits.shape}"
            )
        _checks.check_classes(classes, logits.shape[1], None)
        classes = classes.astype(jnp.int32)
        # Inside ``shard_map`` (classes split over devices) the zero images vary like the classes:
        # a replicated start would have its gradient summed over the shards.
        variables = vary_like(jax.vmap(lambda _: param.init())(classes), classes, params, key)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, classes)
        opt_state = vary_like(jax.vmap(optimizer.init)(variables), variables)
        return ClassModelState(variables, opt_state, classes, keys, jnp.zeros((), jnp.int32))

    def step(params, state: ClassModelState):
        split = jax.vmap(lambda k: jax.random.split(k, 3))(state.keys)
        keys, transform_keys, project_keys = split[:, 0], split[:, 1], split[:, 2]
        grads, (scores, values) = jax.grad(objective_fn, has_aux=True)(
            state.variables, params, state.classes, transform_keys
        )
        updates, opt_state = jax.vmap(optimizer.update)(grads, state.opt_state, state.variables)
        variables = optax.apply_updates(state.variables, updates)
        if regularizer.project is not None:
            z = jax.vmap(regularizer.project, in_axes=(0, 0, None))(project_keys, to_images(variables), state.step)
            variables = from_images(z)
        new_state = ClassModelState(variables, opt_state, state.classes, keys, state.step + 1)
        return new_state, (scores, values)

    def run(params, state: ClassModelState, num_steps: int):
        check_steps(num_steps, "num_steps")
        state, (scores, values) = jax.lax.scan(lambda s, _: step(params, s), state, None, length=num_steps)
        return state, ClassModelHistory(scores, values)

    def render(state: ClassModelState) -> jax.Array:
        images = model_input(to_images(state.variables))
        if pixel_range is not None:
            images = jnp.clip(images, pixel_range[0], pixel_range[1])
        return images

    def finish(params, state: ClassModelState, history: ClassModelHistory) -> ClassModelResult:
        images = render(state)
        logits = _checks.model_logits(logits_fn, params, images)
        # Under jit a class id outside [0, K) is not known while tracing: its image is NaN,
        # never the start image or another class's.
        valid = (state.classes >= 0) & (state.classes < logits.shape[-1])
        images = jnp.where(valid.reshape((-1,) + (1,) * (images.ndim - 1)), images, jnp.nan)
        return ClassModelResult(images, select_scores(logits, state.classes), logits, state.classes, history)

    return ClassModelAscent(init, step, run, render, finish)


def class_models(
    logits_fn: LogitsFn,
    params: Any,
    classes,
    *,
    key: jax.Array,
    steps: int | None = None,
    mode: str = "paper",
    **kwargs,
) -> ClassModelResult:
    """Class model visualisation (paper §2): one image per class by gradient ascent.

    Jit-friendly: bind ``logits_fn`` and the keyword settings with
    ``functools.partial`` and ``jax.jit`` the rest (``classes`` and ``key`` may be
    traced; class ids are range-checked only when concrete).

    Args:
      logits_fn: the model, ``(params, [K, H, W, C]) -> [K, N]`` unnormalised scores.
      params: its weights.
      classes: int ``[K]`` target classes (or a scalar for one), ``0 <= c < N``.
      key: PRNG key; class ``c``'s image uses ``fold_in(key, c)``.
      steps: optimiser updates ``>= 1``; the mode's default if ``None``.
      mode: ``"paper"`` or ``"regularised"``.
      **kwargs: the settings of :func:`class_model_ascent` (``image_shape``,
        ``l2_weight``, ``learning_rate``, ``optimizer``, ``regularizer``,
        ``parametrization``, ``objective``, ``pixel_mean``, ``pixel_scale``,
        ``pixel_range``).

    Returns:
      :class:`ClassModelResult` with ``images`` ``[K, H, W, C]`` on the raw scale.
    """
    steps = mode_defaults(mode).steps if steps is None else steps
    check_steps(steps)
    ascent = class_model_ascent(logits_fn, mode=mode, **kwargs)
    state = ascent.init(params, classes, key=key)
    state, history = ascent.run(params, state, steps)
    return ascent.finish(params, state, history)


class ImageSettings(NamedTuple):
    """How a model takes its images, as keyword settings of :func:`class_models`.

    Attributes:
      image_shape: ``(H, W, C)``.
      pixel_mean: raw value of the zero image (the mean image).
      pixel_scale: raw units per preprocessed unit.
      pixel_range: the valid raw range, or ``None``.
    """

    image_shape: tuple[int, int, int]
    pixel_mean: float
    pixel_scale: float
    pixel_range: tuple[float, float] | None


def classifier_settings(
    classifier: Classifier, pixel_range: tuple[float, float] | None = (0.0, 255.0)
) -> ImageSettings:
    """The :class:`ImageSettings` of a :class:`~saliency_jax.types.Classifier`.

    Pass ``**settings._asdict()`` to :func:`class_models` or :func:`class_model_ascent`.

    Args:
      classifier: the model.
      pixel_range: its valid raw range; raw 0-255 pixels by default.
    """
    return ImageSettings(
        image_shape=(classifier.image_size, classifier.image_size, 3),
        pixel_mean=float(classifier.pixel_mean),
        pixel_scale=float(classifier.pixel_scale),
        pixel_range=pixel_range,
    )


def run_in_chunks(
    ascent: ClassModelAscent,
    params: Any,
    state: ClassModelState,
    steps: int,
    *,
    chunk: int = 10,
    on_chunk: Callable[[int, ClassModelHistory], None] | None = None,
) -> tuple[ClassModelState, ClassModelHistory]:
    """Runs ``steps`` updates of an ascent as jitted chunks of at most ``chunk`` steps.

    Each chunk is one ``lax.scan`` (at most two chunk sizes are compiled), so a
    caller can report progress between chunks without slowing the steps down.
    The result equals ``ascent.run(params, state, steps)``.

    Args:
      ascent: a configured :class:`ClassModelAscent`.
      params: the model's weights.
      state: the state to start from (``ascent.init``).
      steps: updates in all, ``>= 1``.
      chunk: updates per jitted call, ``>= 1``.
      on_chunk: called after each chunk with the number of steps it ran and its
        history (e.g. to advance a progress bar).

    Returns:
      ``(state, history)`` with the chunks' histories concatenated, ``[steps, K]``.
    """
    check_steps(steps)
    check_steps(chunk, "chunk")
    if on_chunk is not None and not callable(on_chunk):  # found now, not after the first chunk ran
        raise ValueError(f"on_chunk must be None or a function (steps, history) -> None, got {on_chunk!r}")
    run = jax.jit(ascent.run, static_argnums=2)
    histories = []
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        state, history = run(params, state, n)
        jax.block_until_ready(history)
        histories.append(history)
        done += n
        if on_chunk is not None:
            on_chunk(n, history)
    history = ClassModelHistory(*(jnp.concatenate(parts) for parts in zip(*histories)))
    return state, history


def classifier_class_models(
    classifier: Classifier,
    classes,
    *,
    key: jax.Array,
    steps: int | None = None,
    mode: str = "paper",
    batch_size: int = 16,
    chunk: int = 10,
    on_chunk: Callable[[int, ClassModelHistory], None] | None = None,
    **kwargs,
) -> ClassModelResult:
    """:func:`class_models` for a :class:`~saliency_jax.types.Classifier`, in batches and chunks.

    Takes the image size, mean image and scale from the classifier and clips to
    raw 0-255 pixels; ``kwargs`` override them or set the other settings of
    :func:`class_model_ascent`. The classes are optimised in batches of at most
    ``batch_size``, evened out and the last filled with copies of its last class
    (17 classes at 16 are two batches of 9), so the ascent compiles once; each
    batch runs as jitted chunks of ``chunk`` steps (:func:`run_in_chunks`). Since
    every class image draws its randomness from ``fold_in(key, class)`` the
    result does not depend on ``batch_size`` or ``chunk``.

    Args:
      classifier: the model.
      classes: int ``[K]`` class ids.
      key: PRNG key.
      steps: updates per class, the mode's default if ``None``.
      mode: ``"paper"`` or ``"regularised"``.
      batch_size: classes per compiled batch, ``>= 1``.
      chunk: steps per jitted call, ``>= 1``.
      on_chunk: progress callback of :func:`run_in_chunks`, given the history of
        the batch's real classes only.

    Returns:
      :class:`ClassModelResult` over all classes, histories ``[T, K]``.
    """
    steps = mode_defaults(mode).steps if steps is None else steps
    check_steps(steps)
    check_steps(batch_size, "batch_size")
    classes = jnp.atleast_1d(_check_class_list(classes))
    _checks.check_classes(classes, classifier.num_classes, None)
    settings = {**classifier_settings(classifier)._asdict(), **kwargs}
    ascent = class_model_ascent(classifier.logits_fn, mode=mode, **settings)
    finish = jax.jit(ascent.finish)
    count = classes.shape[0]
    # Batches of one size, the last filled with copies of the last class (dropped below), so the
    # ascent compiles once: each class's image depends only on fold_in(key, class).
    rows = _batching.rows_per_call(count, batch_size)
    results = []
    for start in range(0, count, rows):
        kept = min(rows, count - start)
        batch = _batching.pad_rows(classes[start : start + rows], rows)
        report = None if on_chunk is None else functools.partial(_report_kept, on_chunk, kept)
        state = ascent.init(classifier.params, batch, key=key)
        state, history = run_in_chunks(ascent, classifier.params, state, steps, chunk=chunk, on_chunk=report)
        result = finish(classifier.params, state, history)
        results.append(result if kept == rows else _kept_classes(result, kept))
    if len(results) == 1:
        return results[0]
    joined = [jnp.concatenate(parts) for parts in zip(*(r[:4] for r in results))]
    history = ClassModelHistory(*(jnp.concatenate(parts, axis=1) for parts in zip(*(r.history for r in results))))
    return ClassModelResult(*joined, history)


def _kept_history(history: ClassModelHistory, kept: int) -> ClassModelHistory:
    """The first ``kept`` classes' columns of a batch's ``[T, K]`` history (the rest are filling)."""
    return ClassModelHistory(*(x[:, :kept] for x in history))


def _report_kept(on_chunk, kept: int, n: int, history: ClassModelHistory) -> None:
    on_chunk(n, _kept_history(history, kept))


def _kept_classes(result: ClassModelResult, kept: int) -> ClassModelResult:
    """The first ``kept`` classes of a batch's result (the rest are filling)."""
    return ClassModelResult(*(x[:kept] for x in result[:4]), _kept_history(result.history, kept))

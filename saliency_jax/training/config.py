"""The settings of one training run (one frozen dataclass; experiments override fields)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from saliency_jax._checks import check_int, check_number

# Without jax_enable_x64 a JAX key keeps only the low 32 bits of a seed: a larger
# seed would silently repeat a smaller one's initialisation and dropout.
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; ``experiments/configs/*.py`` return one.

    Attributes:
      dataset: TFDS name, e.g. ``"imagenet2012"`` or ``"cluttered_objects/k6_64"``.
      data_dir: TFDS data directory (``None``: TFDS's default).
      train_split: split to train on.
      eval_split: split the evaluation pass reads.
      image_key: feature holding the uint8 image.
      label_key: feature holding the class id.
      image_size: side of the square network input.
      resize_size: the image's shorter side is resized to this, then an
        ``image_size`` crop is taken (random when training, central when
        evaluating). ``None``: resize straight to ``image_size``, no crop.
      random_flip: flip training images left-right at random.
      cache_in_memory: read each split once into memory (small datasets).
      num_workers: threads decoding examples.
      model: ``"paper"`` (:func:`~saliency_jax.models.convnet.paper_convnet`) or
        ``"scaled"`` (:func:`~saliency_jax.models.convnet.scaled_convnet`).
      width: conv width multiplier of the scaled model.
      mid_convs: 3 x 3 convs after conv2 in the scaled model.
      dense_features: hidden fully-connected width of the scaled model.
      dropout_rate: dropout on the hidden fully-connected layers.
      pixel_mean: raw pixel value mapped to zero (``None``: the model's default).
      pixel_scale: raw pixel units per input unit (``None``: the model's default).
      optimizer: ``"sgd"`` (with momentum) or ``"adam"``.
      learning_rate: peak learning rate.
      momentum: SGD momentum.
      weight_decay: L2 weight decay added to the gradient (decoupled for adam).
      warmup_steps: linear warm-up from 0.
      schedule: ``"cosine"`` decay to 0 or ``"constant"`` after warm-up.
      global_batch_size: examples per step over all devices and hosts.
      eval_batch_size: examples per evaluation step over all devices and hosts.
      num_train_steps: optimiser steps.
      log_every: steps between training metrics lines (each checkpoint step also
        gets one, so a resumed run logs the same lines as one that never stopped).
      checkpoint_every: steps between checkpoints (the last step is always saved).
      keep_checkpoints: how many checkpoints to keep.
      eval_every: steps between evaluation passes (0: only at the end).
      eval_examples: cap on evaluated examples (``None``: the whole split).
      seed: seeds initialisation, data order, augmentation and dropout; in ``[0, 2**32)``.
    """

    dataset: str = "imagenet2012"
    data_dir: str | None = None
    train_split: str = "train"
    eval_split: str = "validation"
    image_key: str = "image"
    label_key: str = "label"
    image_size: int = 224
    resize_size: int | None = 256
    random_flip: bool = True
    cache_in_memory: bool = False
    num_workers: int = 16

    model: str = "paper"
    width: float = 0.25
    mid_convs: int = 3
    dense_features: int = 256
    dropout_rate: float = 0.5
    pixel_mean: float | None = None
    pixel_scale: float | None = None

    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    schedule: str = "cosine"

    global_batch_size: int = 256
    eval_batch_size: int = 256
    num_train_steps: int = 450_000
    log_every: int = 100
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 3
    eval_every: int = 50_000
    eval_examples: int | None = None
    seed: int = 0

    def __post_init__(self):
        # Checked here, before any data is read: a mistake in a config must not
        # surface hours later (or never, as NaN weights) from deep inside a run.
        # Values are normalised (NumPy scalars to Python ones, paths to strings)
        # so that the config can be written to, and compared with, config.json.
        def set_(name, value):
            object.__setattr__(self, name, value)

        for name in ("dataset", "train_split", "eval_split", "image_key", "label_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if self.data_dir is not None:
            if isinstance(self.data_dir, os.PathLike):
                set_("data_dir", os.fspath(self.data_dir))
            if not isinstance(self.data_dir, str) or not self.data_dir:
                raise ValueError(f"data_dir must be a non-empty path or None, got {self.data_dir!r}")
        for name in ("random_flip", "cache_in_memory"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            set_(name, bool(value))
        for name, choices in (("model", ("paper", "scaled")), ("optimizer", ("sgd", "adam")),
                              ("schedule", ("cosine", "constant"))):
            value = getattr(self, name)
            # the type first: ``in`` on an array compares elementwise
            if not isinstance(value, str) or value not in choices:
                raise ValueError(f"{name} must be {choices[0]!r} or {choices[1]!r}, got {value!r}")
            set_(name, str(value))

        for name in ("image_size", "global_batch_size", "eval_batch_size", "num_train_steps", "log_every",
                     "checkpoint_every", "keep_checkpoints", "num_workers", "dense_features"):
            set_(name, check_int(getattr(self, name), name, 1))
        for name in ("mid_convs", "warmup_steps", "eval_every"):
            set_(name, check_int(getattr(self, name), name, 0))
        set_("seed", check_int(self.seed, "seed", 0, MAX_SEED))
        if self.resize_size is not None:
            set_("resize_size", check_int(self.resize_size, "resize_size (or None)", self.image_size))
        if self.eval_examples is not None:
            set_("eval_examples", check_int(self.eval_examples, "eval_examples (or None)", 1))

        set_("learning_rate", check_number(self.learning_rate, "learning_rate", low=0.0, open_low=True))
        set_("momentum", check_number(self.momentum, "momentum", low=0.0, high=1.0))
        set_("weight_decay", check_number(self.weight_decay, "weight_decay", low=0.0))
        set_("width", check_number(self.width, "width", low=0.0, open_low=True))
        set_("dropout_rate", check_number(self.dropout_rate, "dropout_rate", low=0.0))
        if self.dropout_rate >= 1.0:
            raise ValueError(f"dropout_rate must be a finite number >= 0.0 and < 1.0, got {self.dropout_rate}")
        if self.pixel_mean is not None:
            set_("pixel_mean", check_number(self.pixel_mean, "pixel_mean (or None)"))
        if self.pixel_scale is not None:
            set_("pixel_scale", check_number(self.pixel_scale, "pixel_scale (or None)", low=0.0, open_low=True))

def replace(config: TrainConfig, **overrides) -> TrainConfig:
    """A copy of ``config`` with some fields changed; unknown names raise ``ValueError``."""
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown TrainConfig fields: {unknown}")
    return dataclasses.replace(config, **overrides)


def parse_override(config: TrainConfig, text: str) -> TrainConfig:
    """Applies one ``name=value`` override, converting ``value`` to the field's type.

    ``None``/``none`` gives ``None``; ``true``/``false`` give booleans.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"override must be a string name=value, got {text!r}")
    name, raw = text.split("=", 1)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        raise ValueError(f"unknown TrainConfig field {name!r} in override {text!r}")
    current = getattr(config, name)
    if raw.lower() == "none":
        value = None
    elif isinstance(current, bool) or "bool" in str(fields[name].type):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{name} must be true or false, got {raw!r}")
        value = raw.lower() in ("true", "1")
    elif isinstance(current, int) or str(fields[name].type).startswith("int"):
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {raw!r} in override {text!r}") from None
    elif isinstance(current, float) or str(fields[name].type).startswith("float"):
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r} in override {text!r}") from None
    else:
        value = raw
    return replace(config, **{name: value})

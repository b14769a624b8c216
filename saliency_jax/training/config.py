"""The settings of one training run (one frozen dataclass; experiments override fields)."""

from __future__ import annotations

import dataclasses


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
      log_every: steps between metrics lines.
      checkpoint_every: steps between checkpoints (the last step is always saved).
      keep_checkpoints: how many checkpoints to keep.
      eval_every: steps between evaluation passes (0: only at the end).
      eval_examples: cap on evaluated examples (``None``: the whole split).
      seed: seeds initialisation, data order, augmentation and dropout.
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
        if self.model not in ("paper", "scaled"):
            raise ValueError(f"model must be 'paper' or 'scaled', got {self.model!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        for name in ("image_size", "global_batch_size", "eval_batch_size", "num_train_steps", "log_every",
                     "checkpoint_every", "keep_checkpoints", "num_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.resize_size is not None and self.resize_size < self.image_size:
            raise ValueError(f"resize_size must be >= image_size ({self.image_size}), got {self.resize_size}")
        if self.eval_every < 0 or self.warmup_steps < 0:
            raise ValueError("eval_every and warmup_steps must be >= 0")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def replace(config: TrainConfig, **overrides) -> TrainConfig:
    """A copy of ``config`` with some fields changed; unknown names raise ``ValueError``."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown TrainConfig fields: {unknown}")
    return dataclasses.replace(config, **overrides)


def parse_override(config: TrainConfig, text: str) -> TrainConfig:
    """Applies one ``name=value`` override, converting ``value`` to the field's type.

    ``None``/``none`` gives ``None``; ``true``/``false`` give booleans.
    """
    if "=" not in text:
        raise ValueError(f"override must look like name=value, got {text!r}")
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
        value = int(raw)
    elif isinstance(current, float) or str(fields[name].type).startswith("float"):
        value = float(raw)
    else:
        value = raw
    return replace(config, **{name: value})

"""Training the paper's ConvNet: data-parallel steps, TFDS input, orbax checkpoints, resume."""

from saliency_jax.training.checkpoints import check_readable, checkpoint_manager, latest_step, restore, save
from saliency_jax.training.config import TrainConfig, parse_override, replace
from saliency_jax.training.input_pipeline import (
    ArraySource,
    Batch,
    cache_in_memory,
    eval_batches,
    fit_image,
    load_source,
    num_classes_of,
    train_batches,
    train_indices,
)
from saliency_jax.training.loop import (
    RESUMABLE_CHANGES,
    EvalResult,
    TrainResult,
    chance_accuracy,
    check_resumable,
    evaluate,
    train_and_evaluate,
)
from saliency_jax.training.metrics_log import MetricsLog, read_metrics
from saliency_jax.training.steps import (
    StepMetrics,
    TrainState,
    build_model,
    create_train_state,
    eval_step,
    learning_rate_schedule,
    make_optimizer,
    train_step,
)

__all__ = [
    "RESUMABLE_CHANGES",
    "ArraySource",
    "Batch",
    "EvalResult",
    "MetricsLog",
    "StepMetrics",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "build_model",
    "cache_in_memory",
    "chance_accuracy",
    "check_readable",
    "check_resumable",
    "checkpoint_manager",
    "create_train_state",
    "eval_batches",
    "eval_step",
    "evaluate",
    "fit_image",
    "latest_step",
    "learning_rate_schedule",
    "load_source",
    "make_optimizer",
    "num_classes_of",
    "parse_override",
    "read_metrics",
    "replace",
    "restore",
    "save",
    "train_and_evaluate",
    "train_batches",
    "train_indices",
    "train_step",
]

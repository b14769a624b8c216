"""A smoke-test run: a tiny scaled ConvNet on MNIST (any small TFDS dataset works the same way)."""

from saliency_jax.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        dataset="mnist",
        train_split="train",
        eval_split="test",
        image_size=28,
        resize_size=None,
        random_flip=False,
        cache_in_memory=True,
        model="scaled",
        width=0.25,
        mid_convs=0,
        dense_features=64,
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=0.0,
        global_batch_size=128,
        eval_batch_size=500,
        num_train_steps=2_000,
        log_every=50,
        checkpoint_every=500,
        eval_every=1_000,
    )

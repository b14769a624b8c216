"""The scaled ConvNet on the generated cluttered-objects dataset, on the CPU in a few minutes.

Used by ``experiments/reproduce_small.py``; ``data_dir`` is filled in there.
"""

from saliency_jax.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        dataset="cluttered_objects/k6_64_small",
        data_dir=None,
        train_split="train",
        eval_split="test",
        image_size=64,
        resize_size=None,
        random_flip=True,
        cache_in_memory=True,
        num_workers=2,
        model="scaled",
        width=0.25,
        mid_convs=3,
        dense_features=256,
        dropout_rate=0.1,
        pixel_mean=127.5,
        pixel_scale=64.0,
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=1e-4,
        warmup_steps=100,
        schedule="cosine",
        global_batch_size=32,
        eval_batch_size=200,
        num_train_steps=3_000,
        log_every=100,
        checkpoint_every=500,
        eval_every=0,
        seed=0,
    )

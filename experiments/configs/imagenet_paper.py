"""The paper's ConvNet on ILSVRC-2012 (224 x 224 crops of 256-pixel images, SGD with momentum).

Krizhevsky et al.'s recipe: batch 256, learning rate 0.01, momentum 0.9, weight
decay 5e-4, about 90 epochs (here a cosine decay instead of manual drops),
random crops and flips. Meant for a TPU slice or a multi-GPU host; ``data_dir``
must hold ``imagenet2012`` prepared as ``array_record``.
"""

from saliency_jax.training import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        dataset="imagenet2012",
        data_dir=None,
        train_split="train",
        eval_split="validation",
        image_size=224,
        resize_size=256,
        random_flip=True,
        model="paper",
        dropout_rate=0.5,
        optimizer="sgd",
        learning_rate=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        warmup_steps=2_500,
        schedule="cosine",
        global_batch_size=256,
        eval_batch_size=256,
        num_train_steps=450_000,  # ~90 epochs of 1.28M images
        log_every=100,
        checkpoint_every=5_000,
        eval_every=25_000,
        seed=0,
    )

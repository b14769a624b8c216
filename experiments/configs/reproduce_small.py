"""Settings of ``experiments/reproduce_small.py``: the whole paper on the generated dataset, on the CPU."""

import dataclasses

from saliency_jax.data import ClutterConfig
from saliency_jax.localisation.config import GraphCutConfig
from saliency_jax.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """Attributes:
      train: the scaled ConvNet's training run (the dataset fields are filled in by
        the script, which builds the dataset itself). Dropout is 0.1 rather than
        the paper's 0.5: a few-minute run is far from overfitting, and strong
        dropout lengthens the plateau before the network finds the shapes.
      clutter: how the dataset's images are drawn.
      split_sizes: examples per split.
      dataset_name: the TFDS builder config name.
      dataset_seed: seed of the generated images.
      num_devices: devices to train on; fixed so the results do not depend on the
        machine (more devices give the same numbers up to float rounding).
      class_model_steps: gradient-ascent updates of each class model (§2).
      class_model_learning_rate: Adam step on the preprocessed image.
      class_model_l2: lambda of the L2 regulariser (§2).
      class_model_init_noise: standard deviation (grey levels) of the fixed noise added
        to the mean image the ascent starts from; at the exact mean image this
        network's gradient can vanish (see the script).
      num_localisation: test images whose saliency maps are localised (§3.2).
      graphcut: the localisation settings (the paper's quantiles).
      rules: the ReLU backward rules compared (§4); the first is the paper's map.
      centre_fraction: side of the centre-box baseline, as a fraction of the image.
      num_examples: images in the saliency and localisation figures.
      processes: worker processes rendering the dataset and running the GraphCut pool.
      seed: seed of the class models.

    How the class-model settings were chosen (and why the square's class model
    reads as a disc) is in ``docs/tuning/reproduce_small.md``.
    """

    train: TrainConfig = TrainConfig(
        dataset="cluttered_objects",
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
    clutter: ClutterConfig = ClutterConfig()
    split_sizes: tuple[tuple[str, int], ...] = (("train", 6000), ("test", 1000))
    dataset_name: str = "reproduce_small"
    dataset_seed: int = 0
    num_devices: int = 1
    class_model_steps: int = 200
    class_model_learning_rate: float = 0.01
    class_model_l2: float = 0.1
    class_model_init_noise: float = 4.0
    num_localisation: int = 200
    graphcut: GraphCutConfig = GraphCutConfig()
    rules: tuple[str, ...] = ("gradient", "deconvnet", "guided")
    centre_fraction: float = 0.5
    num_examples: int = 8
    processes: int = 2
    seed: int = 0


def get_config() -> ReproduceConfig:
    return ReproduceConfig()

"""Settings of ``experiments/bench_scaling.py``: saliency maps per second on 1, 2, 4 devices."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Attributes:
      device_counts: mesh sizes to time (counts above the available devices are skipped).
      per_device_batch: images per device per call (weak scaling: the global batch grows
        with the devices).
      num_images: size of the dataset the maps are computed over (rendered
        cluttered-objects test images).
      image_size: their side.
      repeats: timed passes over the dataset per device count (the median is reported).
      width: conv width multiplier of the scaled ConvNet (random weights: speed does not
        depend on their values).
      rule: ReLU backward rule of the maps.
      seed: seed of the weights and images.
    """

    device_counts: tuple[int, ...] = (1, 2, 4)
    per_device_batch: int = 16
    num_images: int = 256
    image_size: int = 64
    repeats: int = 5
    width: float = 0.25
    rule: str = "gradient"
    seed: int = 0


def get_config() -> BenchConfig:
    return BenchConfig()

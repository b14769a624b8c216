"""Trains a ConvNet from a config file; rerunning with the same --workdir resumes.

    python experiments/train.py --config experiments/configs/imagenet_paper.py \
        --workdir runs/imagenet --set data_dir=/data/tfds

On several hosts (e.g. a TPU pod slice) add ``--distributed`` on every host.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from saliency_jax import parallel
from saliency_jax.training import TrainConfig, parse_override, train_and_evaluate


def load_config(path: str) -> TrainConfig:
    """Runs ``get_config()`` of a config file; it must return a :class:`TrainConfig`."""
    if not os.path.isfile(path):
        raise ValueError(f"--config must be an existing Python file with get_config(), got {path!r} (no such file)")
    spec = importlib.util.spec_from_file_location("experiment_config", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--config must be a Python file with get_config(), got {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ValueError(f"--config must be a Python file with get_config(), got {path!r}, which defines none")
    config = get_config()
    if not isinstance(config, TrainConfig):
        raise ValueError(
            f"--config's get_config() must return a TrainConfig, got {type(config).__name__} from {path!r}"
        )
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="a file in experiments/configs/")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl and config.json go here")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a config field")
    parser.add_argument("--distributed", action="store_true", help="multi-host: jax.distributed auto-detection")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    parallel.initialize_distributed(auto=args.distributed)
    config = load_config(args.config)
    for override in args.set:
        config = parse_override(config, override)
    result = train_and_evaluate(config, args.workdir, progress=not args.no_progress)
    print(f"step {int(result.state.step)}: eval accuracy {result.eval.accuracy:.4f}, "
          f"loss {result.eval.loss:.4f} on {result.eval.num_examples} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())

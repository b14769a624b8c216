"""One process of a multi-process JAX run on CPU, launched by ``tests/test_multiprocess.py``.

Run as a script (``python tests/multiprocess_worker.py [--saliency] [--run
WORKDIR[@STEP]]... --coordinator host:port --num-processes P --process-id I --out
DIR``) in a fresh interpreter whose ``XLA_FLAGS`` force a number of host CPU
devices. The processes join one ``jax.distributed`` cluster, so their devices
form one global mesh; each does its share of every task and writes what the
parent checks to ``DIR/<task>_<I>.npz``.

Tasks, in this order:
  ``--saliency``: ``parallel.sharded_map`` of the paper's saliency map of a small
    ConvNet; each process passes its own contiguous share of the images. Writes
    ``saliency_<I>.npz``.
  ``--run WORKDIR`` (repeatable): ``train_and_evaluate`` on tiny in-memory
    sources, checkpointing to that workdir (shared by the processes);
    ``WORKDIR@S`` stops the run after step ``S`` as a crash would
    (``train_and_evaluate`` raises out of its step callback). Run ``k`` writes
    ``train<k>_<I>.npz``.

The inputs and models are built here, deterministically, by functions the parent
imports too (:func:`saliency_problem`, :func:`train_config`, :func:`toy_sources`).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np

SALIENCY_IMAGES = 12  # 6 rows per process: one full batch of 4 and a padded one
SALIENCY_BATCH = 4  # rows per call on each process (2 per local device)
IMAGE_SIZE = 32
NUM_CLASSES = 3


def saliency_problem():
    """(logits_fn, params, images [N, 32, 32, 3] float32) of a small scaled ConvNet."""
    import jax
    import jax.numpy as jnp

    from saliency_jax.models.convnet import scaled_convnet

    model = scaled_convnet(NUM_CLASSES, width=0.0625, mid_convs=1, dense_features=16, dropout_rate=0.0)
    params = model.init(jax.random.key(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3)))
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (SALIENCY_IMAGES, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    return functools.partial(model.apply, train=False), params, images


def saliency_fn(logits_fn):
    """``(params, images) -> [B, H, W]`` maps of each image's top-1 class."""
    from saliency_jax.saliency import saliency_map

    return lambda params, images: saliency_map(logits_fn, params, images)


def train_config(num_train_steps: int = 6):
    """A tiny run like those of ``tests/test_training.py`` (global batch 8 over the 4 devices)."""
    from saliency_jax.training import TrainConfig

    return TrainConfig(
        dataset="toy",
        model="scaled",
        width=0.0625,
        mid_convs=1,
        dense_features=16,
        dropout_rate=0.5,
        image_size=IMAGE_SIZE,
        resize_size=None,
        optimizer="sgd",
        learning_rate=0.01,  # tame: chaotic training would amplify float differences
        momentum=0.9,
        global_batch_size=8,
        eval_batch_size=8,
        num_train_steps=num_train_steps,
        log_every=2,
        checkpoint_every=2,
        eval_every=0,
        num_workers=1,
    )


def toy_sources(n_train=40, n_eval=12, seed=0):
    """Random uint8 images with random labels, in memory (same in every process)."""
    from saliency_jax.training import ArraySource

    rng = np.random.default_rng(seed)

    def split(n):
        return ArraySource(
            {
                "image": rng.integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
                "label": rng.integers(0, NUM_CLASSES, n),
            },
            num_classes=NUM_CLASSES,
        )

    return {"train": split(n_train), "eval": split(n_eval)}


def flat_state(state) -> dict[str, np.ndarray]:
    """Every leaf of a (replicated) train state as numpy, keyed by its tree path."""
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(state)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


class _Stop(Exception):
    pass


def _run_saliency() -> dict[str, np.ndarray]:
    import jax

    from saliency_jax import parallel

    logits_fn, params, images = saliency_problem()
    mesh = parallel.data_mesh()
    share = len(images) // jax.process_count()
    mine = images[jax.process_index() * share:(jax.process_index() + 1) * share]
    maps = parallel.sharded_map(saliency_fn(logits_fn), params, mine, batch_size=SALIENCY_BATCH, mesh=mesh)
    # Unequal shares would make the processes call the sharded function a different
    # number of times (a hang); every process must get the same clear error instead.
    try:
        parallel.sharded_map(saliency_fn(logits_fn), params, mine[: share - jax.process_index()],
                             batch_size=SALIENCY_BATCH, mesh=mesh)
        unequal_error = ""
    except ValueError as error:
        unequal_error = str(error)
    return {"maps": maps, "mesh_size": np.asarray(mesh.size), "unequal_error": np.asarray(unequal_error)}


def _run_train(workdir: str, stop_at: int | None, steps: int) -> dict[str, np.ndarray]:
    from saliency_jax.training import train_and_evaluate

    def callback(done):
        if done == stop_at:
            raise _Stop

    try:
        result = train_and_evaluate(train_config(steps), workdir, sources=toy_sources(), progress=False,
                                    step_callback=callback)
    except _Stop:
        return {"stopped_at": np.asarray(stop_at)}
    out = {f"state/{k}": v for k, v in flat_state(result.state).items()}
    out["resumed_from"] = np.asarray(-1 if result.resumed_from is None else result.resumed_from)
    out["eval"] = np.asarray([result.eval.loss, result.eval.accuracy, result.eval.num_examples], np.float64)
    return out


def _parse_run(text: str) -> tuple[str, int | None]:
    workdir, _, stop_at = text.rpartition("@") if "@" in text else (text, "", "")
    return workdir, int(stop_at) if stop_at else None


def _save(out: dict[str, np.ndarray], path: str) -> None:
    import jax

    out = dict(out, num_devices=np.asarray(len(jax.devices())), num_local_devices=np.asarray(len(jax.local_devices())))
    np.savez(path + ".tmp.npz", **out)
    os.replace(path + ".tmp.npz", path)  # the parent never reads a half-written file


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saliency", action="store_true", help="compute sharded saliency maps")
    parser.add_argument("--coordinator", required=True, help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--out", required=True, help="folder for <task>_<process-id>.npz")
    parser.add_argument("--run", action="append", default=[], metavar="WORKDIR[@STEP]",
                        help="a training run's (shared) workdir, optionally the step after which it stops")
    parser.add_argument("--steps", type=int, default=6, help="num_train_steps of the training runs")
    args = parser.parse_args(argv)

    import jax

    from saliency_jax import parallel  # initialize_distributed picks gloo for CPU collectives

    assert parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    try:
        assert jax.process_count() == args.num_processes and jax.process_index() == args.process_id
        if args.saliency:
            _save(_run_saliency(), os.path.join(args.out, f"saliency_{args.process_id}.npz"))
        for k, run in enumerate(args.run):
            _save(_run_train(*_parse_run(run), args.steps), os.path.join(args.out, f"train{k}_{args.process_id}.npz"))
    finally:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

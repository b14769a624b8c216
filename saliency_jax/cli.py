"""The ``saliency-jax`` command: parses arguments, calls the library, writes files.

Subcommands:
  saliency     image-specific class saliency maps (paper §3)
  class-model  class model visualisation (paper §2)
  localise     weakly supervised localisation with GraphCut (paper §3.2)
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence

import numpy as np

from saliency_jax.backprop_rules import RULES


def _add_saliency_parser(subparsers) -> None:
    p = subparsers.add_parser("saliency", help="image-specific class saliency maps (paper §3)")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or bundled:NAME for a photo that ships with scikit-image/scikit-learn")
    p.add_argument("--class", dest="class_", metavar="C", default=None,
                   help="ImageNet class id or name to explain (default: each image's top-1)")
    p.add_argument("--rule", choices=RULES, default="gradient", help="ReLU backward rule (paper §4)")
    p.add_argument("--out", default="outputs", help="output folder (default: outputs/)")
    p.add_argument("--batch-size", type=int, default=8, help="images per jitted call")
    p.add_argument("--resume", action="store_true", help="skip inputs whose outputs all exist")
    p.set_defaults(run=run_saliency)


def saliency_outputs(out: str, stem: str) -> tuple[str, str, str]:
    """The three files written for one input: map (.npy), figure (.png), classes (.json)."""
    return (os.path.join(out, f"{stem}_saliency.npy"), os.path.join(out, f"{stem}_saliency.png"),
            os.path.join(out, f"{stem}.json"))


def run_saliency(args: argparse.Namespace) -> int:
    import jax
    from tqdm import tqdm

    from saliency_jax import figures, io
    from saliency_jax.models.efficientnet_lite import load_efficientnet_lite0
    from saliency_jax.models.imagenet import class_id
    from saliency_jax.saliency import input_gradients, saliency_from_gradients

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    model = load_efficientnet_lite0()
    forced_class = class_id(args.class_, model.class_names) if args.class_ is not None else None
    # Read every input first: a bad file fails before any work is done.
    stems = [io.image_stem(p) for p in args.images]
    if len(set(stems)) != len(stems):
        raise ValueError("images: two inputs share a file stem, so their outputs would collide")
    todo = [(p, s) for p, s in zip(args.images, stems)
            if not (args.resume and all(os.path.exists(f) for f in saliency_outputs(args.out, s)))]
    photos = {p: io.load_image(p) for p, _ in todo}

    @functools.partial(jax.jit, static_argnames="rule")
    def explain(params, images, classes, rule):
        result = input_gradients(model.logits_fn, params, images, classes, rule=rule)
        probabilities = jax.nn.softmax(result.logits, axis=-1)
        top_p, top_c = jax.lax.top_k(probabilities, 5)
        return saliency_from_gradients(result.gradients), result.classes, top_c, top_p

    with tqdm(total=len(todo), desc="saliency", unit="image", disable=None) as bar:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            batch = np.stack([io.resize_image(photos[p], model.image_size) for p, _ in chunk])
            classes = None if forced_class is None else np.full(len(chunk), forced_class, np.int32)
            maps, classes, top_c, top_p = jax.device_get(explain(model.params, batch, classes, args.rule))
            for k, (_, stem) in enumerate(chunk):
                npy, png, js = saliency_outputs(args.out, stem)
                io.save_npy(npy, maps[k].astype(np.float32))
                c = int(classes[k])
                title = f"{stem}: {model.class_names[c].split(',')[0]} ({args.rule})"
                io.save_figure(png, figures.saliency_figure(batch[k], maps[k], title))
                top5 = [[int(i), model.class_names[int(i)], round(float(q), 6)] for i, q in zip(top_c[k], top_p[k])]
                io.save_json(js, {"class": c, "top5": top5})
                bar.update(1)
    print(f"wrote {len(todo)} saliency map(s) to {args.out}/" +
          (f" ({len(args.images) - len(todo)} already there)" if len(todo) < len(args.images) else ""))
    return 0


def _add_localise_parser(subparsers) -> None:
    p = subparsers.add_parser("localise", help="weakly supervised localisation with GraphCut (paper §3.2)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or bundled:NAME")
    p.add_argument("--class", dest="class_", metavar="C", default=None,
                   help="ImageNet class id or name to localise (default: each image's top-1)")
    p.add_argument("--out", default="outputs", help="output folder (default: outputs/)")
    p.add_argument("--seed-map", choices=("paper", "flip-shift", "smoothgrad"), default="paper",
                   help="the map that seeds GraphCut: the paper's, averaged over flips and shifts, or SmoothGrad")
    p.add_argument("--pairwise-weight", type=float, default=None, help="GraphCut smoothness weight")
    p.add_argument("--processes", type=int, default=1, help="GraphCut worker processes")
    p.set_defaults(run=run_localise)


def run_localise(args: argparse.Namespace) -> int:
    import dataclasses

    from saliency_jax.localisation.cli_support import localise_command
    from saliency_jax.localisation.config import GraphCutConfig
    from saliency_jax.models.imagenet import class_id

    config = GraphCutConfig()
    if args.pairwise_weight is not None:
        config = dataclasses.replace(config, pairwise_weight=args.pairwise_weight)
    if args.processes < 1:
        raise ValueError(f"--processes must be >= 1, got {args.processes}")
    cid = class_id(args.class_) if args.class_ is not None else None
    written = localise_command(args.images, class_id=cid, out=args.out, config=config,
                               seed_map=args.seed_map, processes=args.processes, progress=True)
    print(f"wrote {len(written)} localisation(s) to {args.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saliency-jax", description="Class models, saliency maps and localisation (Simonyan et al., 2013).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_saliency_parser(subparsers)
    _add_localise_parser(subparsers)
    from saliency_jax.class_model_cli import add_class_model_parser, run_class_model_command

    add_class_model_parser(subparsers).set_defaults(run=run_class_model_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"saliency-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

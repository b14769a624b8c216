"""What every subcommand shares: options, the model, inputs, the output folder and its records.

Every command writes, per input, files whose names are a contract, plus one JSON
record that says which command made them, from which input, with which settings.
The record is what ``--resume`` trusts (a file made with other settings is
recomputed) and what keeps one command from overwriting another's files in a
shared folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

MODELS = ("lite0", "lite1", "lite2")
MAX_STEPS = 100_000


class CommandError(ValueError):
    """A refusal the command reports as one line (exit status 2)."""


def positive_int(text: str) -> int:
    """An ``argparse`` type: a plain decimal integer ``>= 1``."""
    value = plain_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def plain_int(text: str) -> int:
    """An ``argparse`` type: a decimal integer written with ASCII digits (``'²'`` is not one)."""
    stripped = text.strip()
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not (body.isascii() and body.isdigit()):
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}")
    return int(stripped)


def add_common_options(parser: argparse.ArgumentParser, *, batch_size: int, batch_help: str) -> None:
    """Adds ``--out --resume --progress/--no-progress --seed --batch-size --model``."""
    parser.add_argument("--out", default="outputs", metavar="DIR", help="output folder (default: outputs)")
    parser.add_argument("--resume", action="store_true",
                        help="skip inputs whose outputs exist and were made with the same settings")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show progress bars (default: when writing to a terminal)")
    parser.add_argument("--seed", type=plain_int, default=0, help="PRNG seed of any randomness (default: 0)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N",
                        help=f"{batch_help} (default: {batch_size})")
    parser.add_argument("--model", choices=MODELS, default="lite0",
                        help="embedded ImageNet classifier: EfficientNet-Lite0/1/2 (default: lite0)")


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """Adds the options of commands that read images (``--max-pixels``)."""
    parser.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                        help="refuse input images of more than N pixels, a guard against decompression bombs "
                             "(default: Pillow's limit, 89,478,485)")


def progress_enabled(args: argparse.Namespace) -> bool | None:
    """``tqdm``'s ``disable``: ``None`` lets tqdm decide (off when not a terminal)."""
    return None if args.progress is None else not args.progress


def load_classifier(name: str):
    """The embedded model named by ``--model``."""
    from saliency_jax.models import load_efficientnet_lite

    return load_efficientnet_lite(name)


def resolve_class(text: str, class_names: Sequence[str], option: str = "--class") -> int:
    """A class given by id, WordNet id or name; errors name the option."""
    from saliency_jax.models.imagenet import class_id

    try:
        return class_id(text, tuple(class_names))
    except ValueError as e:
        raise CommandError(f"{option}: {e}") from None


def input_stems(images: Sequence[str]) -> list[str]:
    """The output stem of each input; two inputs with one stem are refused."""
    from saliency_jax import io

    if not images:
        raise CommandError("IMAGE: name at least one image")
    stems = [io.image_stem(p) for p in images]
    seen: dict[str, str] = {}
    for path, stem in zip(images, stems):
        if stem in seen:
            raise CommandError(f"IMAGE: {seen[stem]!r} and {path!r} share the name {stem!r}, so their outputs "
                               "would collide; rename one")
        seen[stem] = path
    return stems


def prepare_out_dir(out: str) -> str:
    """Checks, before any work, that ``out`` is (or can become) a writable folder.

    Creates it if needed and removes the temporaries of dead writers in it.
    Raises :class:`CommandError` naming ``--out`` otherwise.
    """
    from saliency_jax import io

    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(f"--out: {out!r} is a file, not a folder")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise CommandError(f"--out: {out!r} lies below the file {parent!r}")
    try:
        os.makedirs(path, exist_ok=True)
        # Permission bits say nothing to root (and an immutable folder refuses even
        # root): only writing a file tells.
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise CommandError(f"--out: cannot write to {out!r} ({e.strerror or e})") from None
    io.remove_stale_temporaries(path)
    return path


def record_path(out: str, name: str) -> str:
    return os.path.join(out, name)


def read_record(path: str) -> dict[str, Any] | None:
    """The JSON record at ``path``, ``None`` if there is none; an unreadable one is refused."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        raise CommandError(f"--out: {path!r} exists and is not a record of saliency-jax; "
                           "remove it or choose another --out")
    return record


def claim_outputs(record_file: str, command: str, source: str) -> dict[str, Any] | None:
    """Refuses to write over another command's (or another input's) outputs.

    Returns the existing record of this command and input, if any.
    """
    record = read_record(record_file)
    if record is None:
        return None
    if record.get("command") != command or record.get("input") != source:
        owner = f"`{record.get('command', '?')}` of {record.get('input', '?')!r}"
        raise CommandError(
            f"--out: {record_file!r} belongs to {owner}; writing {command} outputs of {source!r} there "
            "would overwrite it: choose another --out"
        )
    return record


def up_to_date(record: dict[str, Any] | None, settings: dict[str, Any], files: Sequence[str]) -> bool:
    """Whether a previous run made all ``files`` with exactly these ``settings``."""
    return record is not None and record.get("settings") == settings and all(os.path.exists(f) for f in files)


def source_name(path: str) -> str:
    """How a record names its input: ``bundled:NAME`` as given, files by absolute path."""
    return path if path.startswith("bundled:") else os.path.abspath(path)

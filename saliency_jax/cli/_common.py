"""What every subcommand shares: options, the model, inputs, the output folder and its records.

Every command writes, per input, files whose names are a contract, plus one JSON
record that says which command made them, from which input (and the input's
content hash), with which settings, and the size of each file. The record is what
``--resume`` trusts (a file made with other settings or from other bytes is
recomputed) and what keeps one command from overwriting another's files, or any
file it did not write, in a shared folder.

A set is written record first, marked incomplete, then its files, then the record
again, complete: an interrupted or failed set is never taken as done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import stat
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

MODELS = ("lite0", "lite1", "lite2")
MAX_STEPS = 100_000
MAX_IG_STEPS = 10_000
MAX_SAMPLES = 100_000
MAX_SEED = 2**63  # jax.random.key takes a signed 64-bit seed
MAX_DIGITS = 30  # of an integer option: every bound above has fewer


class CommandError(ValueError):
    """A refusal the command reports as one line (exit status 2)."""


def positive_int(text: str) -> int:
    """An ``argparse`` type: a plain decimal integer ``>= 1``."""
    value = plain_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {shown(text)}")
    return value


def shown(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut to about ``limit`` characters, for an error message of one line."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text):,} characters)"


def plain_int(text: str) -> int:
    """An ``argparse`` type: a decimal integer written with ASCII digits (``'²'`` is not one)."""
    stripped = text.strip()
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not (body.isascii() and body.isdigit()):
        raise argparse.ArgumentTypeError(f"must be an integer, got {shown(text)}")
    if len(body.lstrip("0")) > MAX_DIGITS:  # no option takes more; int() of thousands of digits refuses or crawls
        raise argparse.ArgumentTypeError(f"must be an integer of at most {MAX_DIGITS} digits, got {shown(text)}")
    return int(stripped)


def bounded_int(top: int) -> Callable[[str], int]:
    """An ``argparse`` type: a plain decimal integer in ``[1, top]``."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > top:
            raise argparse.ArgumentTypeError(f"at most {top:,}, got {shown(text)}")
        return value

    return parse


def seed_int(text: str) -> int:
    """An ``argparse`` type: a PRNG seed, a plain decimal integer in ``[0, 2**63)``."""
    value = plain_int(text)
    if not 0 <= value < MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63), got {shown(text)}")
    return value


def finite_float(minimum: float, *, strict: bool, maximum: float | None = None) -> Callable[[str], float]:
    """An ``argparse`` type: a finite number ``> minimum`` (``strict``) or ``>= minimum``, at most ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {shown(text)}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>' if strict else '>='} {minimum:g}, got {shown(text)}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {shown(text)}")
        return value

    return parse


def add_common_options(parser: argparse.ArgumentParser, *, batch_size: int, batch_help: str) -> None:
    """Adds ``--out --resume --progress/--no-progress --seed --batch-size --model``."""
    parser.add_argument("--out", default="outputs", metavar="DIR", help="output folder (default: outputs)")
    parser.add_argument("--resume", action="store_true",
                        help="skip inputs whose outputs exist and were made with the same settings")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show progress bars (default: when writing to a terminal)")
    parser.add_argument("--seed", type=seed_int, default=0, help="PRNG seed of any randomness, 0 to 2**63 - 1 (default: 0)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N",
                        help=f"{batch_help} (default: {batch_size})")
    parser.add_argument("--model", choices=MODELS, default="lite0",
                        help="embedded ImageNet classifier: EfficientNet-Lite0/1/2 (default: lite0)")


IMAGE_BATCH_HELP = ("most images per compiled batch; the batches are evened out and the last one padded, "
                    "so the model compiles once")


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
    except ValueError as e:  # the library's message names its argument "class"; here the option stands for it
        raise CommandError(f"{option}: {str(e).removeprefix('class: ')}") from None


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


def prepare_out_dir(out: str, inputs: Sequence[str] = ()) -> str:
    """Checks, before any work, that ``out`` is (or can become) a writable folder.

    Creates it if needed and removes the temporaries of dead writers in it (never
    one of ``inputs``). Raises :class:`CommandError` naming ``--out`` otherwise.
    """
    from saliency_jax import io

    if not out:
        raise CommandError("--out: empty; name a folder ('.' for the current one)")
    path = os.path.abspath(out)
    if os.path.islink(path) and not os.path.exists(path):
        raise CommandError(f"--out: {out!r} is a broken symbolic link")
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
    io.remove_stale_temporaries(path, keep=[p for p in inputs if not p.startswith("bundled:")])
    return path


# A record is a few hundred bytes; anything much larger is not one, and is not read.
MAX_RECORD_BYTES = 1 << 20


def read_record(path: str) -> dict[str, Any] | None:
    """The JSON record at ``path``, ``None`` if there is none; anything else there is refused.

    Only a plain file of at most :data:`MAX_RECORD_BYTES` is read, so a pipe, a
    device or a huge file in its place is refused at once instead of blocking
    or filling the memory.
    """
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        raise CommandError(f"--out: {path!r} is a folder where a record of saliency-jax goes; "
                           "remove it or choose another --out")
    try:
        info = os.stat(path)
    except OSError as e:
        raise CommandError(f"--out: cannot read {path!r} ({e.strerror or e}); "
                           "remove it or choose another --out") from None
    if not stat.S_ISREG(info.st_mode):
        raise CommandError(f"--out: {path!r} is not a regular file (a pipe, device or socket) where a record "
                           "of saliency-jax goes; remove it or choose another --out")
    record = None
    if info.st_size <= MAX_RECORD_BYTES:
        try:
            with open(path, "rb") as f:
                record = json.loads(f.read(MAX_RECORD_BYTES + 1).decode("utf-8"))
        except (OSError, ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
            record = None
    if not (isinstance(record, dict) and isinstance(record.get("command"), str)
            and isinstance(record.get("input"), str)):
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
    if record["command"] != command or record["input"] != source:
        owner = f"`{record['command']}` of {record['input']!r}"
        raise CommandError(
            f"--out: {record_file!r} belongs to {owner}; writing {command} outputs of {source!r} there "
            "would overwrite it: choose another --out"
        )
    return record


def check_outputs(record_file: str, files: Sequence[str], command: str, source: str,
                  inputs: Sequence[str]) -> dict[str, Any] | None:
    """Refuses, before any work, to write where writing would destroy something.

    That is: over one of the ``inputs``, onto a folder, over another command's or
    input's record, or over a file that no record of this command and input claims.
    Returns the existing record of this command and input, if any.
    """
    from saliency_jax import io

    for path in (*files, record_file):
        for given in inputs:
            if not given.startswith("bundled:") and io.same_file(path, given):
                raise CommandError(f"IMAGE: {given!r} is also where the output {path!r} goes; "
                                   "move it or choose another --out")
        if os.path.isdir(path):
            raise CommandError(f"--out: {path!r} is a folder where an output file goes; "
                               "remove it or choose another --out")
    record = claim_outputs(record_file, command, source)
    if record is None:
        for path in files:
            if os.path.lexists(path):
                raise CommandError(f"--out: {path!r} exists and was not written by saliency-jax {command} "
                                   f"for {source!r}; remove it or choose another --out")
    return record


class Input(NamedTuple):
    """One input: as given, its output stem, how records name it, and its content hash."""

    path: str
    stem: str
    source: str
    identity: str


def input_identity(path: str) -> str:
    """What a record keeps of the input's content: a bundled photo's name, a file's SHA-256."""
    if path.startswith("bundled:"):
        return path
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def load_input(item: Input, max_pixels: int | None):
    """The input's pixels, refused when the file no longer holds the bytes its record will name.

    The file is hashed again after it is decoded: a file replaced since
    :func:`check_inputs` hashed it would otherwise give outputs whose record names
    the old bytes, which ``--resume`` would then trust. Raises ``ValueError`` (or
    ``OSError`` for a file that has gone).
    """
    from saliency_jax import io

    image = io.load_image(item.path, max_pixels=max_pixels)
    if input_identity(item.path) != item.identity:
        raise ValueError(f"image: {printable(item.path)!r} changed while the command was running; "
                         "its outputs were not written (run the command again)")
    return image


def check_inputs(command: str, images: Sequence[str], max_pixels: int | None) -> tuple[list[Input], list[str]]:
    """The inputs that can be read, and the names of those that cannot (each reported in one line).

    Only headers are read (the pixels are read one batch at a time, later).
    Raises :class:`CommandError` when no input can be read.
    """
    from saliency_jax import io

    stems = input_stems(images)
    good, bad = [], []
    for path, stem in zip(images, stems):
        try:
            io.check_image(path, max_pixels=max_pixels)
            good.append(Input(path, stem, source_name(path), input_identity(path)))
        except (OSError, ValueError) as e:
            message = str(e) if isinstance(e, ValueError) or e.filename is None else \
                f"image: {path!r}: {e.strerror or e}"
            if len(images) == 1:
                raise CommandError(message) from None
            report(command, message)
            bad.append(path)
    if not good:
        raise CommandError(f"IMAGE: none of the {len(images)} images can be read")
    return good, bad


def up_to_date(record: dict[str, Any] | None, settings: dict[str, Any], identity: str, out: str) -> bool:
    """Whether a previous run completed this set from the same input bytes with exactly these ``settings``.

    Every file the record lists must still exist with the size it had.
    """
    if record is None or record.get("complete") is not True or record.get("settings") != settings:
        return False
    if record.get("identity") != identity or not isinstance(record.get("files"), dict):
        return False
    return all(_size(os.path.join(out, name)) == size for name, size in record["files"].items())


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


class OutputError(Exception):
    """Writing one input's files failed; the message names the file and the error."""


def write_outputs(record_file: str, record: dict[str, Any], files: Sequence[tuple[str, Callable[[str], None]]]) -> None:
    """Writes one input's set: the record marked incomplete, each file, then the complete record.

    ``files`` are ``(path, write)`` pairs; ``write(path)`` writes atomically. On
    a failure the set's files and record are removed (nothing half claimed) and
    :class:`OutputError` names the file.
    """
    from saliency_jax import io

    base = {"command": record["command"], "input": record["input"]}
    current = record_file
    try:
        io.save_json(record_file, {**base, "complete": False}, strict=True)
        sizes = {}
        for path, write in files:
            current = path
            write(path)
            sizes[os.path.basename(path)] = os.stat(path).st_size
        current = record_file
        io.save_json(record_file, {**record, "complete": True, "files": sizes}, strict=True)
    except (OSError, ValueError, MemoryError) as e:
        for path in (*(p for p, _ in files), record_file):
            if not os.path.isdir(path):
                try:
                    os.remove(path)
                except OSError:
                    pass
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise OutputError(f"cannot write {printable(current)!r}: {reason}") from None


def source_name(path: str) -> str:
    """How a record names its input: ``bundled:NAME`` as given, files by absolute path."""
    return path if path.startswith("bundled:") else printable(os.path.abspath(path))


def printable(text: str) -> str:
    """``text`` with any byte that is not UTF-8 (a surrogate from the file system) written as an escape."""
    return os.fsdecode(text).encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(text: str) -> str:
    """:func:`printable` ``text`` with its control characters (line breaks, terminal escapes) escaped."""
    return "".join(repr(ch)[1:-1] if unicodedata.category(ch) == "Cc" else ch for ch in printable(text))


def report(command: str, message: str) -> None:
    """One line on stderr, whatever the message holds (a file name may hold a line break)."""
    print(f"saliency-jax {command}: {one_line(message)}", file=sys.stderr)


def say(text: str) -> None:
    """A line on stdout; a closed stdout (``| head``) silences the rest rather than failing."""
    try:
        print(printable(text), flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null, so that neither later prints nor the flush at exit fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)

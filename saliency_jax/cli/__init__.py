"""The ``saliency-jax`` command: one module per subcommand, shared options in ``_common``.

Subcommands:
  saliency     image-specific class saliency maps (paper §3) and the attribution family
  localise     weakly supervised localisation with GraphCut (paper §3.2)
  class-model  class model visualisation (paper §2)

Refusals (bad arguments, unreadable inputs, an unwritable ``--out``) are one line
on stderr and exit status 2; Ctrl-C ends any command with status 130. Every file
is written atomically, so neither leaves a partial file behind.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from saliency_jax.cli import _common
from saliency_jax.cli import class_model as class_model_command
from saliency_jax.cli import localise as localise_command
from saliency_jax.cli import saliency as saliency_command

_COMMANDS = (saliency_command, localise_command, class_model_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saliency-jax", description="Class models, saliency maps and localisation (Simonyan et al., 2013).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"saliency-jax: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None, *, classifier=None) -> int:
    """Runs the command line; returns the exit status.

    Args:
      argv: the arguments (``sys.argv[1:]`` if ``None``).
      classifier: a :class:`~saliency_jax.types.Classifier` to use instead of
        the embedded model named by ``--model`` (for tests and embedding).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            # a library warning (e.g. "reading the first frame only") is one line on stderr
            warnings.showwarning = _one_line_warning
            return args.run(args, classifier)
    except KeyboardInterrupt:
        print(f"saliency-jax {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:
        print(f"saliency-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main", "_common"]

"""The ``saliency-jax`` command: one module per subcommand, shared options in ``_common``.

Subcommands:
  saliency     image-specific class saliency maps (paper §3) and the attribution family
  localise     weakly supervised localisation with GraphCut (paper §3.2)
  class-model  class model visualisation (paper §2)

Refusals (bad arguments, no readable input, an unwritable ``--out``, an output
that would overwrite an input or a file the command did not write) are one line
on stderr and exit status 2. An input that cannot be read or written is named
and the others are still written; the command then exits with status 1. Ctrl-C
ends any command at once with status 130, SIGTERM with 143. Every file is written
atomically and every record last, so neither leaves a partial file behind or
claims an incomplete set.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Sequence

# Only light modules here: main() installs its signal handlers before the
# subcommands (and with them JAX) are imported.
from saliency_jax.cli import _common

_COMMAND_NAMES = ("saliency", "localise", "class-model")  # each module's COMMAND (a test checks)
_EXIT_STATUS = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}


def _commands():
    from saliency_jax.cli import class_model, localise, saliency

    return saliency, localise, class_model


class _Parser(argparse.ArgumentParser):
    """An argument parser whose refusal is one line on stderr, exit status 2 (``--help`` shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_common.one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="saliency-jax", description="Class models, saliency maps and localisation (Simonyan et al., 2013).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in _commands():
        command.add_parser(subparsers)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"saliency-jax: warning: {message}", file=sys.stderr if file is None else file)


class _Ending:
    """Ends the process at once on SIGINT or SIGTERM: one line, this process's temporaries removed, ``os._exit``.

    No Python finalisation runs, so neither XLA's callbacks (which may swallow a
    ``KeyboardInterrupt`` or crash at shutdown) nor a pool's workers can delay or
    change the exit. The signal is caught twice: by a Python handler, which runs
    between bytecodes of the main thread, and by a thread woken through
    ``signal.set_wakeup_fd``, which runs while the main thread is inside a long
    compiled call. Whichever comes first ends the process. Records are written
    last, so an interrupted set of files is never taken as complete.
    """

    def __init__(self):
        self.command = ""
        self._lock = threading.Lock()

    def end(self, signum: int) -> None:
        if not self._lock.acquire(blocking=False):
            return
        status, word = _EXIT_STATUS.get(signum, (128 + signum, "stopped"))
        io = sys.modules.get("saliency_jax.io")  # not imported yet: no temporaries either
        if io is not None:
            io.remove_live_temporaries()
        try:
            os.write(2, f"saliency-jax{' ' + self.command if self.command else ''}: {word}\n".encode())
        finally:
            os._exit(status)

    def install(self) -> Callable[[], None]:
        """Installs the handlers (main thread only); returns what restores the previous ones."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        # A signal the caller ignores (SIG_IGN, e.g. SIGINT for a job a shell started in the
        # background) stays ignored, as Python itself leaves it at start-up.
        previous = {s: signal.signal(s, lambda signum, frame: self.end(signum))
                    for s in _EXIT_STATUS if signal.getsignal(s) is not signal.SIG_IGN}
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

        def watch():
            while True:
                data = reader.recv(1)
                if not data or data == b"\0":
                    return
                if data[0] in _EXIT_STATUS:
                    self.end(data[0])

        watcher = threading.Thread(target=watch, name="saliency-jax-signals", daemon=True)
        watcher.start()

        def restore():
            signal.set_wakeup_fd(old_fd)
            for s, handler in previous.items():
                signal.signal(s, handler)
            writer.send(b"\0")
            watcher.join()
            reader.close()
            writer.close()

        return restore


def main(argv: Sequence[str] | None = None, *, classifier=None) -> int:
    """Runs the command line; returns the exit status.

    Args:
      argv: the arguments (``sys.argv[1:]`` if ``None``).
      classifier: a :class:`~saliency_jax.types.Classifier` to use instead of
        the embedded model named by ``--model`` (for tests and embedding).
    """
    ending = _Ending()
    restore = ending.install()
    argv = sys.argv[1:] if argv is None else list(argv)
    # Named before the subcommands (and JAX) are imported, so that a signal during start-up names it too.
    ending.command = argv[0] if argv and argv[0] in _COMMAND_NAMES else ""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        ending.command = args.command
        try:
            with warnings.catch_warnings():
                # a library warning (e.g. "reading the first frame only") is one line on stderr
                warnings.showwarning = _one_line_warning
                return args.run(args, classifier)
        except KeyboardInterrupt:
            _common.report(args.command, "interrupted")
            return 130
        except (ValueError, FileNotFoundError) as e:
            _common.report(args.command, f"error: {e}")
            return 2
        except OSError as e:
            where = f" {_common.printable(os.fsdecode(e.filename))!r}" if e.filename else ""
            _common.report(args.command, f"error:{where} {e.strerror or e}")
            return 1
    finally:
        restore()


__all__ = ["build_parser", "main", "_common"]

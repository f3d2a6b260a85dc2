"""`ofakit` entry point: parse argv, dispatch to one subcommand, turn user mistakes into one line and exit code 2."""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from ofakit import __version__
from ofakit.cli import (arch, bundle, devices, export, finetune, import_ofa, latency, predictor, profile, spaces,
                        specialize, status, train)
from ofakit.errors import OfakitError

COMMANDS = (spaces, arch, bundle, import_ofa, train, status, finetune, devices, profile, latency, export, predictor, specialize)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose "expected one argument" also says how to pass a negative value when one followed the
    option (argparse reads `--latency -5ms` as a missing value and an unknown option)."""

    argv: Sequence[str] = ()  # the arguments being parsed (main sets it)

    def error(self, message: str) -> NoReturn:
        found = re.fullmatch(r"argument (?:\S+/)?(--[\w-]+): expected one argument", message)
        if found:
            option, argv = found.group(1), list(_Parser.argv)
            after = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]
            if after and re.match(r"-[\d.]", after[-1]):
                message += f" (got {after[-1]!r}: a value that begins with '-' goes after '=', {option}={after[-1]})"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ofakit",
        description="Hardware-aware once-for-all: train one elastic supernet, specialize it for each device.",
    )
    parser.add_argument("--version", action="version", version=f"ofakit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def say(text: str) -> None:
    """One line on stderr in one write: processes that share the stream (torchrun's workers) cannot split it."""
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    say(f"ofakit: warning: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (2 for user mistakes, with one line on stderr)."""
    parser = build_parser()
    _Parser.argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse prints its own message; keep its code (2 for usage errors)
        return int(exc.code or 0)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    with warnings.catch_warnings():  # restores showwarning, so main([...]) leaves the caller's warnings alone
        warnings.showwarning = _show_warning
        try:
            return int(args.run(args) or 0)
        except OfakitError as exc:
            say(f"ofakit: error: {exc}")
            return 2
        except KeyboardInterrupt:
            say("ofakit: interrupted")
            return 130


def entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `ofakit spaces --json | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    entry()

"""The ``varfam`` command: thin subcommands that parse, build from config, call the library.

Every subcommand is one module of :mod:`varfam.cli` with a ``register(subparsers)``
function; :data:`COMMANDS` lists them, in the order ``varfam --help`` shows them.
Errors a user can cause print one line ``varfam: error: …`` and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from varfam.cli import (
    classify,
    compare,
    decode,
    encode,
    evaluate,
    explore,
    interpolate,
    listing,
    reconstruct,
    report,
    sample,
    score,
    share,
    tables,
    train,
    tune,
)
from varfam.cli.common import Parser
from varfam.errors import VarfamError

__all__ = ["main", "build_parser", "COMMANDS"]

#: The subcommand modules; each adds its parser(s) with ``register(subparsers)``.
COMMANDS = (train, sample, reconstruct, interpolate, encode, decode, listing, evaluate,
            score, compare, report, explore, classify, tables, share, tune)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: ``varfam SUBCOMMAND …`` (one parser per command module)."""
    from importlib.metadata import version

    __version__ = version("varfam")

    parser = Parser(
        prog="varfam",
        description="Variational autoencoders whose variational families are first-class.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"varfam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        from varfam.runs.hub import resolve_command_runs

        resolve_command_runs(args)  # hf://USER/REPO runs → local folders
        return func(args)
    except VarfamError as e:
        print(f"varfam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("varfam: interrupted", file=sys.stderr)
        return 130

"""Subcommands of ``varfam`` that live in their own modules.

Each module here defines ``register(subparsers)``, which adds its parser and
sets ``func``; :func:`varfam.cli.build_parser` calls every one of them, so a new
command is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from argparse import _SubParsersAction

__all__ = ["register_all"]


def register_all(subparsers: _SubParsersAction) -> None:
    """Import every module of this package and let it add its subcommand(s)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)

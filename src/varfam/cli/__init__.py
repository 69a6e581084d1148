"""The ``varfam`` command: one module per subcommand, each a thin shell over a Python call.

Every module of this package that defines ``register(subparsers)`` adds its
subcommand(s); :func:`main` parses and dispatches.
"""

from __future__ import annotations

from varfam.cli.app import main

__all__ = ["main"]

"""The error a user can cause, and how it is reported.

Anything the user can get wrong (a bad path, a corrupt file, an unknown name, a
bad number) raises :class:`VarfamError` with a one-line message that names the
problem and the fix. The command line prints that line and exits with code 2,
without a traceback. Programming errors raise ordinary exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["VarfamError", "suggest"]


class VarfamError(Exception):
    """A problem the user caused and can fix; its message is one line."""

    exit_code = 2


def suggest(name: str, known: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the nearest known name, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""

"""A griffe extension for the API reference: reST roles and doctests as Markdown.

varfam's docstrings cross-reference with Sphinx roles (``:class:`TrainConfig```,
``:func:`~varfam.load```, ``:mod:`varfam.data```). mkdocstrings renders Markdown, where
these would show the role's name; this extension turns each into a code span of the
name (``~`` keeps the last dotted part, as Sphinx does). mkdocs.yml names it under the
Python handler's ``extensions``. Doctest examples (``>>>`` lines and their output)
are fenced as ``pycon`` code, which Markdown would otherwise read as quotes.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|obj|data|exc|const):`(~?)([^`]+)`")


def _name(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _fence_doctests(text: str) -> str:
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if not fenced and line.startswith(">>>"):
            out.append("```pycon")
            fenced = True
        elif fenced and not line.strip():
            out.append("```")
            fenced = False
        out.append(line)
    if fenced:
        out.append("```")
    return "\n".join(out)


def plain(text: str) -> str:
    """``text`` with every reST role as a Markdown code span and doctests fenced."""
    return _fence_doctests(ROLE.sub(_name, text))


class RolesAsCode(Extension):
    """Rewrites the roles of every docstring griffe loads."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)

"""The catalogue of parts in ``docs/parts.md``, written from varfam's registries.

Each ``<!-- catalogue:KIND:begin -->`` / ``<!-- catalogue:KIND:end -->`` pair in the page
(KIND a key of ``varfam.registry.ALL_REGISTRIES``: ``families``, ``priors`` …) holds a
table of that registry: short name, description, options, paper. As a MkDocs hook
(``hooks:`` in ``mkdocs.yml``) it fills the page at build time; run as a script it
rewrites ``docs/parts.md`` in place, so that the file reads the same on disk::

    python docs/hooks/catalogue.py

``tests/docs/test_catalogue.py`` checks that the file holds what the registries say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parents[1] / "parts.md"
MARKER = re.compile(
    r"(?P<begin><!-- catalogue:(?P<kind>[a-z-]+):begin -->\n)(?P<body>.*?)"
    r"(?P<end><!-- catalogue:(?P=kind):end -->)",
    re.S,
)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(kind: str) -> str:
    """The Markdown table of one registry, e.g. ``table("families")``."""
    from varfam.registry import ALL_REGISTRIES, accepted_options

    registry = ALL_REGISTRIES[kind]
    rows = ["| name | what | options | paper |", "|---|---|---|---|"]
    for entry in registry:
        options = ", ".join(f"`{o}`" for o in _options(entry.target, accepted_options))
        rows.append(
            f"| `{entry.name}` | {_cell(entry.description)} | {options or '–'} "
            f"| {_cell(entry.reference) or '–'} |"
        )
    return "\n".join(rows) + "\n"


def _options(target: Any, accepted_options: Any) -> list[str]:
    try:
        return list(accepted_options(target))
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return []


def kinds(markdown: str) -> list[str]:
    """The registries whose tables ``markdown`` holds, in order."""
    return [m["kind"] for m in MARKER.finditer(markdown)]


def fill(markdown: str) -> str:
    """``markdown`` with every catalogue table written afresh from the registries."""
    return MARKER.sub(lambda m: m["begin"] + table(m["kind"]) + m["end"], markdown)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs hook: fill the catalogue page at build time."""
    return fill(markdown) if page.file.src_uri == PAGE.name else markdown


if __name__ == "__main__":
    PAGE.write_text(fill(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {PAGE}")

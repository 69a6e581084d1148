"""The one way the benchmarks write their measured part of a Markdown file in docs/."""

from __future__ import annotations

from pathlib import Path


def write_block(path: Path, begin: str, end: str, body: str, *, heading: str = "",
                title: str = "") -> None:
    """Put ``body`` between the markers ``begin`` and ``end`` of ``path`` (markers kept).

    Text outside the markers is left as it is. Where the markers are absent the block
    is appended, after the section ``heading`` when one is given; a missing file
    starts as ``title``.
    """
    text = path.read_text() if path.exists() else title
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

"""Every ```python block of README.md and the guides (docs/**/*.md) runs as written.

The blocks of one page run in order in one fresh namespace (as a reader would paste
them into one session), in a temporary working directory, so that a page may build a
model in one block and use it in the next. Registries are restored after each page, so
a page that registers a part of its own does not leak it into other tests.

Convention: a block whose previous non-blank line is ``<!-- slow -->`` runs only in
the slow tier (``make test-all``). The fast tier runs a page's other blocks in order
and must not need a slow block's names; the slow tier runs every block of the page.
Other fences (```sh, ```toml, ```text …) are not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SLOW = "<!-- slow -->"
OPEN = re.compile(r"^```python\s*$")
CLOSE = re.compile(r"^```\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line
    code: str
    slow: bool


def blocks(path: Path) -> list[Block]:
    """The ```python blocks of ``path`` in order, with their slow marks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    previous = ""  # the last non-blank line before the current one
    i = 0
    while i < len(lines):
        if OPEN.match(lines[i]):
            start = i + 1
            end = start
            while end < len(lines) and not CLOSE.match(lines[end]):
                end += 1
            if end == len(lines):
                raise AssertionError(f"{path}:{i + 1}: a ```python block is never closed")
            found.append(Block(path, start + 1, "\n".join(lines[start:end]) + "\n",
                               previous.strip() == SLOW))
            previous, i = lines[end], end + 1
            continue
        if lines[i].strip():
            previous = lines[i]
        i += 1
    return found


def _cases() -> list:
    cases = []
    for path in PAGES:
        found = blocks(path)
        name = str(path.relative_to(ROOT))
        if any(not b.slow for b in found):
            cases.append(pytest.param(path, False, id=f"{name}-fast"))
        if any(b.slow for b in found):
            cases.append(pytest.param(path, True, id=f"{name}-slow", marks=pytest.mark.slow))
    return cases


@pytest.fixture
def clean_registries():
    """Restore every registry after the page (a page may register a part of its own)."""
    from varfam.registry import ALL_REGISTRIES

    saved = {}
    for kind, registry in ALL_REGISTRIES.items():
        registry.names()  # loads the built-in parts first
        saved[kind] = dict(registry._entries)
    yield
    for kind, entries in saved.items():
        registry = ALL_REGISTRIES[kind]
        registry._entries.clear()
        registry._entries.update(entries)


@pytest.mark.parametrize(("path", "slow_tier"), _cases())
def test_page_code_runs(path: Path, slow_tier: bool, tmp_path, monkeypatch, clean_registries):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__main__"}
    for block in blocks(path):
        if block.slow and not slow_tier:
            continue
        # pad with newlines so that a traceback names the line of the Markdown file
        code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
        exec(code, namespace)


def test_slow_marks_precede_python_blocks():
    """A ``<!-- slow -->`` line that marks no ```python block is a mistake in the page."""
    for path in PAGES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.strip() != SLOW:
                continue
            following = next((ln for ln in lines[i + 1:] if ln.strip()), "")
            assert OPEN.match(following), f"{path}:{i + 1}: {SLOW} is not followed by ```python"


def test_pages_have_code():
    """The parser finds the blocks (a fence written differently would silently run nothing)."""
    assert blocks(ROOT / "README.md"), "README.md has no ```python block"
    assert sum(len(blocks(p)) for p in PAGES) >= 10

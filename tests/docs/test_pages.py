"""The pages say what the code does: the parts catalogue, the README's list of parts, the
command-line page, the pages' tables and the README's links.

(The Python blocks run in test_code_blocks.py; the site's build in test_site.py.)
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _catalogue():
    spec = importlib.util.spec_from_file_location("catalogue", DOCS / "hooks" / "catalogue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_catalogue_is_written_from_the_registries():
    """docs/parts.md holds a table for every registry, as the registries say it today.

    After adding or changing a part: ``python docs/hooks/catalogue.py`` rewrites the page.
    """
    from varfam.registry import ALL_REGISTRIES

    catalogue = _catalogue()
    page = catalogue.PAGE.read_text(encoding="utf-8")
    assert sorted(catalogue.kinds(page)) == sorted(ALL_REGISTRIES), (
        "docs/parts.md needs a <!-- catalogue:KIND:begin/end --> pair for each registry"
    )
    stale = "docs/parts.md is stale: run python docs/hooks/catalogue.py"
    assert page == catalogue.fill(page), stale
    for kind, registry in ALL_REGISTRIES.items():
        table = catalogue.table(kind)
        for name in registry.names():
            assert f"| `{name}` |" in table


README_KINDS = {
    "families": "families",
    "priors": "priors",
    "likelihoods": "likelihoods",
    "objectives": "objectives",
    "architectures": "networks",
    "samplers": "samplers",
    "scores": "scores",
}


@pytest.mark.parametrize("kind", sorted(README_KINDS))
def test_readme_lists_every_part(kind):
    """The README's table of parts names every registered part of each kind."""
    from varfam.registry import ALL_REGISTRIES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next((line for line in readme.splitlines()
                if line.startswith(f"| {README_KINDS[kind]}")), None)
    assert row is not None, f"README.md has no row '| {README_KINDS[kind]} ...' in its parts table"
    named = set(re.findall(r"`([^`]+)`", row))
    missing = [n for n in ALL_REGISTRIES[kind].names() if n not in named]
    assert not missing, f"README.md's {README_KINDS[kind]} row lacks {missing}"


@pytest.mark.parametrize("path", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_page_is_in_the_site_navigation(path):
    """A page missing from mkdocs.yml's nav is built but reachable by no menu."""
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").partition("\nnav:")[2]
    assert re.search(rf"(^|\s){re.escape(path.relative_to(DOCS).as_posix())}\s*$", nav, re.M), (
        f"add docs/{path.relative_to(DOCS).as_posix()} to the nav of mkdocs.yml"
    )


def test_command_line_page_lists_every_command():
    from varfam.cli.app import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = [name for name in sub.choices if f"`varfam {name}" not in page]
    assert not missing, f"docs/cli.md does not show {missing}"


def _cells(row: str) -> int:
    row = re.sub(r"\\\|", "", row.strip())
    return row.strip("|").count("|") + 1


def _tables(text: str):
    """(line number, rows) of each Markdown table outside fenced code."""
    fenced, rows, start = False, [], 0
    for i, line in enumerate([*text.splitlines(), ""], 1):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("|"):
            if not rows:
                start = i
            rows.append(line)
            continue
        if rows:
            yield start, rows
            rows = []


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_tables_have_one_cell_per_column(path):
    """A stray | (write \\| inside a cell) would shift a row's cells."""
    for start, rows in _tables(path.read_text(encoding="utf-8")):
        width = _cells(rows[0])
        for k, row in enumerate(rows):
            assert _cells(row) == width, f"{path}:{start + k}: {_cells(row)} cells, header {width}"


def _slug(heading: str) -> str:
    """The anchor of a heading, as Python-Markdown's toc (and GitHub, for these) make it."""
    text = re.sub(r"`|\*\*", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


def test_readme_links_reach_their_pages():
    """The README is not part of the site, so mkdocs --strict does not check its links."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = ROOT / file if file else ROOT / "README.md"
        assert path.exists(), f"README.md links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"README.md links to {target}: no such heading"


def _shell_commands(path: Path):
    """(line, argv) of each ``varfam ...`` command in the page's ```sh / ```bash blocks."""
    import shlex

    fenced, joined, start = None, "", 0
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = line[3:].strip() if fenced is None else None
            continue
        if fenced not in ("sh", "bash"):
            continue
        if not joined:
            start = i
        joined += line.rstrip("\\").rstrip() + " "
        if line.endswith("\\"):
            continue
        words, joined = shlex.split(joined, comments=True), ""
        command: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", ";", "||", "|"):
                if "varfam" in command:  # also torchrun ... -m varfam train ...
                    yield start, command[command.index("varfam") + 1:]
                command = []
            else:
                command.append(word)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_examples_parse(path):
    """Every ``varfam ...`` line of the pages' shell blocks parses: its command, flags and
    choices exist (nothing runs: the parser only reads the words)."""
    from varfam.cli.app import build_parser

    parser = build_parser()
    for line, argv in _shell_commands(path):
        try:
            parser.parse_args(argv)
        except SystemExit as e:
            assert e.code == 0, f"{path}:{line}: varfam {' '.join(argv)} does not parse"


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


#: names that are not Python objects: the metadata keys of the ONNX graphs
NOT_OBJECTS = {"varfam.data_shape", "varfam.latent_dim"}


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dotted_names_exist(path):
    """Every ``varfam.a.b`` the page names in code exists (modules move; pages must follow)."""
    text = path.read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"\b(varfam(?:\.[A-Za-z_]\w*)+)", text)))
    missing = [n for n in names if n not in NOT_OBJECTS and not _resolves(n)]
    assert not missing, f"{path} names {missing}, which do not exist"

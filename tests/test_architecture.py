"""The shape of the package (issue 25): one ``ls`` shows the architecture, no module shares
a public function's name, no import circles (``TYPE_CHECKING`` and lazy imports counted,
and a module's parent packages, which Python imports first), and lower layers never
import upper ones."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
import types
from pathlib import Path

import varfam

SRC = Path(varfam.__file__).parent
PARTS = {"families", "priors", "likelihoods"}

#: The layers, lowest first: a module may import its own layer and the ones below.
LAYERS = [
    {"errors", "registry", "config", "parts"},
    {"data", "nets", "families", "priors", "likelihoods"},
    {"model"},
    {"objectives", "runs", "samplers"},
    {"evaluation", "training"},  # each epoch is evaluated; the ratio score trains a model
    {"reporting", "tables"},  # the report shows tables; a table's pictures are pictures
    {"sharing", "integrations"},
    {"cli", "__main__", "varfam"},
]


def test_one_ls_shows_the_architecture() -> None:
    """At most 18 entries besides the parts packages and the dunder files."""
    entries = sorted(p.name for p in SRC.iterdir()
                     if p.name not in PARTS and not p.name.startswith("__"))
    assert len(entries) <= 18, entries


def test_no_module_shares_a_name_with_a_public_function() -> None:
    packages = [varfam] + [importlib.import_module(m.name) for m in
                           pkgutil.walk_packages(varfam.__path__, "varfam.") if m.ispkg]
    clashes = []
    for package in packages:
        submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
        for name in getattr(package, "__all__", []):
            value = getattr(package, name)
            if inspect.isfunction(value) and name in submodules:
                clashes.append(f"{package.__name__}.{name}")
    assert clashes == []
    assert type(sys.modules["varfam"]) is types.ModuleType  # no ModuleType patch


def _imports(path: Path, package: str) -> set[str]:
    """Every module of varfam that ``path`` imports, anywhere (TYPE_CHECKING included)."""
    out: set[str] = set()
    text = path.read_text()
    if path.name == "__init__.py" and "iter_modules(__path__)" in text:  # imports them all
        out.update(f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path.parent)]))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if _exists(f"{base}.{a.name}") else base
                     for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("varfam"):
                out.add(name)
    return out


def _exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return name == "varfam" or (SRC / rel.with_suffix(".py")).is_file() or \
        (SRC / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for target in _imports(path, package):
            chain = target.split(".")
            for i in range(1, len(chain) + 1):  # importing a.b.c runs a and a.b first
                step = ".".join(chain[:i])
                ancestor = name.startswith(step + ".")  # already running: not a new edge
                if step != name and _exists(step) and (step == target or not ancestor):
                    edges.add(step)
        graph[name] = edges
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_lower_layers_never_import_upper_ones() -> None:
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    top = lambda module: module.split(".")[1] if "." in module else module  # noqa: E731
    wrong = [(a, b) for a, targets in _graph().items() for b in targets
             if layer[top(b).removesuffix(".py")] > layer[top(a)]]
    assert wrong == []
    assert {p.stem if p.suffix else p.name for p in SRC.iterdir()
            if not p.name.startswith("_") and p.name != "py.typed"} <= set(layer)

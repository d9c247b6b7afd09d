"""The house in order (docs/layout.md): repssd's modules import each other without a cycle, each
only from layers below its own, and at the top of the module.

The import graph is read off the source with ``ast``: every ``import`` statement, at module level
or inside a function (a function-level import runs too, later, and hides a cycle from Python's
own import order), resolved to repssd modules. Importing ``a.b.c`` runs ``a/__init__`` and
``a/b/__init__`` first, so it depends on those packages as well (except the importer's own
ancestors, which are already running).
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIS = ("train.py", "eval.py", "detect.py")  # the thin CLIs at the repository root
SCRIPTS = ("experiments", "benchmarks")  # the ablation runner and the peer comparisons: CLIs too

# Components in layer order, lowest first (docs/layout.md lists the same): a module may import
# its own component, and components earlier in this list, never a later one.
LAYERS: list[tuple[str, list[str]]] = [
    ("geometry at the ground", ["batching", "boxes", "coder", "priors", "matcher", "options", "inputs", "files"]),
    ("models, losses, data", ["models", "losses", "data"]),
    ("weight import", ["convert"]),
    ("post-processing and slicing", ["postprocess", "slicing"]),
    ("the detector and what runs it", ["detector", "visualize", "export", "integrations"]),
    ("evaluation", ["eval"]),
    ("the engine", ["engine"]),
    ("installers and the main job", ["weights", "demo"]),
]
ORDER = {f"repssd.{name}": rank for rank, name in enumerate(n for _, names in LAYERS for n in names)}

# (a) optional dependencies a plain install may lack (and repssd's adapter that needs one): imported
# where used, each with a one-line message when missing. Nothing else is imported inside a function.
OPTIONAL = ("visdom", "onnx", "onnxruntime", "sahi", "ai_edge_litert", "repssd.integrations.sahi")
# (b) CLI entry points that import inside a function for a start-up time measured and stated in a
# comment beside the import: {(file, imported module)}. None today.
STARTUP: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    source: str     # importing module (dotted)
    target: str     # imported module (dotted; a repssd module or a third-party one)
    line: int
    in_function: bool


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``package`` (a folder holding ``__init__.py``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import statement of module ``name`` (file ``path``), resolved; ``known``: the package's
    modules, to tell ``from pkg import submodule`` from ``from pkg import attribute``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(name, alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".")[: len(name.split(".")) - (0 if is_package else 1)]
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module
                found.append(Import(name, module, child.lineno, in_function))
                found.extend(Import(name, f"{module}.{alias.name}", child.lineno, in_function)
                             for alias in child.names if f"{module}.{alias.name}" in known)
            else:
                visit(child, inside)

    visit(tree, False)
    return found


def graph(known: dict[str, Path], top: str) -> dict[str, set[str]]:
    """Module -> the modules of package ``top`` that importing it runs (each target and its
    ancestor packages, bar the importer's own ancestors)."""
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for imp in imports(name, path, known):
            parts = imp.target.split(".")
            if parts[0] != top:
                continue
            for i in range(2, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in known and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(_path(sorted(component), edges))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def _path(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One cycle through the component's first module (breadth-first back to it), for the message."""
    members, start = set(component), component[0]
    previous: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(edges[node] & members):
                if other == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if other not in previous:
                    previous[other] = node
                    following.append(other)
        frontier = following
    return component


def component(name: str) -> str:
    """``repssd.slicing.run`` -> ``repssd.slicing``; the root package is its own."""
    return ".".join(name.split(".")[:2])


KNOWN = modules(ROOT / "repssd")
EDGES = graph(KNOWN, "repssd")


def test_no_import_cycle_among_repssd_modules():
    found = cycles(EDGES)
    assert found == [], "import cycles (function-level imports included):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found)


def test_every_module_belongs_to_a_layer():
    unplaced = sorted({component(name) for name in KNOWN} - set(ORDER) - {"repssd"})
    assert unplaced == [], f"place these in LAYERS and docs/layout.md: {unplaced}"


def test_no_module_imports_from_a_layer_above_it():
    upward = [f"{source} imports {target}" for source, targets in EDGES.items() for target in targets
              if component(source) in ORDER and ORDER.get(component(target), -1) > ORDER[component(source)]]
    assert upward == [], "imports from a higher layer (see docs/layout.md):\n" + "\n".join(sorted(upward))


def optional(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in OPTIONAL)


def test_imports_sit_at_the_top_of_every_module():
    files = {**KNOWN, **{path: ROOT / path for path in CLIS}}
    files.update({f"{folder}.{path.stem}": path for folder in SCRIPTS for path in sorted((ROOT / folder).glob("*.py"))})
    inside = []
    for name, path in files.items():
        for imp in imports(name, path, KNOWN):
            if imp.in_function and not optional(imp.target) and (path.name, imp.target) not in STARTUP:
                inside.append(f"{path.relative_to(ROOT)}:{imp.line}: {imp.target}")
    assert inside == [], "imports inside functions (allowed only for optional dependencies):\n" + "\n".join(inside)


def test_the_layout_page_names_every_layer():
    page = (ROOT / "docs" / "layout.md").read_text()
    missing = [title for title, _ in LAYERS if title not in page]
    missing += [name for _, names in LAYERS for name in names if name not in page]
    assert missing == []


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A package whose cycle hides behind a function-level import: ``a -> b`` at the top,
    ``b -> a`` inside a function; and ``c`` reaches ``pkg/sub/__init__`` through ``pkg.sub.d``."""
    files = {
        "__init__.py": "",
        "a.py": "from .b import g\n",
        "b.py": "def g():\n    from . import a\n    return a\n",
        "c.py": "import pkg.sub.d\n",
        "sub/__init__.py": "from ..c import *\n",
        "sub/d.py": "",
    }
    for rel, text in files.items():
        (tmp_path / "pkg" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / rel).write_text(textwrap.dedent(text))
    return tmp_path / "pkg"


def test_the_checker_finds_a_cycle_hidden_in_a_function_and_one_through_a_package_init(toy):
    known = modules(toy)
    edges = graph(known, "pkg")
    assert edges["pkg.a"] == {"pkg.b"} and edges["pkg.b"] == {"pkg.a"}
    assert edges["pkg.c"] == {"pkg.sub", "pkg.sub.d"}  # the package's __init__ runs first
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.sub", "pkg.c"]]
    inside = [(imp.target, imp.line) for imp in imports("pkg.b", known["pkg.b"], known) if imp.in_function]
    assert inside == [("pkg", 2), ("pkg.a", 2)]

"""The Python package's module graph is one-way and its files stay small.

Reads the source tree next to this file (tests/../python/cryptgpu) with
``ast``, so it checks the sources even where the installed wheel is what
``import cryptgpu`` finds. Every import counts, at module level or inside a
function: a function-level import that dodges a cycle is still a cycle.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = "cryptgpu"
ROOT = pathlib.Path(__file__).resolve().parent.parent / "python" / PKG
MAX_LINES = 700

pytestmark = pytest.mark.skipif(
    not (ROOT / "__init__.py").is_file(), reason=f"no source tree at {ROOT}"
)


def _module_name(path: pathlib.Path) -> str:
    parts = [PKG, *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, pathlib.Path]:
    """Module name -> .py file, for every module of the package."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _known_modules(sources) -> set[str]:
    """Every importable module name: the .py modules, plus compiled ones
    known by their stubs or binaries (cryptgpu._native), so that
    ``from . import _native`` resolves to the module, not the package."""
    known = set(sources)
    for p in ROOT.rglob("*"):
        if p.suffix in (".pyi", ".so", ".pyd"):
            known.add(_module_name(p.with_name(p.name.split(".")[0] + ".py")))
    return known


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The package modules that module ``name`` imports, anywhere in its body."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()

    def add(target: str) -> None:
        # The nearest enclosing known module: "cryptgpu.nn.layers.Linear" is
        # an import of cryptgpu.nn.layers.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            out.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PKG or a.name.startswith(PKG + "."):
                    add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module == PKG or (node.module or "").startswith(PKG + "."):
                mod = node.module
            else:
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                # ``from . import x`` imports submodule x when there is one.
                add(sub if sub in known else mod)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (only modules with sources)."""
    sources = _sources()
    known = _known_modules(sources)
    return {n: {m for m in _imports(n, p, known) if m in sources} for n, p in sources.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_source_tree_is_found():
    graph = import_graph()
    assert {"cryptgpu", "cryptgpu.tensor", "cryptgpu.nn", "cryptgpu.autograd"} <= set(graph)
    # The resolution itself: relative, parent-relative and submodule imports.
    assert "cryptgpu.tensor" in graph["cryptgpu"]
    assert "cryptgpu.nn.layers" in graph["cryptgpu.nn"]
    assert "cryptgpu.tensor" in graph["cryptgpu.nn.module"]
    assert "cryptgpu" not in graph["cryptgpu._session"]  # `from . import _native`


def test_the_module_graph_has_no_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_source_file_is_too_long():
    long = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"files over {MAX_LINES} lines: {long}"


def test_protocols_are_not_composed_in_python():
    """Python composes engine calls; it does not implement protocols (issue
    15): no im2col/col2im, no sign-bit injection strung into a tournament or
    a ReLU mask, no coin toss built from sharings."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        for needle in (".im2col(", ".col2im(", "_tournament_pow2", "secrets.randbelow"):
            if needle in text:
                bad.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not bad, bad

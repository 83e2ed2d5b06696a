"""The package's layers import only downward, and no modules import each other in a cycle.

Every ``import`` statement of every module counts, deferred ones inside functions
included: a deferred import hides a dependency from the reader, not from this test.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "voxmetric"

LAYERS = [
    ["errors", "_version"],
    ["fileio", "checks"],
    ["audio"],
    ["data"],
    ["models"],
    ["losses"],
    ["evaluate"],
    ["inference"],
    ["training"],
    ["deploy"],
    ["cli", "pretrained", "__init__", "__main__"],
]
"""Top-level modules and subpackages, lowest first: each may import only those listed before it
(and, within one entry, its own modules)."""

RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The voxmetric modules ``path`` imports (``from pkg import name`` counts as pkg.name when that
    is a module), each resolved to an absolute name."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "voxmetric"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "voxmetric":
                continue
            subs = {f"{target}.{alias.name}" for alias in node.names} & set(MODULES)
            found |= subs or {target}
    return found - {name}


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_top_level_module_has_a_layer():
    assert {layer(m) for m in MODULES} <= set(RANK), "add new top-level modules or packages to LAYERS"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_only_downward(module):
    upward = sorted(target for target in GRAPH[module]
                    if RANK[layer(target)] > RANK[layer(module)]
                    or (RANK[layer(target)] == RANK[layer(module)] and layer(target) != layer(module)))
    assert not upward, f"{module} (layer {layer(module)}) imports from a layer above or beside it: {upward}"


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles of a module graph (depth-first search, one cycle per back edge)."""
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_checker_sees_deferred_and_relative_imports(tmp_path):
    source = "def f():\n    from ..inference import loading\n    from . import io\n"
    path = PACKAGE / "audio" / "_probe_for_test.py"
    try:
        path.write_text(source)
        assert imports(path) >= {"voxmetric.inference.loading", "voxmetric.audio.io"}
    finally:
        path.unlink()

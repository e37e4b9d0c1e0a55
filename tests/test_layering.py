"""The package's shape, checked: layers import downward only, no import cycles, and no layer
asks a module its type name (it asks what the module does, blueprint/models.py)."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aqueduct_dagster"

#: Layer -> the package's layers it may import (besides itself). Data flows one way.
ALLOWED = {
    "errors": set(),
    "env_files": {"errors"},
    "blueprint": {"errors"},
    "config": {"blueprint", "env_files", "errors"},
    "engine": {"blueprint", "errors"},
    "stores": {"blueprint", "config", "errors"},
    "settings": {"blueprint", "config", "engine", "errors"},
    "healing": {"blueprint", "config", "engine", "errors", "settings", "stores"},
    "testing": {"blueprint", "engine", "errors", "settings"},
}
#: Outside libraries a layer must not import: the Blueprint model is pure, the engine knows no Dagster.
FORBIDDEN = {"blueprint": {"pyspark", "dagster", "duckdb"}, "engine": {"dagster"}, "healing": {"dagster"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> every module it imports, function-local imports included (they run too);
    imports under `if TYPE_CHECKING:` are left out (they never run)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(node) for branch in ast.walk(tree)
                       if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
                       for node in ast.walk(branch)}  # fmt: skip
        name = _module_name(path)
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found[name].add(node.module)
                found[name].update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found[name].update(alias.name for alias in node.names)
    return found


IMPORTS = _imports()
MODULES = set(IMPORTS)


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else module


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items() if _layer(module) == layer
        for target in targets
        if target.startswith("aqueduct_dagster.") and target in MODULES
        and _layer(target) not in ALLOWED[layer] | {layer}
    )  # fmt: skip
    outside = sorted(
        f"{module} imports {target}"
        for module, targets in IMPORTS.items() if _layer(module) == layer
        for target in targets if target.split(".")[0] in FORBIDDEN.get(layer, set())
    )  # fmt: skip
    assert not wrong and not outside, wrong + outside


def test_there_are_no_import_cycles():
    """Strongly connected groups of the import graph (a package and its own submodules aside)."""
    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    graph = {m: {t for t in IMPORTS[m] if t in MODULES and t != m and not related(m, t)} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    for start in sorted(graph):  # Tarjan's algorithm, iteratively
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    assert not cycles, cycles


TYPE_NAME_TEST = re.compile(
    r"\.type\s*(?:==|!=|in|not in)\s*[(\[{]?\s*['\"](?:Ingress|Channel|Egress|Assert|Junction|Funnel|Probe|Regulator|Arcade)['\"]"
)


def test_no_layer_branches_on_a_module_type_name():
    found = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
             for path in PACKAGE.rglob("*.py")
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if TYPE_NAME_TEST.search(line)]  # fmt: skip
    assert not found, found

"""The house rules that keep each concern in one room, checked on the source itself (no imports run):

- backend/ is layered: every import (lazy ones too) goes to the same floor or a lower one;
- no import circle in backend/ or in the add-on;
- the add-on imports only Blender's modules, the standard library, numpy and itself (never torch or
  the backend);
- no function over 150 lines in backend/ or the add-on.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# backend/'s floors, lowest first. A module may import its own floor and those below.
FLOORS = {
    "errors": 0, "protocol": 0, "jobs": 0, "__init__": 0,
    # the lowest working floor: networks, samplers, geometry, every file format
    "models": 1, "schedulers": 1, "geometry": 1, "io": 1,
    # what stands on the networks: the model store, frame preparation, synthetic data, metrics
    "hub": 2, "preprocessing": 2, "synthetic": 2, "eval": 2,
    # the solvers
    "registration": 3, "fitting": 3, "rigging": 3,
    # orchestration
    "pipelines": 4,
    # the service for the add-on
    "service": 5,
    # developers' tools on top
    "bench": 6, "train": 6,
    # the command line: the entry point above everything it runs (`python -m backend bench ...` too)
    "__main__": 7,
}
MAX_FUNCTION_LINES = 150


def _modules(package: Path) -> dict:
    """{dotted module name: path} of every .py file under `package`."""
    out = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> list:
    """(line, imported module) for every import of `path` naming a module of `modules` or any
    other top-level package; lazy imports inside functions count."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[:len(base) - node.level + 1]
                target = ".".join(prefix + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found += [(node.lineno, m) for m in (subs if len(subs) == len(node.names) else [target] + subs)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def _graph(package: Path) -> tuple[dict, dict]:
    modules = _modules(package)
    graph = {name: sorted({m for _, m in _imports(name, path, modules) if m in modules and m != name})
             for name, path in modules.items()}
    return modules, graph


def _cycles(graph: dict) -> list:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in graph:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return groups


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_backend_imports_never_run_up_the_floors():
    modules, graph = _graph(REPO / "backend")
    unknown = sorted({_room(m) for m in modules} - set(FLOORS))
    assert not unknown, f"backend module(s) with no floor in FLOORS: {unknown}"
    upward = []
    for name, path in modules.items():
        for line, target in _imports(name, path, modules):
            if target in modules and FLOORS[_room(target)] > FLOORS[_room(name)]:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not upward, "imports up the floors:\n" + "\n".join(upward)


def test_no_import_circles():
    for package in ("backend", "actionmesh_blender"):
        _, graph = _graph(REPO / package)
        assert _cycles(graph) == [], f"import circle(s) in {package}/: {_cycles(graph)}"


def test_the_add_on_imports_only_bpy_the_standard_library_numpy_and_itself():
    allowed = {"bpy", "bpy_extras", "mathutils", "numpy"} | set(sys.stdlib_module_names)  # Blender ships all four
    modules = _modules(REPO / "actionmesh_blender")
    foreign = []
    for name, path in modules.items():
        for line, target in _imports(name, path, modules):
            top = target.split(".")[0]
            if top != "actionmesh_blender" and top not in allowed:
                foreign.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not foreign, "the add-on runs inside Blender's Python:\n" + "\n".join(foreign)


def test_no_function_over_150_lines():
    long = []
    for package in ("backend", "actionmesh_blender"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these into named parts:\n" + "\n".join(long)


def test_the_checks_can_fail():
    """The circle finder and the floor rule on a made-up graph, so a broken checker cannot pass."""
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": [], "c": ["a"]}) == []
    assert FLOORS[_room("backend.pipelines.register")] > FLOORS[_room("backend.models.vae")]
    assert _room("backend") == "__init__" and _room("backend.io.mesh") == "io"

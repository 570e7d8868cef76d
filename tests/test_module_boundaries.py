"""What may import what. core is the plugin host: it never imports the built-in plugins, adapters
or services by name (it loads them by their entry in DEFAULT_PLUGINS); the CLI alone starts the
rerank service. Inside core, each room imports only the rooms below it (``LAYERS``), and no
module imports itself back through others, not even under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.processes import ROOT

OUTSIDE = ("plugins", "adapters", "services")
FOLDERS = ("core", "plugins", "adapters", "services")
# maas serve-rerank: the command that starts the second process, imported only when run.
ALLOWED = {("core/cli.py", "services.rerank.service")}
# A room of core and the rooms of core it must never import (the ones above it).
LAYERS = {
    "core.scheduling": ("core.flow", "core.http", "core.dialects", "core.requests", "core.served",
                        "core.gateway", "core.snapshot"),
    "core.served": ("core.flow", "core.requests", "core.dialects", "core.http", "core.gateway", "core.chain",
                    "core.snapshot"),
    "core.requests": ("core.dialects", "core.flow", "core.http", "core.gateway", "core.chain", "core.scheduling"),
    "core.dialects": ("core.flow", "core.served", "core.scheduling", "core.http", "core.gateway", "core.chain"),
    "core.adapters": ("core.served", "core.scheduling", "core.snapshot", "core.flow", "core.gateway"),
    "core.config": ("core.gateway", "core.flow", "core.served", "core.scheduling", "core.http"),
    "core.kinds": ("core",),  # a leaf: every room may name a kind
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` names in an import, at any depth (``TYPE_CHECKING`` blocks included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # a submodule imported by name
    return names


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")}
    return {name: {n for n in _imports(path) if n in files and n != name} for name, path in files.items()}


def test_core_imports_no_plugin_adapter_or_service():
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name in _imports(path):
            allowed = any(rel == r and (name == m or name.startswith(m + ".")) for r, m in ALLOWED)
            if name.split(".")[0] in OUTSIDE and not allowed:
                found.append(f"{rel} imports {name}")
    assert len(list((ROOT / "core").rglob("*.py"))) > 20
    assert not found


def test_each_room_of_core_imports_only_rooms_below_it():
    graph = _graph()
    found = [f"{module} imports {name}" for module, names in graph.items() for room, above in LAYERS.items()
             if module == room or module.startswith(room + ".")
             for name in names if any(name == a or name.startswith(a + ".") for a in above)]
    assert not found


def test_there_is_no_import_cycle_not_even_for_type_checking():
    graph = _graph()
    assert len(graph) > 60
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_no_module_is_past_three_hundred_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for folder in FOLDERS
            for p in (ROOT / folder).rglob("*.py") if (n := len(p.read_text().splitlines())) > 300]
    assert not long

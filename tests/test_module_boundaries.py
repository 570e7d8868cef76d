"""core is the plugin host: it never imports the built-in plugins, adapters or services by name
(it loads them by their entry in DEFAULT_PLUGINS). The CLI alone starts the rerank service."""

from __future__ import annotations

import ast

from tests.support.processes import ROOT

OUTSIDE = ("plugins", "adapters", "services")
# maas serve-rerank: the command that starts the second process, imported only when run.
ALLOWED = {("core/cli.py", "services.rerank.service")}


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_core_imports_no_plugin_adapter_or_service():
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name in _imports(path):
            if name.split(".")[0] in OUTSIDE and (rel, name) not in ALLOWED:
                found.append(f"{rel} imports {name}")
    assert len(list((ROOT / "core").rglob("*.py"))) > 20
    assert not found


def test_no_module_is_past_five_hundred_lines():
    long = [f"{p.relative_to(ROOT)}: {n}" for folder in ("core", "plugins", "adapters", "services")
            for p in (ROOT / folder).rglob("*.py") if (n := len(p.read_text().splitlines())) > 500]
    assert not long

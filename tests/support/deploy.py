"""Read the deployment artefacts the way their tools would, for static checks.

No Docker engine, Kubernetes or Helm runs here, so the tests parse compose files, Dockerfiles,
Helm charts and manifests, and compare them with what the code really reads and runs.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import ROOT, base_env

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
HELM = DEPLOY / "k8s" / "helm"
MANIFESTS = DEPLOY / "k8s" / "manifests"
DOCKERFILES = {"router": ROOT / "services" / "router" / "Dockerfile",
               "rerank": ROOT / "services" / "rerank" / "Dockerfile"}
CODE_DIRS = ("core", "plugins", "adapters", "services")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*_[A-Z0-9_]+$")


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: its ``!reset`` and ``!override`` tags included."""


ComposeLoader.add_constructor("!reset", lambda loader, node: [] if isinstance(node, yaml.SequenceNode)
                              else {} if isinstance(node, yaml.MappingNode) else None)
ComposeLoader.add_constructor("!override", lambda loader, node: (
    loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node) if isinstance(node, yaml.MappingNode) else loader.construct_scalar(node)))


def load_compose(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=ComposeLoader)  # noqa: S506 - a SafeLoader subclass


def compose_files() -> list[Path]:
    return sorted(COMPOSE.glob("*.yml")) + sorted(COMPOSE.glob("*.yaml"))


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def code_env_vars() -> dict[str, set[str]]:
    """Every environment variable the gateway's code reads → the files that read it.

    Found in the source, not from a list kept by hand: string constants that are the first
    argument of ``<anything>.get(...)`` / ``getenv(...)``, the second of ``number(env, ...)`` and
    ``redis_url_env(env, ...)``, the first of ``EnvOption(...)`` (a plugin's section),
    or the key of ``environ[...]``, and look like an environment variable (upper case with an underscore).
    """
    found: dict[str, set[str]] = {}
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                name = None
                if isinstance(node, ast.Call) and node.args:
                    func = node.func
                    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                    if called in ("get", "getenv", "pop", "setdefault", "EnvOption"):
                        name = _constant(node.args[0])
                    elif called in ("number", "redis_url_env") and len(node.args) >= 2:
                        name = _constant(node.args[1])  # core.config.settings: number(env, NAME, ...) and the like
                elif isinstance(node, ast.Subscript) and _is_environ(node.value):
                    name = _constant(node.slice)
                if name and _ENV_NAME.match(name):
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or \
        (isinstance(node, ast.Name) and node.id == "environ")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    """A CMD/ENTRYPOINT argument: the JSON exec form, else shell words."""
    try:
        value = json.loads(args)
    except ValueError:
        return shlex.split(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def check_maas_argv(argv: list[str]) -> None:
    """Fail unless ``argv`` is a real ``maas`` subcommand with options that subcommand has."""
    assert argv[:1] == ["maas"], f"expected the maas console script, got {argv}"
    sub = argv[1]
    result = subprocess.run([sys.executable, "-m", "core.cli", sub, "--help"], capture_output=True,
                            text=True, env=base_env(), cwd=ROOT, timeout=60)
    assert result.returncode == 0, f"'maas {sub}' is not a command: {result.stderr}"
    assert f"maas {sub}" in result.stdout
    for flag in (a.split("=", 1)[0] for a in argv[2:] if a.startswith("--")):
        assert re.search(rf"(^|\s){re.escape(flag)}\b", result.stdout), f"'maas {sub}' has no option {flag}"


def helm_charts() -> list[Path]:
    return sorted(p for p in HELM.iterdir() if (p / "Chart.yaml").is_file())


def values_paths(template: str) -> Iterator[tuple[str, ...]]:
    for match in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", template):
        yield tuple(match.group(1).strip(".").split("."))


def lookup(data: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def template_env_names(template: str) -> set[str]:
    """Literal ``- name: FOO`` entries of container env lists in a Helm template."""
    return set(re.findall(r"-\s+name:\s+([A-Z][A-Z0-9_]+)\s*$", template, flags=re.MULTILINE))


def manifest_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(MANIFESTS.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc.get("kind") != "Deployment":
        return []
    return doc["spec"]["template"]["spec"]["containers"]

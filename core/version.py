"""The gateway's one version, from the installed package's metadata (pyproject.toml's)."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "quadrate-maas-embeddings"


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"

"""Good and bad config files for the live-config tests, written as text so lines are known.

Every good config serves the in-process MiniLM; extra aliases share its upstream (one loaded
model), so a reload that adds one costs no model load. Rate limits are high enough that load
tests never meet them.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.config.files import config_digest

FILES = ("routing.yaml", "auth.yaml", "rate_limits.yaml")

AUTH = "api_keys: []\nallow_anonymous_without_api_keys: true\n"

RATE_LIMITS = """default:
  capacity: 1000000
  refill_rate: 1000000
anonymous:
  capacity: 1000000
  refill_rate: 1000000
"""


def routing(*aliases: str, max_batch_size: int = 32, upstream_type: str = "local") -> str:
    """routing.yaml with the given embedding aliases, all served by one MiniLM upstream."""
    out = ["embeddings:"]
    for alias in aliases or ("minilm",):
        out += [f'  - model: "{alias}"',
                '    served_name: "sentence-transformers/all-MiniLM-L6-v2"',
                "    upstream:",
                f'      type: "{upstream_type}"',
                f"      max_batch_size: {max_batch_size}",
                "      max_wait_ms: 2"]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class BadCase:
    name: str
    file: str  # which of FILES is bad
    text: str
    line: int  # the line the error must name
    words: str  # a fragment the message must contain


BAD_CASES = (
    BadCase("yaml-syntax", "routing.yaml", routing("minilm").replace("max_wait_ms: 2", "max_wait_ms: 2: 5"),
            7, "YAML syntax error"),
    BadCase("unknown-adapter-type", "routing.yaml", routing("minilm").replace('type: "local"', 'type: "nosuch"'),
            5, "unknown upstream type 'nosuch'"),
    BadCase("negative-capacity", "rate_limits.yaml", RATE_LIMITS.replace("capacity: 1000000\n  refill_rate: 1000000\n"
                                                                          "anonymous:", "capacity: -5\n  refill_rate: 1"
                                                                          "\nanonymous:"),
            2, "'capacity' must be positive"),
    BadCase("duplicate-alias", "routing.yaml", routing("minilm", "minilm"), 8, "duplicate model alias 'minilm'"),
    BadCase("missing-field", "routing.yaml", "embeddings:\n  - model: \"minilm\"\n    served_name: \"x\"\n",
            2, "missing required field 'upstream'"),
    BadCase("bad-adapter-option", "routing.yaml",
            routing("minilm").replace("max_batch_size: 32", "max_batch_size: abc"), 6,
            "'max_batch_size' must be an integer, got 'abc'"),
)


def write_text(path: Path, text: str) -> None:
    """Write atomically (temp file + rename), as an operator's tooling would."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_good(config_dir: Path, *aliases: str, max_batch_size: int = 32, upstream_type: str = "local") -> str:
    """Write all three files good; return the digest the router will report for them."""
    config_dir.mkdir(parents=True, exist_ok=True)
    texts = good_texts(*aliases, upstream_type=upstream_type)
    texts["routing.yaml"] = routing(*aliases, max_batch_size=max_batch_size, upstream_type=upstream_type)
    for name in ("auth.yaml", "rate_limits.yaml", "routing.yaml"):  # routing last: it is what changes
        path = config_dir / name
        if not path.exists() or path.read_text() != texts[name]:
            write_text(path, texts[name])
    return digest_of(config_dir)


def digest_of(config_dir: Path) -> str:
    return config_digest((config_dir / name).read_bytes() for name in FILES)


_versions = itertools.count(1)


def configmap_publish(mount: Path, texts: dict[str, str]) -> None:
    """Update files the way the kubelet updates a mounted ConfigMap: write a new hidden
    directory, point a ``..data_tmp`` symlink at it and rename that over ``..data``, link each
    visible name through ``..data`` (once), then remove the old directory. No visible file is
    ever written."""
    mount.mkdir(parents=True, exist_ok=True)
    data = mount / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    new = mount / f"..2024_01_01_00_00_{next(_versions):02d}.{os.getpid()}"
    new.mkdir()
    for name, text in texts.items():
        (new / name).write_text(text)
    os.symlink(new.name, mount / "..data_tmp")
    os.replace(mount / "..data_tmp", data)
    for name in texts:
        if not (mount / name).is_symlink():  # a plain file there (first publish over one) is replaced
            os.symlink(f"..data/{name}", mount / f".{name}.link")
            os.replace(mount / f".{name}.link", mount / name)
    if old is not None:
        shutil.rmtree(mount / old)


def good_texts(*aliases: str, upstream_type: str = "local") -> dict[str, str]:
    return {"routing.yaml": routing(*aliases, upstream_type=upstream_type), "auth.yaml": AUTH,
            "rate_limits.yaml": RATE_LIMITS}

"""YAML loading that remembers where each mapping came from, so errors can name file and line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError


class LineDict(dict):
    """A mapping from a YAML file, with the 1-based line of the mapping and of each key."""

    file: str = ""
    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def fail(self, message: str, key: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line_of(key) if key else self.line)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.file = loader.name
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)):
            raise ConfigError("a mapping key must be a plain value, not a list or mapping", file=loader.name,
                              line=key_node.start_mark.line + 1)
        # Every key a config reads is a name: ``123:`` is the name "123", as the file shows it.
        key = key if isinstance(key, str) else key_node.value
        if key in out:
            # The key itself is not quoted: in rate_limits.yaml per_api_key it may be an API key.
            raise ConfigError(f"duplicate key (first at line {out.key_lines[str(key)]})", file=loader.name,
                              line=key_node.start_mark.line + 1)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + 1
    return out


class LineList(list):
    """A sequence from a YAML file, with the 1-based line of each item (scalars have no other)."""

    item_lines: list[int]

    def line_of(self, index: int, default: int = 0) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else default


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: str | Path) -> tuple[LineDict, bytes]:
    """Parse one config file; return the top-level mapping and the raw bytes (for hashing)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from exc
    try:
        loader = _Loader(raw.decode("utf-8", errors="replace"))  # checks for unprintable characters
    except yaml.YAMLError as exc:
        raise ConfigError(f"not a YAML text file: {exc}", file=str(path)) from None
    loader.name = str(path)
    try:
        data = loader.get_single_data()
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(f"YAML syntax error: {exc.problem or exc}", file=str(path), line=line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=str(path)) from exc
    finally:
        loader.dispose()
    if data is None:
        data = LineDict()
        data.file, data.line, data.key_lines = str(path), 1, {}
    if not isinstance(data, LineDict):
        raise ConfigError("top level must be a mapping", file=str(path), line=1)
    return data, raw


def expect(mapping: LineDict, key: str, kind: type | tuple[type, ...], *, required: bool = True,
           default: Any = None) -> Any:
    """Read ``mapping[key]`` checking its type; raise ConfigError naming file and line."""
    if key not in mapping or mapping[key] is None:
        if required:
            raise mapping.fail(f"missing required field {key!r}")
        return default
    value = mapping[key]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _MAX_NUMBER:
            raise mapping.fail(f"field {key!r} must be a whole number, got {_shown(value)}", key)
        return value
    if kind is float or kind == (int, float):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not (isinstance(value, int) or math.isfinite(value)) or abs(value) > _MAX_NUMBER):
            raise mapping.fail(f"field {key!r} must be a finite number, got {_shown(value)}", key)
        return value
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise mapping.fail(f"field {key!r} must be {names}, got {type(value).__name__}", key)
    return value


_MAX_NUMBER = 1e15  # past any timeout, size or rate a config means; floats stay exact below it


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

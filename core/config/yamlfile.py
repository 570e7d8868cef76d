"""YAML loading that remembers where each mapping came from, so errors can name file and line.

Bounded, since a config file is read while the gateway serves: a file over ``max_bytes`` is
refused before it is parsed; a list or mapping of more than ``max_items`` entries is refused as
it is parsed (file and line of where it starts); aliases may not expand the document past
``MAX_EXPANDED_NODES`` (a "billion laughs" bomb is refused before anything walks it); and an
error message shows at most the start of a value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError, shown


class LineDict(dict):
    """A mapping from a YAML file, with the 1-based line of the mapping and of each key."""

    file: str = ""
    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def fail(self, message: str, key: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line_of(key) if key else self.line)


DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_ITEMS = 10_000
MAX_EXPANDED_NODES = 250_000  # the document's values with every alias expanded


class _Loader(yaml.SafeLoader):
    max_items = DEFAULT_MAX_ITEMS

    def compose_sequence_node(self, anchor):
        return self._bounded(super().compose_sequence_node, anchor, yaml.SequenceEndEvent)

    def compose_mapping_node(self, anchor):
        return self._bounded(super().compose_mapping_node, anchor, yaml.MappingEndEvent)

    def _bounded(self, compose, anchor, end):
        """Count the entries as they are parsed: a huge list is refused at its limit, not after
        millions of nodes were built."""
        start = self.peek_event().start_mark
        previous = self.check_event  # an enclosing list's counter, or the parser's own
        parser_check = yaml.SafeLoader.check_event
        seen = 0

        def counting(*choices):
            nonlocal seen
            done = parser_check(self, *choices)  # never the enclosing counter: it counts only its own
            if choices == (end,) and not done:
                seen += 1
                if seen > self.max_items * (2 if end is yaml.MappingEndEvent else 1):  # a key and a value
                    kind = "mapping" if end is yaml.MappingEndEvent else "list"
                    raise ConfigError(f"this {kind} has more than {self.max_items} entries "
                                      "(ROUTER_MAX_CONFIG_ITEMS)", file=self.name, line=start.line + 1)
            return done

        self.check_event = counting  # type: ignore[method-assign]
        try:
            return compose(anchor)
        finally:
            self.check_event = previous  # type: ignore[method-assign]


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


def _expanded(node: yaml.Node, limit: int, file: str) -> None:
    """Refuse a document whose aliases expand it past ``limit`` nodes, counting without expanding."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        known = sizes.get(id(n))
        if known is not None:
            return known
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(child) for child in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        if total > limit:
            raise ConfigError(f"aliases expand this value past {limit} values", file=file,
                              line=n.start_mark.line + 1)
        sizes[id(n)] = total
        return total

    size(node)


def load_yaml(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
              max_items: int = DEFAULT_MAX_ITEMS) -> tuple[LineDict, bytes]:
    """Parse one config file; return the top-level mapping and the raw bytes (for hashing)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"the file has {size} bytes; the limit is {max_bytes} (ROUTER_MAX_CONFIG_BYTES)",
                              file=str(path))
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from exc
    if len(raw) > max_bytes:  # it grew since
        raise ConfigError(f"the file has over {max_bytes} bytes (ROUTER_MAX_CONFIG_BYTES)", file=str(path))
    try:
        loader = _Loader(raw.decode("utf-8", errors="replace"))  # checks for unprintable characters
    except yaml.YAMLError as exc:
        raise ConfigError(f"not a YAML text file: {exc}", file=str(path)) from None
    loader.name = str(path)
    loader.max_items = max_items
    try:
        node = loader.get_single_node()
        if node is not None:
            _expanded(node, MAX_EXPANDED_NODES, str(path))
        data = loader.construct_document(node) if node is not None else None
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


_shown = shown

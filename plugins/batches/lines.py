"""One uploaded JSONL file read and checked line by line, as OpenAI checks a batch input file:
each line a JSON object with a ``custom_id`` unique in the file, ``method: POST``, a ``url`` this
gateway serves in bulk and a ``body`` its codec accepts. Runs off the event loop."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import orjson

from core.config.caps import InputCaps
from core.dialects import Codec, ParseLimits
from core.errors import GatewayError, InvalidRequest, shown

BULK_URLS = ("/v1/embeddings", "/v2/embed")  # the paths a line may name (those served by a codec)
MAX_CUSTOM_ID = 512


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based, as an editor shows it
    custom_id: str
    url: str
    body: Any


@dataclass(frozen=True, slots=True)
class FileSummary:
    lines: int
    urls: tuple[str, ...]


def _refuse(number: int, message: str) -> InvalidRequest:
    return InvalidRequest(f"Line {number} of the file: {message}", param="file", code="invalid_batch_line")


def read_line(number: int, raw: bytes, codecs: Mapping[str, Codec]) -> Line:
    """One line as a ``Line``; InvalidRequest naming the line otherwise (its body is not parsed)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _refuse(number, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _refuse(number, "must be a JSON object")
    unknown = sorted(set(obj) - {"custom_id", "method", "url", "body"})
    if unknown:
        raise _refuse(number, f"unknown field(s) {', '.join(map(shown, unknown))}")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        raise _refuse(number, f"'custom_id' must be a string of 1 to {MAX_CUSTOM_ID} characters")
    if obj.get("method") != "POST":
        raise _refuse(number, "'method' must be 'POST'")
    url = obj.get("url")
    if url not in codecs:
        raise _refuse(number, f"'url' must be one of {', '.join(codecs)}, not {shown(url)}")
    body = obj.get("body")
    if not isinstance(body, dict):
        raise _refuse(number, "'body' must be a JSON object")
    return Line(number, custom_id, str(url), body)


def check_body(line: Line, codec: Codec, limits: ParseLimits, caps: InputCaps) -> None:
    """The body parsed by its path's codec as a synchronous request's would be; InvalidRequest
    naming the line and what is wrong."""
    try:
        caps.check_id_arrays(line.body)
        parsed = codec.select(line.body).parse(line.body, limits)
        parsed.request.check_caps(caps)
    except GatewayError as exc:
        raise _refuse(line.number, f"'body' is not a valid {line.url} request: {exc.message}") from None


def numbered(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of ``stream`` with their 1-based numbers."""
    for number, raw in enumerate(stream, start=1):
        if raw.strip():
            yield number, raw


def check_file(path: str, codecs: Mapping[str, Codec], limits: ParseLimits, caps: InputCaps,
               max_lines: int) -> FileSummary:
    """Every line of the file at ``path`` checked; its line count and the urls its lines name."""
    seen: set[str] = set()
    urls: set[str] = set()
    count = 0
    with open(path, "rb") as stream:
        for number, raw in numbered(stream):
            count += 1
            if count > max_lines:
                raise InvalidRequest(f"The file has more than {max_lines} lines (ROUTER_BATCH_MAX_LINES)",
                                     param="file", code="too_many_lines")
            line = read_line(number, raw, codecs)
            if line.custom_id in seen:
                raise _refuse(number, f"'custom_id' {shown(line.custom_id)} is used by an earlier line; "
                                      "each line needs its own")
            seen.add(line.custom_id)
            check_body(line, codecs[line.url], limits, caps)
            urls.add(line.url)
    if not count:
        raise InvalidRequest("The file has no lines; send one JSON request per line", param="file",
                             code="empty_file")
    return FileSummary(count, tuple(sorted(urls)))

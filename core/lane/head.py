"""The request head the lean lane takes, read strictly; anything else is aiohttp's to read."""

from __future__ import annotations

import re
from typing import NamedTuple

from multidict import CIMultiDict

from core.dialects import Codec

MAX_HEAD = 8192  # a longer head goes to aiohttp, whose limits then apply
_REQUEST_LINE = re.compile(rb"POST (/[\x21-\x3e\x40-\x7e]*) HTTP/1\.1\r\n")  # no "?": a query goes to aiohttp
_HEADER_LINES = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*\r\n)*\r\n")


class Head(NamedTuple):
    codec: Codec
    headers: CIMultiDict[str]
    start: int  # where the body starts in the buffer
    size: int  # the body's length
    keep_alive: bool


HAND_OVER = "hand over"  # a request the lane does not take


def read_head(buffer: bytearray, codecs: dict[str, Codec], limit: int, cors: bool) -> Head | str | None:
    """The head at the buffer's start; None while it is still coming; ``HAND_OVER`` for a request
    the lane does not take (see ``core.lane``): a body over ``limit`` bytes, an ``Origin`` while
    ``cors``, any shape outside the common one."""
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD)
    if end < 0:
        return HAND_OVER if len(buffer) >= MAX_HEAD else None
    line = _REQUEST_LINE.match(buffer)
    codec = codecs.get(line.group(1).decode()) if line is not None else None
    if codec is None or not _HEADER_LINES.fullmatch(buffer, line.end(), end + 4):  # type: ignore[union-attr]
        return HAND_OVER
    text = buffer[line.end():end].decode("ascii")  # type: ignore[union-attr]
    parts = [row.partition(":") for row in text.split("\r\n")] if text else []
    headers = CIMultiDict([(name, value.strip(" \t")) for name, _, value in parts])
    lengths = headers.getall("Content-Length", ())
    if (len(lengths) > 1 or "Transfer-Encoding" in headers or "Expect" in headers or "Upgrade" in headers
            or (cors and "Origin" in headers)
            or (lengths and not (lengths[0].isdigit() and len(lengths[0]) <= 15 and int(lengths[0]) <= limit))):
        return HAND_OVER
    keep_alive = "close" not in headers.get("Connection", "").lower()
    return Head(codec, headers, end + 4, int(lengths[0]) if lengths else 0, keep_alive)


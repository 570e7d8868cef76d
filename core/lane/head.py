"""The request head the lean lane takes, read strictly; anything else is aiohttp's to read."""

from __future__ import annotations

import re
from typing import NamedTuple

from multidict import CIMultiDict

from core.dialects import Codec

MAX_HEAD = 8192  # a longer head goes to aiohttp, whose limits then apply
_REQUEST_LINE = re.compile(rb"POST (/[\x21-\x3e\x40-\x7e]*) HTTP/1\.1\r\n")  # no "?": a query goes to aiohttp
_HEADER_LINES = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e]*\r\n)*\r\n")
_MAX_LINES = 128  # aiohttp's limit of header lines
#: headers whose request aiohttp reads: framing, decoding, upgrades, interim answers, hop-by-hop oddities
_NOT_TAKEN = frozenset({"transfer-encoding", "content-encoding", "expect", "upgrade", "proxy-connection",
                        "sec-websocket-key1"})


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
    rows = text.split("\r\n") if text else []
    if len(rows) > _MAX_LINES:
        return HAND_OVER
    fields = []
    unique: dict[str, str] = {}  # lower-case name: value
    for row in rows:  # one pass: the fields, and each name once
        name, _, value = row.partition(":")
        value = value.strip(" \t")
        fields.append((name, value))
        unique[name.lower()] = value
    # one Host, no header twice (aiohttp refuses some repeats), none the lane leaves to aiohttp
    if len(unique) != len(fields) or "host" not in unique or not _NOT_TAKEN.isdisjoint(unique):
        return HAND_OVER
    length = unique.get("content-length")
    if (cors and "origin" in unique) or (length is not None and not (
            length.isdigit() and len(length) <= 15 and int(length) <= limit)):
        return HAND_OVER
    connection = unique.get("connection")
    keep_alive = connection is None or "close" not in [t.strip().lower() for t in connection.split(",")]
    return Head(codec, CIMultiDict(fields), end + 4, int(length) if length is not None else 0, keep_alive)


"""The answer the edge writes for a codec's JSON body: head and body in one write (``JsonAnswer``,
and ``head`` for the lean lane, ``core.lane``)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from http import HTTPStatus

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # aiohttp refuses these in a header too (CR and LF included)


class JsonAnswer(web.StreamResponse):
    """A codec's answer to a POST, written whole in one write: status line, headers and body.

    ``web.Response`` takes the general path for any body: it parses its content type, fills a
    header multidict that aiohttp's writer serialises, and checks for chunking and compression
    as it ends; that costs about 9 µs a request. This answer writes the same head (``Date``,
    ``Server``, ``Connection`` as aiohttp sets them, every header the edge added) and its body in
    one transport write, then waits, as aiohttp does, while the client reads too slowly. The
    app's ``on_response_prepare`` signals are not sent: the gateway registers none.
    """

    def __init__(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        super().__init__(headers=headers)
        self._json = body

    async def prepare(self, request: web.BaseRequest) -> None:
        if self._eof_sent:
            return
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        keep_alive = request.keep_alive if self._keep_alive is None else self._keep_alive
        self._keep_alive = keep_alive
        data = head(request.version[1], self._status, keep_alive, self._headers, len(self._json)) + self._json
        self._eof_sent = True
        transport.write(data)
        await request.writer.drain()  # a client that does not read holds its answers, not the process's memory

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def head(minor: int, status: int, keep_alive: bool, headers: Mapping[str, str], length: int) -> bytes:
    """An HTTP/1.``minor`` answer's head for a JSON body of ``length`` bytes: the status line,
    ``Content-Type``, ``Content-Length``, ``Date``, ``Server`` and ``Connection`` as aiohttp
    writes them, then ``headers``; ValueError for a header that holds a line break or a control
    character (aiohttp refuses those too)."""
    if keep_alive:
        connection = "Connection: keep-alive\r\n" if minor == 0 else ""
    else:
        connection = "Connection: close\r\n" if minor == 1 else ""
    if headers:
        # printable text holds no control character: only text that is not (a tab, a non-ASCII
        # space) is searched
        text = "".join(headers) + "".join(headers.values())
        if not text.isprintable() and _UNSAFE.search(text):
            raise ValueError("a response header holds a line break or a control character")
        lines = "\r\n".join(map(": ".join, headers.items())) + "\r\n"
    else:
        lines = ""
    return (f"HTTP/1.{minor} {status} {_REASONS.get(status, '')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nDate: {_http_date()}\r\nServer: {SERVER_SOFTWARE}\r\n{connection}{lines}\r\n"
            ).encode()


class _Date:
    """The ``Date`` header's value (RFC 9110's IMF-fixdate, English names whatever the locale),
    formatted once a second."""

    _DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    _MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

    def __init__(self) -> None:
        self._second, self._text = -1, ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            t = time.gmtime(now)
            self._second = now
            self._text = (f"{self._DAYS[t.tm_wday]}, {t.tm_mday:02d} {self._MONTHS[t.tm_mon - 1]} {t.tm_year} "
                          f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
        return self._text


_http_date = _Date()

"""One upstream HTTP/1.1 connection: send a request, read its answer whole and strictly.

``Connection.exchange`` writes a request and reads the answer: a status line and headers
(interim 1xx answers skipped), then a body framed by ``Content-Length``, a lone ``chunked``
transfer coding, or the close (none after 204/304). A gzip or deflate body is undone and
checked to its end. Three errors come out, which ``HttpUpstream`` maps to failover and client
statuses:

* ``ConnectionFailed``: refused, reset, or closed before the answer ended (worth another URL);
* ``BadResponse``: the peer did not speak HTTP/1.1 (a status line, headers, a framed body);
* ``ResponseTooLarge``: the answer is over the caller's byte cap (checked while reading).

Bytes that arrive while no call reads, or past the cap, close the connection: a misbehaving
peer cannot fill memory. ``Stale`` (a ``ConnectionFailed``) says a reused connection closed
right after the send with not a byte of answer: the peer was closing it as idle, and the call
may be sent again on a new connection.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from dataclasses import dataclass

from multidict import CIMultiDict

_MAX_HEAD = 64 * 1024  # status line and headers together
_STALE_WINDOW_S = 0.2  # a close this soon after the send, with no answer byte, is an idle-timeout race
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class ConnectionFailed(Exception):
    """No complete answer: the connection was refused, reset or closed early."""


class BadResponse(Exception):
    """The answer is not well-formed HTTP/1.1."""


class ResponseTooLarge(Exception):
    """The answer is larger than the caller allows."""


@dataclass(slots=True)
class Response:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class Stale(ConnectionFailed):
    """A reused connection closed before any answer byte: safe to send the call again."""


class Protocol(asyncio.Protocol):
    """Bytes in, one waiter woken per arrival; the reading logic lives in ``Connection``.

    Bytes that arrive while no call is reading (an idle pooled connection), or more than the
    call's cap, close the connection at once: a misbehaving peer cannot fill memory.
    """

    __slots__ = ("transport", "buffer", "closed", "error", "busy", "limit", "overflow", "_waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.error: BaseException | None = None
        self.busy = False  # a call is sending or reading on this connection
        self.limit = 0  # most bytes the buffer may hold while a call reads
        self.overflow = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy or len(self.buffer) > self.limit:
            self.overflow = self.busy
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def more(self) -> asyncio.Future[None]:
        """What to await for more bytes (or the close); ConnectionFailed now if the peer has closed."""
        if self.overflow:
            raise ResponseTooLarge
        if self.closed:
            raise ConnectionFailed(f"connection closed{f': {self.error}' if self.error else ''}")
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter


class Connection:
    __slots__ = ("protocol", "idle_since", "answered")

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.idle_since = 0.0
        self.answered = 0  # calls answered on this connection

    @property
    def usable(self) -> bool:
        p = self.protocol
        return not p.closed and not p.buffer and p.transport is not None and not p.transport.is_closing()

    def close(self) -> None:
        if self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol.closed = True

    async def exchange(self, request: bytes, max_bytes: int) -> tuple[Response, bool]:
        """Send ``request``; return the answer and whether the connection may be reused (the common
        answer, head and body arrived together, is read with no coroutine of its own)."""
        p = self.protocol
        p.busy, p.limit = True, max_bytes + _MAX_HEAD
        p.transport.write(request)  # type: ignore[union-attr]
        sent = time.monotonic()
        while True:
            buffer = p.buffer
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                if len(buffer) > _MAX_HEAD:
                    raise BadResponse("response headers are too large")
                try:
                    await p.more()
                except ConnectionFailed as exc:
                    # Closed with not a byte of answer, on a reused connection, right after the send:
                    # the peer was closing it as idle. A later close may follow work done on the call.
                    if self.answered and not buffer and time.monotonic() - sent < _STALE_WINDOW_S:
                        raise Stale(str(exc)) from None
                    raise
            status, headers = self._head(end)
            if not 100 <= status < 200:
                break  # 1xx interim answers (100 Continue, 103 Early Hints) are skipped
            sent = 0.0  # the peer has the call: never send it again
        size = 0 if status in (204, 304) else _length(headers)
        if size is not None and size <= len(p.buffer) and size <= max_bytes:  # all here: taken now
            body, reusable = bytes(p.buffer[:size]), True
            del p.buffer[:size]
        else:
            body, reusable = await self._body(headers, size, max_bytes)
        self.answered += 1
        p.busy = False
        if "close" in headers.get("Connection", "").lower():
            reusable = False
        return Response(status, headers, decoded(body, headers.get("Content-Encoding", ""), max_bytes)), reusable

    def _head(self, end: int) -> tuple[int, CIMultiDict[str]]:
        """The status and headers ending at ``end`` in the buffer (taken out of it)."""
        p = self.protocol
        lines = p.buffer[:end].decode("latin-1").split("\r\n")
        del p.buffer[:end + 4]
        status_line = lines[0]
        version, _, rest = status_line.partition(" ")
        code, _, _ = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not _is_digits(code) or len(code) != 3:
            raise BadResponse(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        fields = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadResponse(f"malformed header line: {line[:80]!r}")
            fields.append((name, value.strip()))
        headers: CIMultiDict[str] = CIMultiDict(fields)  # built whole: ``add`` per line costs twice as much
        if version == "HTTP/1.0" and "keep-alive" not in headers.get("Connection", "").lower():
            headers["Connection"] = "close"
        return int(code), headers

    async def _body(self, headers: CIMultiDict[str], size: int | None, max_bytes: int) -> tuple[bytes, bool]:
        """The body of ``size`` bytes (None: chunked, else until the close); whether to reuse."""
        if size is not None:
            return await self._exactly(size, max_bytes), True
        if "Transfer-Encoding" in headers:
            return await self._chunked(max_bytes), True
        return await self._until_close(max_bytes), False

    async def _exactly(self, size: int, max_bytes: int) -> bytes:
        if size > max_bytes:
            raise ResponseTooLarge
        p = self.protocol
        while len(p.buffer) < size:
            await p.more()
        body = bytes(p.buffer[:size])
        del p.buffer[:size]
        return body

    async def _line(self) -> bytes:
        p = self.protocol
        while (end := p.buffer.find(b"\r\n")) < 0:
            if len(p.buffer) > _MAX_HEAD:
                raise BadResponse("a chunk header is too long")
            await p.more()
        line = bytes(p.buffer[:end])
        del p.buffer[:end + 2]
        return line

    async def _chunked(self, max_bytes: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = (await self._line()).split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size_text):
                raise BadResponse(f"bad chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                while await self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            total += size
            if total > max_bytes:
                raise ResponseTooLarge
            parts.append(await self._exactly(size, max_bytes))
            if await self._line():
                raise BadResponse("a chunk is longer than its size says")

    async def _until_close(self, max_bytes: int) -> bytes:
        p = self.protocol
        while True:
            if len(p.buffer) > max_bytes:
                raise ResponseTooLarge
            if p.closed:
                if p.error is not None:  # reset, not closed: the body may be cut short
                    raise ConnectionFailed(f"connection reset mid-answer: {p.error}")
                body = bytes(p.buffer)
                p.buffer.clear()
                return body
            try:
                await p.more()
            except ConnectionFailed:  # the close that ends this body
                pass


def _length(headers: CIMultiDict[str]) -> int | None:
    """The body's Content-Length; None when it is chunked or runs until the close. BadResponse
    for a transfer coding other than a lone ``chunked``, or a missing, conflicting or malformed
    length beside it."""
    coding = headers.get("Transfer-Encoding")
    if coding is not None and (coding.strip().lower() != "chunked" or len(headers.getall("Transfer-Encoding")) > 1):
        raise BadResponse(f"unsupported Transfer-Encoding {coding[:40]!r}")
    lengths = set(headers.getall("Content-Length", ()))
    if coding is not None or not lengths:
        return None
    length = lengths.pop().strip()
    if lengths or not _is_digits(length):
        raise BadResponse(f"bad Content-Length {length[:40]!r}")
    return int(length)


def decoded(body: bytes, encoding: str, max_bytes: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BadResponse(f"unsupported Content-Encoding {encoding!r}")
    gzip = "gzip" in encoding
    wbits = 31 if gzip else (15 if body[:1] == b"\x78" else -15)  # deflate: zlib-wrapped or raw
    out = bytearray()
    rest = body
    while True:  # gzip allows several members one after another
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise BadResponse(f"corrupt {encoding} body: {exc}") from None
        if len(out) > max_bytes:
            raise ResponseTooLarge
        if not inflater.eof:
            raise BadResponse(f"truncated {encoding} body")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)
        if not gzip:
            raise BadResponse(f"data after the end of the {encoding} body")


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()

"""A lean HTTP/1.1 client for upstream calls: keep-alive connection pools on asyncio protocols.

An upstream call is one POST of a JSON body and one answer read whole, so the client does
only that: no cookies, redirects, proxies or streaming. It answers with a ``Response`` or
raises one of three errors, which ``HttpUpstream`` maps to failover and client statuses:

* ``ConnectionFailed``: refused, reset, or closed before the answer ended (worth another URL);
* ``BadResponse``: the peer did not speak HTTP/1.1 (a status line, headers, a framed body);
* ``ResponseTooLarge``: the answer is over the caller's byte cap (checked while reading).

Each ``ConnectionPool`` keeps up to ``limit`` connections to one URL. Idle connections are
reused newest first and dropped after ``keepalive_s``; bytes arriving on an idle connection
close it. A call whose reused connection closes right after the send with no answer byte (the
server timed out an idle connection just as the call went out) is sent once more on a new
connection; a later close is a failure, as the upstream may have worked on the call. A call
cancelled midway (its deadline passed) closes its connection: a half-read answer never
reaches the next call.

Bodies may be ``Content-Length`` framed, chunked, or end at close. Compression is not asked
for (upstreams sit on a local network); a gzip or deflate body is still undone, under the cap.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from multidict import CIMultiDict

_MAX_HEAD = 64 * 1024  # status line and headers together
_STALE_WINDOW_S = 0.2  # a close this soon after the send, with no answer byte, is an idle-timeout race
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_USER_AGENT = "quadrate-maas"


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


class _Stale(ConnectionFailed):
    """A reused connection closed before any answer byte: safe to send the call again."""


class _Protocol(asyncio.Protocol):
    """Bytes in, one waiter woken per arrival; the reading logic lives in ``_Connection``.

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
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes; ConnectionFailed if the peer has closed."""
        if self.overflow:
            raise ResponseTooLarge
        if self.closed:
            raise ConnectionFailed(f"connection closed{f': {self.error}' if self.error else ''}")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class _Connection:
    __slots__ = ("protocol", "idle_since", "answered")

    def __init__(self, protocol: _Protocol) -> None:
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
        """Send ``request``; return the answer and whether the connection may be reused."""
        p = self.protocol
        p.busy, p.limit = True, max_bytes + _MAX_HEAD
        p.transport.write(request)  # type: ignore[union-attr]
        sent = time.monotonic()
        while True:
            try:
                status, headers = await self._head()
            except ConnectionFailed as exc:
                # Closed with not a byte of answer, on a reused connection, right after the send:
                # the peer was closing it as idle. A later close may follow work done on the call.
                if self.answered and not p.buffer and time.monotonic() - sent < _STALE_WINDOW_S:
                    raise _Stale(str(exc)) from None
                raise
            if not 100 <= status < 200:
                break  # 1xx interim answers (100 Continue, 103 Early Hints) are skipped
            sent = 0.0  # the peer has the call: never send it again
        body, reusable = (b"", True) if status in (204, 304) else await self._body(headers, max_bytes)
        self.answered += 1
        p.busy = False
        if "close" in headers.get("Connection", "").lower():
            reusable = False
        return Response(status, headers, _decoded(body, headers.get("Content-Encoding", ""), max_bytes)), reusable

    async def _head(self) -> tuple[int, CIMultiDict[str]]:
        p = self.protocol
        while (end := p.buffer.find(b"\r\n\r\n")) < 0:
            if len(p.buffer) > _MAX_HEAD:
                raise BadResponse("response headers are too large")
            await p.more()
        head = bytes(p.buffer[:end]).decode("latin-1")
        del p.buffer[:end + 4]
        status_line, *lines = head.split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, _ = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not _is_digits(code) or len(code) != 3:
            raise BadResponse(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadResponse(f"malformed header line: {line[:80]!r}")
            headers.add(name, value.strip())
        if version == "HTTP/1.0" and "keep-alive" not in headers.get("Connection", "").lower():
            headers["Connection"] = "close"
        return int(code), headers

    async def _body(self, headers: CIMultiDict[str], max_bytes: int) -> tuple[bytes, bool]:
        coding = headers.get("Transfer-Encoding")
        if coding is not None:
            if coding.strip().lower() != "chunked" or len(headers.getall("Transfer-Encoding")) > 1:
                raise BadResponse(f"unsupported Transfer-Encoding {coding[:40]!r}")
            return await self._chunked(max_bytes), True
        lengths = set(headers.getall("Content-Length", ()))
        if lengths:
            length = lengths.pop().strip()
            if lengths or not _is_digits(length):
                raise BadResponse(f"bad Content-Length {length[:40]!r}")
            return await self._exactly(int(length), max_bytes), True
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


def _decoded(body: bytes, encoding: str, max_bytes: int) -> bytes:
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


class ConnectionPool:
    """Keep-alive connections to one URL (``http`` or ``https``, with an optional base path)."""

    def __init__(self, url: str, *, limit: int = 64, keepalive_s: float = 30.0,
                 headers: Mapping[str, str] | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            scheme = parts.scheme or "no scheme"
            raise ValueError(f"an upstream URL must be http:// or https:// with a host, not {scheme}://...")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.base_path = parts.path.rstrip("/")
        self.keepalive_s = keepalive_s
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        fixed = {"Host": host if default_port else f"{host}:{self.port}", "User-Agent": _USER_AGENT,
                 "Accept": "application/json"}
        if parts.username is not None:
            user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            fixed["Authorization"] = "Basic " + base64.b64encode(user_pass.encode()).decode()
        fixed.update(headers or {})
        _check_header_values(fixed)
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._closed = False

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None, *,
                   max_bytes: int) -> Response:
        """POST ``body`` to ``<base path><path>``; the answer, read whole."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""
        if extra and (extra.count("\n") != len(headers) or extra.count("\r") != len(headers)):  # type: ignore[arg-type]
            raise ValueError("a request header holds a line break")
        request = (f"POST {self.base_path}{path} HTTP/1.1\r\n{self._fixed}{extra}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        async with self._slots:
            connection = await self._connection()
            try:
                try:
                    response, reusable = await connection.exchange(request, max_bytes)
                except _Stale:  # the peer timed out this idle connection as the call went out
                    connection.close()
                    connection = await self._open()
                    response, reusable = await connection.exchange(request, max_bytes)
            except BaseException:
                connection.close()
                raise
            if reusable and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()
            return response

    async def _connection(self) -> _Connection:
        oldest = time.monotonic() - self.keepalive_s
        while self._idle and self._idle[0].idle_since <= oldest:  # the longest idle are at the front
            self._idle.pop(0).close()
        while self._idle:
            connection = self._idle.pop()  # newest first: the likeliest to be alive
            if connection.usable and connection.idle_since > oldest:
                return connection
            connection.close()
        return await self._open()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(
                _Protocol, self.host, self.port, ssl=self._ssl,
                server_hostname=self.host if self.tls else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        return _Connection(protocol)

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


def _check_header_values(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        text = f"{name}{value}"
        if "\r" in text or "\n" in text:
            raise ValueError(f"header {name!r} holds a line break")
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} holds a character HTTP/1.1 cannot carry") from None


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()

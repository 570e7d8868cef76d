"""A lean HTTP/1.1 client for upstream calls: keep-alive connection pools on asyncio protocols.

An upstream call is one POST of a JSON body and one answer read whole, so the client does
only that: no cookies, redirects, proxies or streaming. Reading an answer, and the errors a
call can end in, live in ``adapters.http.connection``.

Each ``ConnectionPool`` keeps up to ``limit`` connections to one URL. Idle connections are
reused newest first and dropped after ``keepalive_s``. A call whose reused connection turns
out stale (closed by the peer as idle just as the call went out) is sent once more on a new
connection; a later close is a failure, as the upstream may have worked on the call. A call
cancelled midway (its deadline passed) closes its connection: a half-read answer never
reaches the next call. Compression is not asked for (upstreams sit on a local network).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from adapters.http.connection import Connection, ConnectionFailed, Protocol, Response, Stale
from core.slots import Slots

_USER_AGENT = "quadrate-maas"


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
        self._idle: list[Connection] = []
        self._slots = Slots(limit)
        self._closed = False

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None, *,
                   max_bytes: int) -> Response:
        """POST ``body`` to ``<base path><path>``; the answer, read whole."""
        extra = ""
        if headers:
            for k, v in headers.items():  # (a call's own headers: one or two; a loop costs less than a generator)
                extra += f"{k}: {v}\r\n"
            if extra.count("\n") != len(headers) or extra.count("\r") != len(headers):
                raise ValueError("a request header holds a line break")
        request = (f"POST {self.base_path}{path} HTTP/1.1\r\n{self._fixed}{extra}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        slots = self._slots
        if not slots.take_now():
            await slots.take()
        try:
            connection = await self._connection()
            try:
                try:
                    response, reusable = await connection.exchange(request, max_bytes)
                except Stale:  # the peer timed out this idle connection as the call went out
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
        finally:
            slots.give()

    async def _connection(self) -> Connection:
        oldest = time.monotonic() - self.keepalive_s
        while self._idle and self._idle[0].idle_since <= oldest:  # the longest idle are at the front
            self._idle.pop(0).close()
        while self._idle:
            connection = self._idle.pop()  # newest first: the likeliest to be alive
            if connection.usable and connection.idle_since > oldest:
                return connection
            connection.close()
        return await self._open()

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(
                Protocol, self.host, self.port, ssl=self._ssl,
                server_hostname=self.host if self.tls else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        return Connection(protocol)

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

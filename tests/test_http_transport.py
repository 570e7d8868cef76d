"""The upstream HTTP/1.1 client: framing, keep-alive, stale connections, caps and TLS, against
real servers on loopback (aiohttp, and raw sockets where an answer must be malformed on purpose)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
import zlib
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from adapters.http.connection import BadResponse, ConnectionFailed, ResponseTooLarge
from adapters.http.transport import ConnectionPool
from tests.support.nginx import make_test_ca
from tests.support.processes import free_port

MB = 1024 * 1024
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server that runs ``script`` on each connection and counts the connections."""

    total_requests = 0  # requests read by any RawServer (read_request counts them)

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.ended = 0  # connections the client closed or dropped
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.ended += 1
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request: its head and its Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    RawServer.total_requests += 1
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


def answering(*answers: bytes, then_close: bool = False) -> Script:
    """Answer each request on a connection with the next of ``answers`` (the last one repeats)."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = 0
        while True:
            await read_request(reader)
            writer.write(answers[min(i, len(answers) - 1)])
            await writer.drain()
            i += 1
            if then_close:
                return
    return script


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def test_one_connection_serves_call_after_call():
    async with RawServer(answering(ok(b'{"ok": 1}'))) as server:
        pool = ConnectionPool(server.url)
        for _ in range(20):
            answer = await pool.post("/v1/embeddings", b"{}", max_bytes=MB)
            assert (answer.status, answer.body) == (200, b'{"ok": 1}')
        await pool.close()
    assert server.connections == 1


async def test_chunked_answer_with_extensions_and_trailers():
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;name=value\r\n{\"a\"\r\n5\r\n: 12}\r\n0\r\nX-Trailer: yes\r\n\r\n")
    async with RawServer(answering(chunked)) as server:
        pool = ConnectionPool(server.url)
        assert (await pool.post("/", b"{}", max_bytes=MB)).body == b'{"a": 12}'
        assert (await pool.post("/", b"{}", max_bytes=MB)).body == b'{"a": 12}'
        await pool.close()
    assert server.connections == 1, "a chunked answer leaves the connection reusable"


async def test_answer_ended_by_close_and_interim_answers():
    until_close = b"HTTP/1.0 200 OK\r\n\r\n{\"until\": \"close\"}"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}")
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    async with RawServer(answering(until_close, then_close=True)) as closing, RawServer(answering(interim)) as early, \
            RawServer(answering(no_content)) as empty:
        pool = ConnectionPool(closing.url)
        for _ in range(2):
            assert (await pool.post("/", b"{}", max_bytes=MB)).body == b'{"until": "close"}'
        assert closing.connections == 2, "an answer ended by close is never followed on its connection"
        second = ConnectionPool(early.url)
        answer = await second.post("/", b"{}", max_bytes=MB)
        assert (answer.status, answer.body) == (200, b"{}")
        third = ConnectionPool(empty.url)
        for _ in range(2):  # no body follows a 204, even without Content-Length
            answer = await asyncio.wait_for(third.post("/", b"{}", max_bytes=MB), 5)
            assert (answer.status, answer.body) == (204, b"")
        assert empty.connections == 1
        await pool.close()
        await second.close()
        await third.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error():
    # Answers once, then closes the idle connection without saying so (a keep-alive timeout).
    async with RawServer(answering(ok(b"{}"), then_close=True)) as server:
        pool = ConnectionPool(server.url)
        for _ in range(3):
            await pool.post("/", b"{}", max_bytes=MB)
            await asyncio.sleep(0.05)  # the close lands while the connection is idle
        await pool.close()
    assert server.connections == 3


async def test_a_reused_connection_closed_as_the_call_goes_out_is_sent_again():
    async def answer_then_drop_next(reader, writer):
        await read_request(reader)
        writer.write(ok(b'{"n": 1}'))
        await writer.drain()
        await read_request(reader)  # the next call arrives, and the connection dies unanswered

    async with RawServer(answer_then_drop_next) as server:
        pool = ConnectionPool(server.url)
        assert (await pool.post("/", b"{}", max_bytes=MB)).body == b'{"n": 1}'
        assert (await pool.post("/", b"{}", max_bytes=MB)).body == b'{"n": 1}'
        await pool.close()
    assert server.connections == 2


async def test_closed_mid_answer_or_refused_is_a_connection_failure():
    async def half(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cut")
        await writer.drain()

    async with RawServer(half) as server:
        pool = ConnectionPool(server.url)
        with pytest.raises(ConnectionFailed):
            await pool.post("/", b"{}", max_bytes=MB)
    with pytest.raises(ConnectionFailed):
        await ConnectionPool(f"http://127.0.0.1:{free_port()}").post("/", b"{}", max_bytes=MB)


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
    "HTTP/1.1 \u00b200 OK\r\nContent-Length: 0\r\n\r\n".encode("latin-1"),
    "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\n{}".encode("latin-1"),
    b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ok(gzip.compress(b'{"data": [1, 2, 3]}')[:-12], "Content-Encoding: gzip"),
    ok(zlib.compress(b"{}") + b"junk", "Content-Encoding: deflate"),
])
async def test_malformed_answers_are_bad_responses(answer):
    async with RawServer(answering(answer)) as server:
        with pytest.raises(BadResponse):
            await ConnectionPool(server.url).post("/", b"{}", max_bytes=MB)


async def test_compressed_answers_are_undone():
    body = b'{"data": [1, 2, 3]}'
    members = gzip.compress(body[:8]) + gzip.compress(body[8:])
    async with RawServer(answering(ok(gzip.compress(body), "Content-Encoding: gzip"))) as gz, \
            RawServer(answering(ok(zlib.compress(body), "Content-Encoding: deflate"))) as deflate, \
            RawServer(answering(ok(members, "Content-Encoding: gzip"))) as two:
        assert (await ConnectionPool(gz.url).post("/", b"{}", max_bytes=MB)).body == body
        assert (await ConnectionPool(deflate.url).post("/", b"{}", max_bytes=MB)).body == body
        assert (await ConnectionPool(two.url).post("/", b"{}", max_bytes=MB)).body == body


@pytest.mark.parametrize("answer", [
    ok(b"x" * 2000),
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"400\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 4000,
    ok(gzip.compress(b"0" * 100_000), "Content-Encoding: gzip"),
])
async def test_an_answer_over_the_cap_is_refused_while_read(answer):
    async with RawServer(answering(answer)) as server:
        with pytest.raises(ResponseTooLarge):
            await ConnectionPool(server.url).post("/", b"{}", max_bytes=1024)


async def test_a_call_cut_by_its_deadline_never_leaks_its_answer_into_the_next():
    async def slow_then_fast(reader, writer):
        head, _ = await read_request(reader)
        if b"X-Slow: 1" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{\"sl")
            await writer.drain()
            await asyncio.sleep(0.5)
            writer.write(b'ow":1}')
        else:
            writer.write(ok(b'{"fast":1}'))
        await writer.drain()
        await asyncio.sleep(1)

    async with RawServer(slow_then_fast) as server:
        pool = ConnectionPool(server.url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await pool.post("/", b"{}", {"X-Slow": "1"}, max_bytes=MB)
        assert (await pool.post("/", b"{}", max_bytes=MB)).body == b'{"fast":1}'
        await pool.close()
    assert server.connections == 2


async def test_the_pool_never_holds_more_connections_than_its_limit():
    active = peak = 0

    async def slow(reader, writer):
        nonlocal active, peak
        while True:
            await read_request(reader)
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.05)
            active -= 1
            writer.write(ok(b"{}"))
            await writer.drain()

    async with RawServer(slow) as server:
        pool = ConnectionPool(server.url, limit=2)
        answers = await asyncio.gather(*(pool.post("/", b"{}", max_bytes=MB) for _ in range(8)))
        await pool.close()
    assert [a.status for a in answers] == [200] * 8
    assert peak == 2 and server.connections == 2


async def test_headers_base_path_and_credentials_in_the_url(aiohttp_server):
    seen: list[web.Request] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"body": (await request.read()).decode()}, headers={"Retry-After": "4"})

    app = web.Application()
    app.router.add_post("/base/v1/embeddings", echo)
    server = await aiohttp_server(app)
    pool = ConnectionPool(f"http://us%40er:p%3Ass@127.0.0.1:{server.port}/base/", headers={"X-Api": "k"})
    answer = await pool.post("/v1/embeddings", b'{"q": 1}', {"X-Request-ID": "abc"}, max_bytes=MB)
    await pool.close()
    assert answer.status == 200 and answer.headers["retry-after"] == "4"
    request = seen[0]
    assert request.headers["X-Api"] == "k" and request.headers["X-Request-ID"] == "abc"
    assert request.headers["Host"] == f"127.0.0.1:{server.port}"
    auth = request.headers["Authorization"]
    assert auth.startswith("Basic ") and __import__("base64").b64decode(auth[6:]) == b"us@er:p:ss"
    with pytest.raises(ValueError):
        await ConnectionPool(str(server.make_url(""))).post("/", b"{}", {"X-Bad": "a\r\nInjected: 1"}, max_bytes=MB)
    with pytest.raises(ValueError):
        ConnectionPool("ftp://127.0.0.1/")
    with pytest.raises(ValueError):  # HTTP/1.1 headers carry latin-1 only
        ConnectionPool(str(server.make_url("")), headers={"Authorization": "Bearer k\u20acy"})


async def test_tls_is_verified(tmp_path, monkeypatch):
    ca = make_test_ca(tmp_path / "ca")
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(ca.server_cert, ca.server_key)
    async with RawServer(answering(ok(b'{"tls": true}'))) as plain:
        plain.server.close()
        tls_server = await asyncio.start_server(
            lambda r, w: plain.script(r, w), "127.0.0.1", 0, ssl=server_side)
        port = tls_server.sockets[0].getsockname()[1]
        try:
            trusted = ConnectionPool(f"https://localhost:{port}", ssl_context=ca.ssl_context())
            for _ in range(3):
                assert (await trusted.post("/", b"{}", max_bytes=MB)).body == b'{"tls": true}'
            await trusted.close()
            with pytest.raises(ConnectionFailed):  # the system trust store does not know the test CA
                await ConnectionPool(f"https://localhost:{port}").post("/", b"{}", max_bytes=MB)
            monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_cert))  # how an operator adds a private CA
            private = ConnectionPool(f"https://localhost:{port}")
            assert (await private.post("/", b"{}", max_bytes=MB)).body == b'{"tls": true}'
            await private.close()
        finally:
            tls_server.close()


async def test_a_reset_inside_an_answer_ended_by_close_is_a_failure_not_a_short_body():
    async def reset(reader, writer):
        await read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\n\r\n{"partial')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # linger 0: the peer sees a reset

    async with RawServer(reset) as server:
        with pytest.raises(ConnectionFailed):
            await ConnectionPool(server.url).post("/", b"{}", max_bytes=MB)


async def test_bytes_sent_to_an_idle_connection_close_it():
    async def answer_then_flood(reader, writer):
        await read_request(reader)
        writer.write(ok(b"{}"))
        for _ in range(200):  # then bytes nobody asked for, while the connection sits in the pool
            writer.write(b"x" * 65536)
            await writer.drain()

    async with RawServer(answer_then_flood) as flood:
        pool = ConnectionPool(flood.url)
        assert (await pool.post("/", b"{}", max_bytes=MB)).body == b"{}"
        await asyncio.sleep(0.2)
        assert flood.ended == 1, "the pool dropped the connection instead of buffering the flood"
        await pool.close()


async def test_a_close_long_after_the_send_is_not_resent():
    async def answer_then_die_slowly(reader, writer):
        await read_request(reader)
        writer.write(ok(b"{}"))
        await writer.drain()
        await read_request(reader)
        await asyncio.sleep(1.0)  # works on the call for a while, then dies without answering

    async with RawServer(answer_then_die_slowly) as server:
        pool = ConnectionPool(server.url)
        await pool.post("/", b"{}", max_bytes=MB)
        before = RawServer.total_requests
        with pytest.raises(ConnectionFailed):
            await pool.post("/", b"{}", max_bytes=MB)
        await asyncio.sleep(0.05)
        await pool.close()
    assert RawServer.total_requests == before + 1, "a call the upstream may have acted on is not sent twice"
    assert server.connections == 1


async def test_idle_connections_past_keepalive_are_closed_even_when_newer_ones_serve():
    async def slow_answers(reader, writer):
        while True:
            await read_request(reader)
            await asyncio.sleep(0.05)
            writer.write(ok(b"{}"))
            await writer.drain()

    async with RawServer(slow_answers) as server:
        pool = ConnectionPool(server.url, keepalive_s=0.3)
        await asyncio.gather(pool.post("/", b"{}", max_bytes=MB), pool.post("/", b"{}", max_bytes=MB))
        assert server.connections == 2
        for _ in range(8):  # one connection keeps serving; the other only ages in the pool
            await pool.post("/", b"{}", max_bytes=MB)
        await asyncio.sleep(0.05)
        assert server.connections == 2 and server.ended == 1
        await pool.close()

"""The lean lane (``core.lane``) answers what aiohttp's web layer answers, takes exactly the
common request, and hands every other one, with the rest of its connection, to aiohttp.

Each test talks raw HTTP/1.x over a socket to the in-process router on the echo adapters: the
same app behind aiohttp alone and behind the lane, side by side."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import core.lane
import core.lane.connection
from core.app import create_app
from core.http import GATEWAY
from core.serving import DRAIN, Drain
from tests.support.inprocess import echo_plugin_manager, write_configs
from tests.support.lane_server import LaneTestServer

EMB = b'{"model": "echo-emb", "input": ["one", "three"]}'
RERANK = b'{"model": "echo-rerank", "query": "q", "documents": ["a", "bbb", "cc"]}'


def _post(path: str, body: bytes, *, version: str = "1.1", extra: str = "", rid: str = "rid-7") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: router\r\nContent-Type: application/json\r\n"
            f"X-Request-ID: {rid}\r\n{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


#: requests the lane takes, and requests it hands over; each on a connection of its own
TAKEN = {
    "embeddings": _post("/v1/embeddings", EMB),
    "rerank": _post("/v1/rerank", RERANK),
    "infinity's unprefixed path": _post("/embeddings", EMB),
    "Connection: close": _post("/v1/embeddings", EMB, extra="Connection: close\r\n"),
    "malformed JSON (400)": _post("/v1/embeddings", b'{"model": '),
    "an unknown model (404)": _post("/v1/embeddings", b'{"model": "nope", "input": "x"}'),
    "a field of the wrong type (400)": _post("/v1/embeddings", b'{"model": "echo-emb", "input": 7}'),
    "an empty body": _post("/v1/embeddings", b""),
    "a request id to replace (made up)": _post("/v1/embeddings", EMB, rid="bad id!"),
    "header whitespace": _post("/v1/embeddings", EMB, extra="X-Priority:\t  low \t\r\n"),
    "Connection: keep-alive, close": _post("/v1/embeddings", EMB, extra="Connection: keep-alive, close\r\n"),
    "Connection: closed (not close)": _post("/v1/embeddings", EMB, extra="Connection: closed\r\n"),
}
HANDED = {
    "HTTP/1.0": _post("/v1/embeddings", EMB, version="1.0"),
    "a query string": _post("/v1/embeddings?x=1", EMB),
    "a chunked body": (b"POST /v1/embeddings HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + f"{len(EMB):x}\r\n".encode() + EMB + b"\r\n0\r\n\r\n"),
    "Expect: 100-continue": _post("/v1/embeddings", EMB, extra="Expect: 100-continue\r\n"),
    "two Content-Lengths": _post("/v1/embeddings", EMB, extra=f"Content-Length: {len(EMB)}\r\n"),
    "a GET": b"GET /health/live HTTP/1.1\r\nHost: r\r\n\r\n",
    "a path with no codec": _post("/v1/nothing", EMB),
    "a space before a colon (400)": _post("/v1/embeddings", EMB, extra="X-Odd : 1\r\n"),
    "a line folded (400)": _post("/v1/embeddings", EMB, extra="X-Odd: 1\r\n  folded\r\n"),
    "a bare LF in a header (400)": _post("/v1/embeddings", EMB, extra="X-Odd: 1\nX-Two: 2\r\n"),
    "a Content-Length of 5,000 digits": _post("/v1/embeddings", EMB).replace(f"Content-Length: {len(EMB)}".encode(),
                                                                             b"Content-Length: " + b"9" * 5000),
    "a gzip body": _post("/v1/embeddings", gzip.compress(EMB), extra="Content-Encoding: gzip\r\n"),
    "no Host (400)": _post("/v1/embeddings", EMB).replace(b"Host: router\r\n", b""),
    "a header twice": _post("/v1/embeddings", EMB, extra="Accept: */*\r\nAccept: */*\r\n"),
    "Connection twice": _post("/v1/embeddings", EMB, extra="Connection: keep-alive\r\nConnection: close\r\n"),
    "Proxy-Connection: close": _post("/v1/embeddings", EMB, extra="Proxy-Connection: close\r\n"),
    "129 header lines": _post("/v1/embeddings", EMB, extra="".join(f"X-N{i}: {i}\r\n" for i in range(126))),
    "a body over the limit (413)": _post("/v1/embeddings", EMB).replace(f"Content-Length: {len(EMB)}".encode(),
                                                                        b"Content-Length: 99999999999"),
}


async def _app(tmp_path, **settings) -> web.Application:
    app = create_app(write_configs(tmp_path, **settings), echo_plugin_manager())
    return app


@pytest.fixture
def handed(monkeypatch):
    """How many times a connection was handed to aiohttp."""
    count = [0]
    hand_over = core.lane.Lane._hand_over

    def counting(self):
        count[0] += 1
        hand_over(self)
    monkeypatch.setattr(core.lane.Lane, "_hand_over", counting)
    return count


@pytest.fixture
def release(monkeypatch):
    """The echo model holds every call until the test sets this event."""
    event = asyncio.Event()
    from tests.support.echo import EchoAdapter
    embed = EchoAdapter.embed

    async def gated(self, route, inputs, call):
        await event.wait()
        return await embed(self, route, inputs, call)
    monkeypatch.setattr(EchoAdapter, "embed", gated)
    return event


async def _started(server: TestServer) -> TestServer:
    await server.start_server()
    for _ in range(3000):
        if server.app[GATEWAY].ready:
            return server
        await asyncio.sleep(0.01)
    raise TimeoutError("the gateway did not become ready")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    while head.startswith("HTTP/1.1 1"):  # an interim answer (100 Continue)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status, *lines = head[:-4].split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
    return status, headers, await reader.readexactly(int(headers.get("content-length", 0)))


async def _exchange(port: int, raw: bytes, answers: int = 1) -> tuple[list[tuple[str, dict, bytes]], bool]:
    """The answers to ``raw`` sent in one write, and whether the server then closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    out = [await asyncio.wait_for(_read_answer(reader), 10) for _ in range(answers)]
    try:
        closed = await asyncio.wait_for(reader.read(1), 0.3) == b""
    except TimeoutError:
        closed = False
    writer.close()
    return out, closed


def _comparable(answer: tuple[str, dict, bytes]) -> tuple[str, dict, object]:
    status, headers, body = answer
    headers = {k: v for k, v in headers.items() if k != "date"}
    if "x-request-id" in headers and headers["x-request-id"] != "rid-7":  # made up: different every time
        headers["x-request-id"] = len(headers["x-request-id"])
    if not headers.get("content-type", "").startswith("application/json"):  # aiohttp's own 400 text
        return status, headers, body
    data = orjson.loads(body) if body else body
    if isinstance(data, dict) and "id" in data:  # an answer's id is made up too
        data["id"] = len(data["id"])
    return status, headers, data


@pytest.mark.parametrize("case", [*TAKEN, *HANDED])
async def test_the_lane_answers_what_aiohttp_answers(tmp_path, handed, case):
    raw = {**TAKEN, **HANDED}[case]
    plain = await _started(TestServer(await _app(tmp_path / "plain"), host="127.0.0.1"))
    lane = await _started(LaneTestServer(await _app(tmp_path / "lane")))
    try:
        expected, expected_closed = await _exchange(plain.port, raw)
        before = handed[0]
        seen, closed = await _exchange(lane.port, raw)
        assert _comparable(seen[0]) == _comparable(expected[0])
        assert closed == expected_closed
        assert handed[0] - before == (case in HANDED)  # the lane took exactly the common requests
    finally:
        await lane.close()
        await plain.close()


async def test_pipelined_requests_are_answered_in_order_across_a_hand_over(tmp_path, handed):
    lane = await _started(LaneTestServer(await _app(tmp_path)))
    try:
        raw = (_post("/v1/embeddings", EMB, rid="first") + _post("/v1/rerank", RERANK, rid="second")
               + b"GET /health/live HTTP/1.1\r\nHost: r\r\nX-Request-ID: third\r\n\r\n"
               + _post("/v1/embeddings", EMB, rid="fourth"))
        answers, closed = await _exchange(lane.port, raw, answers=4)
        assert [a[1]["x-request-id"] for a in answers] == ["first", "second", "third", "fourth"]
        assert [a[0] for a in answers] == ["HTTP/1.1 200 OK"] * 4
        assert orjson.loads(answers[0][2])["data"][1]["embedding"][:2] == [5.0, 1.0]  # "three": len 5
        assert orjson.loads(answers[2][2]) == {"status": "ok"}
        assert orjson.loads(answers[3][2]) == orjson.loads(answers[0][2])  # aiohttp, after the hand-over
        assert handed[0] == 1 and not closed
    finally:
        await lane.close()


@pytest.mark.parametrize("size", [len(EMB), core.lane.connection.MAX_WAITED_BODY + 1])
async def test_a_body_that_comes_after_its_head_is_waited_for_when_small_and_read_by_aiohttp_when_big(
        tmp_path, handed, size):
    lane = await _started(LaneTestServer(await _app(tmp_path)))
    try:
        body = EMB + b" " * (size - len(EMB))  # JSON allows the trailing spaces
        raw = _post("/v1/embeddings", body)
        reader, writer = await asyncio.open_connection("127.0.0.1", lane.port)
        writer.write(raw[:-len(body)])  # the head alone, as a client that writes its body apart does
        await asyncio.sleep(0.1)
        writer.write(body)
        status, headers, answer = await asyncio.wait_for(_read_answer(reader), 10)
        assert status == "HTTP/1.1 200 OK" and len(orjson.loads(answer)["data"]) == 2
        assert handed[0] == (size > core.lane.connection.MAX_WAITED_BODY)
        writer.close()
    finally:
        await lane.close()


async def test_a_body_that_never_comes_is_a_408_and_a_client_gone_mid_body_a_499(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="maas.access")
    lane = await _started(LaneTestServer(await _app(tmp_path, body_timeout_s=0.3)))
    try:
        for rid, leave in (("late-1", False), ("gone-1", True)):
            reader, writer = await asyncio.open_connection("127.0.0.1", lane.port)
            writer.write(_post("/v1/embeddings", EMB, rid=rid)[:-5])  # five bytes short
            if leave:
                await asyncio.sleep(0.05)
                writer.close()
                await asyncio.sleep(0.1)
                continue
            status, headers, answer = await asyncio.wait_for(_read_answer(reader), 5)
            assert status.startswith("HTTP/1.1 408") and headers["connection"] == "close"
            assert headers["x-request-id"] == rid and orjson.loads(answer)["error"]["code"]
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        logged = [r.getMessage() for r in caplog.records if r.name == "maas.access"]
        assert logged == ["POST /v1/embeddings 408", "POST /v1/embeddings 499"]
    finally:
        await lane.close()


async def test_a_connection_without_a_whole_head_in_time_is_closed(tmp_path):
    lane = await _started(LaneTestServer(await _app(tmp_path), header_timeout_s=0.3))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", lane.port)
        writer.write(_post("/v1/embeddings", EMB))  # one answer, then an idle connection
        await asyncio.wait_for(_read_answer(reader), 10)
        writer.write(b"POST /v1/embeddings HTTP/1.1\r\n")  # a head that never ends
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the header timeout
        writer.close()
    finally:
        await lane.close()


async def test_a_client_that_leaves_cancels_its_request(tmp_path, monkeypatch):
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stalled(self, route, inputs, call):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
    from tests.support.echo import EchoAdapter
    monkeypatch.setattr(EchoAdapter, "embed", stalled)
    lane = await _started(LaneTestServer(await _app(tmp_path)))
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", lane.port)
        writer.write(_post("/v1/embeddings", EMB))
        await asyncio.wait_for(started.wait(), 10)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), 5)  # nobody waits for it: the model's work is dropped
    finally:
        await lane.close()


async def test_while_draining_each_answer_closes_its_connection(tmp_path):
    app = await _app(tmp_path)
    app[DRAIN] = drain = Drain()
    lane = await _started(LaneTestServer(app))
    try:
        drain.active = True
        answers, closed = await _exchange(lane.port, _post("/v1/embeddings", EMB))
        assert answers[0][0] == "HTTP/1.1 200 OK" and answers[0][1]["connection"] == "close" and closed
    finally:
        await lane.close()


async def test_closing_the_listener_closes_idle_connections_and_lets_a_running_request_finish(tmp_path, release):
    lane = await _started(LaneTestServer(await _app(tmp_path)))
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", lane.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", lane.port)
    writer.write(_post("/v1/embeddings", EMB))
    await asyncio.sleep(0.2)
    assert lane.listener is not None
    closing = asyncio.create_task(lane.listener.close(10.0))
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # the idle one at once
    release.set()
    status, headers, _ = await asyncio.wait_for(_read_answer(reader), 10)
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"  # the running one answered
    await asyncio.wait_for(closing, 10)
    idle_writer.close()
    writer.close()
    lane.listener = None
    await lane.close()


async def test_maas_serve_opens_the_api_port_with_the_lane_unless_router_lean_lane_is_false(tmp_path, handed):
    from core.config import Settings
    from core.lane import api_listen

    assert api_listen(Settings.from_env({"ROUTER_LEAN_LANE": "false"})) is None  # aiohttp's own site then
    listen = api_listen(Settings.from_env({"ROUTER_HEADER_TIMEOUT_SECONDS": "7"}))
    assert listen is not None
    app = await _app(tmp_path)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    listener = await listen(runner, "127.0.0.1", 0)
    try:
        assert listener.edge.header_timeout_s == 7.0
        for _ in range(3000):
            if app[GATEWAY].ready:
                break
            await asyncio.sleep(0.01)
        answers, _ = await _exchange(listener.server.sockets[0].getsockname()[1], _post("/v1/embeddings", EMB))
        assert answers[0][0] == "HTTP/1.1 200 OK" and handed[0] == 0
    finally:
        await listener.close(1.0)
        await runner.cleanup()


async def test_a_client_that_pipelines_without_reading_is_read_no_further_than_the_limit(tmp_path, monkeypatch,
                                                                                             release):
    most = [0]
    data_received = core.lane.connection.Lane.data_received

    def measured(self, data):
        data_received(self, data)
        most[0] = max(most[0], len(self.buffer))
    monkeypatch.setattr(core.lane.connection.Lane, "data_received", measured)
    lane = await _started(LaneTestServer(await _app(tmp_path)))
    try:
        count = 4000  # about 1 MB of requests in one write
        reader, writer = await asyncio.open_connection("127.0.0.1", lane.port)
        writer.write(b"".join(_post("/v1/embeddings", EMB, rid=f"r{i}") for i in range(count)))
        await asyncio.sleep(0.5)
        (connection,) = lane.listener.edge.lanes
        assert connection.busy and len(connection.buffer) <= 2 * core.lane.connection._MAX_AHEAD + 262144
        release.set()
        ids = [(await asyncio.wait_for(_read_answer(reader), 10))[1]["x-request-id"] for _ in range(count)]
        assert ids == [f"r{i}" for i in range(count)]  # every one answered, in order, once released
        assert most[0] <= 2 * core.lane.connection._MAX_AHEAD + 262144  # held while they were answered too
        writer.close()
    finally:
        await lane.close()


async def test_an_error_that_escapes_the_request_closes_its_connection(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a codec's error renderer failed")
    monkeypatch.setattr(core.lane.connection, "error_body", broken)
    lane = await _started(LaneTestServer(await _app(tmp_path)))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", lane.port)
        writer.write(_post("/v1/embeddings", b'{"model": "nope", "input": "x"}'))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once, as aiohttp does; not left hanging
        writer.close()
        answers, _ = await _exchange(lane.port, _post("/v1/embeddings", EMB))
        assert answers[0][0] == "HTTP/1.1 200 OK"  # and the next connection is served
    finally:
        await lane.close()


async def test_a_head_trickled_across_a_hand_over_gets_no_second_header_timeout(tmp_path):
    lane = await _started(LaneTestServer(await _app(tmp_path), header_timeout_s=1.0))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", lane.port)
        began = time.monotonic()
        head = b"POST /v1/embeddings HTTP/1.1\r\nHost: r\r\nX-Pad: " + b"a" * 4000 + b"\r\nX-More: " + b"a" * 4000
        writer.write(head)
        await asyncio.sleep(0.7)
        writer.write(b"a" * 400)  # past 8 KiB: aiohttp reads the rest of this head, which never ends
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert time.monotonic() - began < 1.5  # the lane's deadline (1 s), not the hand-over's plus 1 s
        writer.close()
    finally:
        await lane.close()


async def test_closing_the_listener_does_not_wait_for_an_idle_connection_whose_client_reads_slowly(tmp_path):
    import socket

    lane = await _started(LaneTestServer(await _app(tmp_path)))
    client = socket.socket()
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing
        client.connect(("127.0.0.1", lane.port))
        client.setblocking(False)
        await asyncio.sleep(0.05)
        (connection,) = lane.listener.edge.lanes
        connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        body = b'{"model": "echo-emb", "input": ["' + b"x" * 3000 + b'"]}'
        for i in range(2000):  # until the lane is idle with answer bytes it cannot send
            client.send(_post("/v1/embeddings", body, rid=f"r{i}"))
            await asyncio.sleep(0.02)
            if connection.task is None and connection.transport.get_write_buffer_size() > 0:
                break
        assert not connection.busy and connection.transport.get_write_buffer_size() > 0
        began = time.monotonic()
        await lane.listener.close(5.0)
        assert time.monotonic() - began < 2.5  # not the whole timeout: nothing runs on it
        lane.listener = None
    finally:
        client.close()
        await lane.close()

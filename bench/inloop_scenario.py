"""The scenario of ``bench.inloop``, run in a process of its own from the tree it measures.

One event loop (uvloop) holds everything: a raw upstream answering every call at once with the
fixed one-vector body, the router built by ``create_app`` on that tree (the ``infinity`` adapter,
one key, the token bucket on), and a minimal keep-alive client that sends one embeddings request
after another. The CPU time of the process per request is the router's work plus the client's
and the upstream's, which are this file's own code and the same for every tree: so the difference
between two trees is the difference between their routers, free of the scheduling noise of
separate processes on a shared machine. The same load against bare aiohttp handlers (a fixed
answer; a pass-through that forwards the body and parses and re-encodes both JSON bodies) gives
the floor any aiohttp gateway starts from.

Only long-stable entry points of the tree are used (``core.app.create_app``,
``core.plugins.build_plugin_manager``, ``tests.support.inprocess.write_configs``, and
``core.lane.listen`` where the tree has the lean lane, as ``maas serve`` opens its port with it),
so an older checkout runs it too. Prints one JSON line: CPU µs per request by target, the best of the rounds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uvloop
from aiohttp import web

BODY = b'{"model": "fixed", "input": "The quick brown fox jumps over the lazy dog"}'
KEY = "sk-bench-local"
ANSWER = b""  # the upstream's answer, given by ``bench.inloop`` (``bench.servers.fixed_embedding_body``)


def _reply() -> bytes:
    return (b"HTTP/1.1 200 OK\r\nServer: upstream\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(ANSWER)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + ANSWER)


class Upstream(asyncio.Protocol):
    """Answers each whole request (head and Content-Length body) with the fixed answer."""

    reply = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            size = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + size:
                return
            self.buffer = self.buffer[end + 4 + size:]
            self.transport.write(self.reply)


class Client:
    """One keep-alive connection; ``post`` sends a request and reads its whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def to(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, f"127.0.0.1:{port}")

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """The status and the body of the answer to ``body`` POSTed to ``path``."""
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {KEY}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (line.partition(": ") for line in lines) if k.lower() == "content-length")
        return int(lines[0].split(" ", 2)[1]), await self.reader.readexactly(length)


async def _bare(upstream_port: int) -> web.AppRunner:
    """aiohttp without a gateway: a fixed answer, and a pass-through over one keep-alive connection."""
    forward = await Client.to(upstream_port)
    lock = asyncio.Lock()

    async def fixed(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json")

    async def passthrough(request: web.Request) -> web.Response:
        body = orjson.dumps(orjson.loads(await request.read()))
        async with lock:  # one connection: one call at a time (the load is one request at a time)
            _, answer = await forward.post("/embeddings", body)
        return web.Response(body=orjson.dumps(orjson.loads(answer)), content_type="application/json")

    app = web.Application()
    app.router.add_post("/fixed", fixed)
    app.router.add_post("/passthrough", passthrough)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def _router(upstream_port: int) -> tuple[web.AppRunner, int]:
    from core.app import create_app
    from core.http import GATEWAY
    from core.plugins import build_plugin_manager
    from tests.support.inprocess import write_configs

    routing = {"embeddings": [{"model": "fixed", "served_name": "fixed",
                               "upstream": {"type": "infinity", "url": f"http://127.0.0.1:{upstream_port}"}}]}
    settings = write_configs(Path(tempfile.mkdtemp(prefix="maas-inloop-")), routing=routing,
                             auth={"api_keys": [{"name": "bench", "key": KEY}]},
                             limits={"default": {"capacity": 1e12, "refill_rate": 1e12}})
    app = create_app(settings, build_plugin_manager())
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    try:  # the API port as ``maas serve`` opens it: with the lean lane where the tree has one
        from core.lane import listen
    except ImportError:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
    else:
        port = (await listen(runner, "127.0.0.1", 0, header_timeout_s=30.0)).server.sockets[0].getsockname()[1]
    for _ in range(3000):
        if app[GATEWAY].ready:
            return runner, port
        await asyncio.sleep(0.01)
    raise TimeoutError("the router did not load its config")


async def _cpu_per_request(client: Client, path: str, count: int, rounds: int) -> float:
    for _ in range(min(count, 500)):  # warm-up: first-call caches, the capacity model's warm-up
        status, _ = await client.post(path, BODY)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    best = float("inf")
    for _ in range(rounds):
        began = time.process_time()
        for _ in range(count):
            await client.post(path, BODY)
        best = min(best, (time.process_time() - began) / count * 1e6)
    return best


async def main(count: int, rounds: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    Upstream.reply = _reply()
    upstream = await loop.create_server(Upstream, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    bare, (router, router_port) = await _bare(up_port), await _router(up_port)
    bare_port = bare.addresses[0][1]
    out = {}
    for name, port, path in (("bare aiohttp, fixed answer", bare_port, "/fixed"),
                             ("bare aiohttp, JSON pass-through", bare_port, "/passthrough"),
                             ("router", router_port, "/v1/embeddings")):
        client = await Client.to(port)
        out[name] = await _cpu_per_request(client, path, count, rounds)
        client.writer.close()
    upstream_only = await Client.to(up_port)
    out["client and upstream alone"] = await _cpu_per_request(upstream_only, "/embeddings", count, rounds)
    await router.cleanup()
    await bare.cleanup()
    return out


if __name__ == "__main__":
    sys.path.insert(0, ".")
    ANSWER = Path(sys.argv[3]).read_bytes()
    uvloop.install()
    print(json.dumps(asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))))

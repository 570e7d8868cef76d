"""A fast OpenAI-embeddings upstream that answers n vectors for n inputs and counts its calls.

Vectors come back as base64 float32 when the call asks for it (``encoding_format``), else as
JSON floats, as Infinity does.

Nginx's fixed body always holds one vector, which a merged (coalesced) call cannot use. This
one parses just enough HTTP/1.1 (keep-alive, Content-Length) on uvloop to stay cheap per call,
counts inputs with orjson, and serves ``GET /stats`` with the calls and inputs it has seen.

    python -m bench.echo_upstream --port 8002
"""

from __future__ import annotations

import argparse
import asyncio
import functools

import orjson

from bench.servers import fixed_embedding_body


@functools.lru_cache(maxsize=4096)
def _answer(n: int, encoding: str) -> bytes:
    body = fixed_embedding_body(n, encoding=encoding)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


class EchoProtocol(asyncio.Protocol):
    stats = {"calls": 0, "inputs": 0}

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < head_end + 4 + length:
                return
            body = self.buf[head_end + 4:head_end + 4 + length]
            self.buf = self.buf[head_end + 4 + length:]
            self.transport.write(self._respond(head.split(" ", 2)[1], body))

    def _respond(self, path: str, body: bytes) -> bytes:
        if path.startswith("/stats") or path.startswith("/health"):
            out = orjson.dumps(self.stats)
            return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                len(out), out)
        try:
            request = orjson.loads(body)
            inputs = request.get("input", [])
        except (orjson.JSONDecodeError, AttributeError):
            return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
        n = 1 if isinstance(inputs, str) else len(inputs)
        self.stats["calls"] += 1
        self.stats["inputs"] += n
        return _answer(n, "base64" if request.get("encoding_format") == "base64" else "float")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(EchoProtocol, args.host, args.port)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

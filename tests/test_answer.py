"""``JsonAnswer`` writes what aiohttp's ``web.Response`` would: the same status line, the same
headers (``Date`` only by its shape), the same body, and the same keep-alive or close, for every
HTTP version and connection choice a client or the edge makes."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest
from aiohttp import web

from core.answer import JsonAnswer

BODY = orjson.dumps({"object": "list", "data": [{"embedding": [0.5, -0.25]}]})
HEADERS = {"X-RateLimit-Remaining": "41", "X-Embedding-Space": "sha256:ab12"}


def _app() -> web.Application:
    def answer(kind: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            await request.read()
            headers = dict(HEADERS)
            response = (JsonAnswer(BODY, headers) if kind == "json" else
                        web.Response(body=BODY, content_type="application/json", headers=headers))
            response.headers["X-Request-ID"] = "rid-1"  # as the edge adds it
            if request.query.get("close"):  # as the edge does while draining
                response.force_close()
            return response
        return handler

    app = web.Application()
    app.router.add_post("/json", answer("json"))
    app.router.add_post("/plain", answer("plain"))
    return app


async def _exchange(port: int, request: bytes) -> tuple[str, dict[str, str], bytes, bool]:
    """The status line, headers, body of the answer, and whether the server then closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status, *lines = head[:-4].split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    try:
        closed = await asyncio.wait_for(reader.read(1), 0.5) == b""
    except TimeoutError:
        closed = False
    writer.close()
    return status, headers, body, closed


@pytest.mark.parametrize(("version", "connection", "close"), [
    ("1.1", "", False), ("1.1", "Connection: close\r\n", False), ("1.1", "", True),
    ("1.0", "", False), ("1.0", "Connection: keep-alive\r\n", False), ("1.0", "Connection: keep-alive\r\n", True),
])
async def test_a_json_answer_is_what_web_response_writes(version, connection, close):
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        seen = {}
        for path in ("/json", "/plain"):
            query = "?close=1" if close else ""
            seen[path] = await _exchange(port, (f"POST {path}{query} HTTP/{version}\r\nHost: x\r\n{connection}"
                                                f"Content-Length: 2\r\n\r\n{{}}").encode())
        (status, headers, body, closed), (p_status, p_headers, p_body, p_closed) = seen["/json"], seen["/plain"]
        assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", headers.pop("date"))
        p_headers.pop("date")
        assert (status, headers, body, closed) == (p_status, p_headers, p_body, p_closed)
        assert body == BODY and headers["x-request-id"] == "rid-1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("bad", ["a\r\nSet-Cookie: x=1", "a\nb", "a\x00b", "a\x7fb"])
async def test_a_header_value_with_a_line_break_or_control_character_is_never_written(bad):
    async def handler(request: web.Request) -> web.StreamResponse:
        answer = JsonAnswer(BODY)
        answer.headers["X-Echo"] = bad  # CIMultiDict takes it; the head must not
        return answer

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        seen = await asyncio.wait_for(reader.read(), 5)
        assert b"Set-Cookie" not in seen and BODY not in seen  # the connection closes; nothing of it went out
        writer.close()
    finally:
        await runner.cleanup()


def test_the_head_refuses_exactly_the_control_characters_aiohttp_refuses_in_a_name_or_a_value():
    from core.answer import head

    for code in [*range(0x100), 0x2028, 0x3000, 0xFEFF]:
        char = chr(code)
        unsafe = code < 0x20 and char != "\t" or code == 0x7F
        for headers in ({"X-Echo": f"a{char}b"}, {f"X-E{char}cho": "ab"}):
            if unsafe:
                with pytest.raises(ValueError):
                    head(1, 200, True, headers, 2)
            else:
                assert head(1, 200, True, headers, 2).endswith(
                    f"{next(iter(headers))}: {next(iter(headers.values()))}\r\n\r\n".encode())

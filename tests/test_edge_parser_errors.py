"""Requests aiohttp cannot parse get the gateway's answer: JSON with an X-Request-ID, one short
WARNING line, and never the raw bytes (which may hold a key) in the answer or the log. Raw
sockets against a real router process."""

from __future__ import annotations

import json
import socket

import pytest

from tests.support import echo
from tests.support.configs import write_yaml
from tests.support.processes import ROOT, start_router

SECRET = "sk-edge-secret-7f3a9c"  # noqa: S105 - a test key that must never show


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    work = tmp_path_factory.mktemp("edge")
    configs = work / "configs"
    configs.mkdir()
    write_yaml(configs / "routing.yaml", {"embeddings": [{"model": "e", "upstream": {"type": "echo"}}]})
    write_yaml(configs / "auth.yaml", {"api_keys": [{"key": SECRET, "name": "edge"}]})
    write_yaml(configs / "rate_limits.yaml", {"default": {"capacity": 1000, "refill_rate": 1000}})
    site = echo.install_plugin(work / "site")
    server, url = start_router(configs, work / "router.log", PYTHONPATH=f"{site}:{ROOT}",
                               ROUTER_BODY_TIMEOUT_SECONDS="1", ROUTER_HEADER_TIMEOUT_SECONDS="1")
    yield server, url
    server.stop()


def _raw(url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        got = b""
        while b"\r\n\r\n" not in got:
            got += sock.recv(65536)
        head, _, body = got.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):  # the answer, not the socket's end
            body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("name, data", [
    ("control byte in the key", f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\x01\r\n"
                                "\r\n".encode()),
    ("header over 8 KB", b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"),
    ("Content-Length and chunked", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("bad request line", b"GET /v1/models HTTP/9.9 junk\r\n\r\n"),
])
def test_a_request_aiohttp_cannot_parse_gets_json_with_a_request_id_and_no_echo(router, name, data):
    server, url = router
    status, headers, body = _raw(url, data)
    assert 400 <= status < 500, (name, status, body[:200])
    assert headers["content-type"].startswith("application/json") and len(headers["x-request-id"]) == 32
    error = json.loads(body)["error"]
    assert error["code"] == "malformed_request" and error["message"].startswith("Malformed HTTP request")
    assert SECRET not in body.decode("latin-1")
    log = server.log_text()
    assert SECRET not in log and "Traceback" not in log
    assert headers["x-request-id"] in log  # one WARNING line names it


def test_a_body_promised_and_never_sent_is_a_408_not_a_held_connection(router):
    _, url = router
    head = (f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    status, headers, body = _raw(url, head.encode() + b'{"model": "e", ')  # 15 of the 100 bytes, then silence
    assert status == 408 and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and "ROUTER_BODY_TIMEOUT_SECONDS" in error["message"]


@pytest.mark.parametrize("sent", [b"", b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nX-Slow: "],
                         ids=["nothing", "half a head"])
def test_a_connection_without_a_whole_request_head_is_closed_at_the_header_timeout(router, sent):
    import time

    _, url = router
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        for _ in range(3 if sent else 0):  # a slow client keeps trickling header bytes; the deadline holds
            time.sleep(0.2)
            try:
                sock.sendall(b"a")
            except OSError:
                break
        assert sock.recv(65536) == b""  # closed by the router, not by us
        assert time.monotonic() - started < 8  # ROUTER_HEADER_TIMEOUT_SECONDS=1 (aiohttp's timer is coarse)


def test_a_kept_alive_connection_serves_requests_within_the_header_timeout(router):
    _, url = router
    host, port = url.removeprefix("http://").split(":")
    body = b'{"model": "e", "input": "x"}'
    request = (f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(request)
            got = b""
            while b"\r\n\r\n" not in got:
                got += sock.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")

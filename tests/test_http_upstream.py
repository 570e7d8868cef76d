"""The shared HTTP upstream client, in process, against real aiohttp servers on loopback."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web

from adapters.http import resilience_options
from adapters.http.errors import error_from_response, upstream_message
from adapters.http.upstream import HttpUpstream, public_url
from core.adapters import AdapterContext
from core.config import ModelRoute, Settings, UpstreamConfig
from core.errors import RateLimited, UpstreamError, UpstreamRejected
from core.metrics import GatewayMetrics


def _counting_app(calls: list[str], name: str) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        calls.append(name)
        return web.json_response({"ok": name})

    app = web.Application()
    app.router.add_post("/echo", handler)
    return app


def _upstream(urls, metrics=None, **options) -> HttpUpstream:
    config = UpstreamConfig(type="test", urls=tuple(urls), timeout_s=5, options=options)
    checked = resilience_options("float").check(options, "upstream type 'test'")
    return HttpUpstream(config, checked, AdapterContext(settings=Settings(), metrics=metrics), adapter="test")


async def test_calls_are_spread_over_every_url(aiohttp_server):
    calls: list[str] = []
    servers = [await aiohttp_server(_counting_app(calls, n)) for n in ("a", "b")]
    http = _upstream([str(s.make_url("")).rstrip("/") for s in servers])
    try:
        for _ in range(20):
            assert (await http.post_json("/echo", {}, alias="m"))["ok"] in {"a", "b"}
    finally:
        await http.close()
    assert calls.count("a") >= 5 and calls.count("b") >= 5


async def test_a_url_with_credentials_is_labelled_without_them(aiohttp_server):
    calls: list[str] = []
    server = await aiohttp_server(_counting_app(calls, "a"))
    url = f"http://user:s3cret@127.0.0.1:{server.port}"
    metrics = GatewayMetrics()
    http = _upstream([url], metrics)
    try:
        await http.post_json("/echo", {}, alias="m")
    finally:
        await http.close()
    exposition = metrics.render()[0].decode()
    assert calls == ["a"]
    assert "s3cret" not in exposition
    assert f'upstream="http://127.0.0.1:{server.port}"' in exposition
    assert public_url(url) == f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize("body, message", [
    ({"error": {"message": "bad model", "type": None, "param": None, "code": 400}}, "bad model"),
    ({"detail": [{"loc": ["body", "input", 3], "msg": "too long"}]}, "input.3: too long"),
    ({"detail": "Not authenticated"}, "Not authenticated"),
    ({"message": "flat message"}, "flat message"),
    ({"something": "else"}, None),
])
def test_upstream_messages_of_each_dialect(body, message):
    assert upstream_message(orjson.dumps(body)) == message
    assert upstream_message(b"<html>502 Bad Gateway</html>") is None


def test_status_mapping():
    assert error_from_response(422, b"{}", {}, alias="m").status == 400
    assert isinstance(error_from_response(413, b"{}", {}, alias="m"), UpstreamRejected)
    limited = error_from_response(429, b"{}", {"Retry-After": "7"}, alias="m")
    assert isinstance(limited, RateLimited) and limited.headers["Retry-After"] == "7"
    for status in (401, 403, 404):  # the gateway's own credentials or config: not the client's fault
        error = error_from_response(status, b'{"message": "key sk-abc is wrong"}', {}, alias="m", secrets=["sk-abc"])
        assert type(error) is UpstreamError and error.status == 502
        assert "sk-abc" not in error.message


@pytest.mark.parametrize("body", [b"<html>404 Not Found</html>", b"", b'{"detail": null}'])
def test_a_refusal_without_a_message_is_still_a_502(body):
    error = error_from_response(404, body, {}, alias="m", secrets=["sk-abc"])
    assert type(error) is UpstreamError and error.status == 502


@pytest.mark.parametrize("value, seconds", [("inf", "1"), ("nan", "1"), ("-5", "1"), ("1e12", "3600"),
                                            ("soon", "1"), ("2.5", "3")])
def test_an_upstream_retry_after_is_kept_within_bounds(value, seconds):
    for status in (429, 503):
        error = error_from_response(status, b"{}", {"Retry-After": value}, alias="m")
        assert error.headers["Retry-After"] == seconds


def test_an_operator_side_refusal_never_quotes_the_upstream_to_the_client():
    # Providers echo part of a wrong key ("Incorrect API key provided: sk-...abcd"): only the log sees it.
    error = error_from_response(401, b'{"message": "Incorrect API key provided: sk-...abcd"}', {}, alias="m")
    assert "abcd" not in error.message and "log" in error.message


async def test_an_answer_over_the_size_cap_is_a_502(aiohttp_server):
    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(40):  # 2.5 MiB, streamed without a Content-Length
            await resp.write(b" " * 65536)
        return resp

    app = web.Application()
    app.router.add_post("/echo", huge)
    server = await aiohttp_server(app)
    http = _upstream([str(server.make_url("")).rstrip("/")], max_response_mb=1)
    try:
        with pytest.raises(UpstreamError) as info:
            await http.post_json("/echo", {}, alias="m")
        assert info.value.status == 502 and "over" in info.value.message
    finally:
        await http.close()


@pytest.mark.parametrize("options, words", [
    ({"retries": -1}, "'retries' must be >= 0, got -1"),
    ({"pool_size": "abc"}, "'pool_size' must be an integer, got 'abc'"),
    ({"pool_size": 2.5}, "'pool_size' must be an integer, got 2.5"),
    ({"cooldown_seconds": float("nan")}, "'cooldown_seconds' must be a number, got nan"),
    ({"encoding_format": "int8"}, "'encoding_format' must be one of base64, float"),
    ({"pool_sise": 8}, "unknown option 'pool_sise' for upstream type 'infinity' .*pool_size"),
])
def test_bad_http_options_are_config_errors(options, words):
    from adapters.infinity import InfinityAdapter

    with pytest.raises(ValueError, match=words):
        InfinityAdapter.upstream_options.check(options, "upstream type 'infinity'")
    route = ModelRoute(alias="m", kind="embeddings", served_name="m", enabled=True,
                       upstream=UpstreamConfig(type="infinity"))
    with pytest.raises(ValueError, match="needs 'url'"):
        InfinityAdapter.validate_route(route)

"""The deployed Nginx config, run for real: TLS in front of two router replicas, called with the
official OpenAI client; and scripts/smoke_test.sh against a router."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import httpx
import openai
import pytest

from tests.support.configs import copy_default_configs
from tests.support.nginx import (
    HTTP2_ON_SINCE,
    NGINX_CONF,
    RESOLVE_SINCE,
    make_test_ca,
    nginx_binary,
    nginx_version,
    render_nginx_conf,
    start_nginx,
)
from tests.support.processes import ROOT, free_port, start_router
from tests.support.waiting import wait_for

pytestmark = pytest.mark.nginx

if nginx_binary() is None:  # pragma: no cover - scripts/bootstrap.sh test installs nginx
    pytest.skip("nginx is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def second_router(tmp_path_factory):
    work = tmp_path_factory.mktemp("router-replica-2")
    server, url = start_router(copy_default_configs(work / "configs"), work / "router.log")
    server.url = url
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def edge(tmp_path_factory, default_router, second_router, ca):
    replicas = [default_router, second_router]
    nginx = start_nginx(tmp_path_factory.mktemp("nginx"), [r.url.removeprefix("http://") for r in replicas], ca)
    nginx.replicas = replicas
    yield nginx
    nginx.stop()


@pytest.fixture(scope="module")
def client(edge):
    http = httpx.Client(verify=edge.ca.ssl_context(), timeout=60)
    yield openai.OpenAI(base_url=edge.url + "/v1", api_key="unused", max_retries=0, http_client=http)
    http.close()


def _render(prefix, ca) -> tuple[str, tuple[int, int, int]]:
    version = nginx_version(nginx_binary())
    text = render_nginx_conf(NGINX_CONF.read_text(), prefix=prefix, upstreams=["127.0.0.1:9"], https_port=8443,
                             http_port=8080, cert=ca.server_cert, key=ca.server_key, version=version)
    return text, version


def _nginx_t(prefix, text: str) -> subprocess.CompletedProcess:
    conf = prefix / "nginx-t.conf"
    conf.write_text(text)
    return subprocess.run([nginx_binary(), "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                          capture_output=True, text=True, timeout=60)


def test_the_rendered_config_passes_nginx_t(tmp_path, ca):
    text, _ = _render(tmp_path, ca)
    result = _nginx_t(tmp_path, text)
    assert result.returncode == 0 and "test is successful" in result.stderr, result.stderr


@pytest.mark.parametrize("directive", ["http2 on", "resolve"])
def test_this_nginx_needs_the_rewrite_of(directive, tmp_path, ca):
    """Each rewrite of tests/support/nginx.py undone alone: this nginx must then reject the config."""
    text, version = _render(tmp_path, ca)
    since = {"http2 on": HTTP2_ON_SINCE, "resolve": RESOLVE_SINCE}[directive]
    if version >= since:
        pytest.skip(f"nginx {'.'.join(map(str, version))} parses `{directive}`: no rewrite to undo")
    if directive == "http2 on":
        undone = re.sub(r"^([ \t]*listen \S+ ssl) http2;$", r"\1;\n        http2 on;", text, count=1, flags=re.M)
        expected = 'unknown directive "http2"'
    else:
        undone = re.sub(r"^([ \t]*server 127\.0\.0\.1:9\b[^;]*);$", r"\1 resolve;", text, count=1, flags=re.M)
        expected = 'invalid parameter "resolve"'
    assert undone != text
    result = _nginx_t(tmp_path, undone)
    assert result.returncode != 0 and expected in result.stderr, result.stderr


def test_with_resolve_nginx_starts_before_the_router_names_resolve(tmp_path, ca):
    text, version = _render(tmp_path, ca)
    if version < RESOLVE_SINCE:
        pytest.skip(f"nginx {'.'.join(map(str, version))} has no `resolve` (the production image's 1.28 has)")
    shipped = "".join(m.group(0) for m in re.finditer(r"^[ \t]*server router\d+:8000 resolve;\n",
                                                      NGINX_CONF.read_text(), flags=re.M))
    with_names = text.replace("        server 127.0.0.1:9;\n", shipped, 1)
    assert "router1:8000 resolve" in with_names  # names that do not resolve on this machine
    result = _nginx_t(tmp_path, with_names)
    assert result.returncode == 0, result.stderr


def _access_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _nginx_request_ids(edge) -> set[str]:
    # Nginx and the router write access lines after the response has gone out: readers wait.
    return {r["request_id"] for r in _access_lines(edge.access_log.read_text())}


def _router_request_ids(replica) -> set[str]:
    return {r.get("request_id") for r in _access_lines(replica.log_text()) if r.get("logger") == "maas.access"}


def test_embeddings_over_tls_spread_across_replicas_with_one_request_id(client, edge):
    returned = []
    for i in range(8):
        raw = client.embeddings.with_raw_response.create(model="minilm", input=[f"sentence number {i}"])
        body = raw.parse()
        assert len(body.data) == 1 and len(body.data[0].embedding) == 384
        returned.append(raw.headers["x-request-id"])
    assert len(set(returned)) == 8, "every request gets its own id"
    assert wait_for(lambda: set(returned) <= set().union(*(_router_request_ids(r) for r in edge.replicas)))
    per_replica = [_router_request_ids(r) & set(returned) for r in edge.replicas]
    assert all(per_replica), f"least_conn should use both replicas: {[len(s) for s in per_replica]}"
    # The id the client got back is the id the router logged (and only one replica served each).
    assert per_replica[0] | per_replica[1] == set(returned)
    assert not per_replica[0] & per_replica[1]
    assert wait_for(lambda: set(returned) <= _nginx_request_ids(edge)), \
        f"not in the nginx access log: {sorted(set(returned) - _nginx_request_ids(edge))}"


def test_client_request_id_passes_through(client, edge):
    rid = f"client-{uuid.uuid4().hex[:12]}"
    raw = client.embeddings.with_raw_response.create(model="minilm", input="hello", extra_headers={"X-Request-ID": rid})
    assert raw.headers["x-request-id"] == rid
    assert wait_for(lambda: any(rid in _router_request_ids(r) for r in edge.replicas))
    assert wait_for(lambda: rid in _nginx_request_ids(edge)), "nginx logs the client's request id"


def test_health_is_proxied_but_not_access_logged(edge):
    marker = f"marker-{uuid.uuid4().hex[:12]}"
    with httpx.Client(verify=edge.ca.ssl_context(), base_url=edge.url) as http:
        for path in ("/health/ready", "/health/live"):
            response = http.get(path)
            assert response.status_code == 200 and response.json() == {"status": "ok"}
            assert response.headers["x-request-id"]
        assert http.get("/v1/models", headers={"X-Request-ID": marker}).status_code == 200
    assert wait_for(lambda: marker in _nginx_request_ids(edge)), "the access log is written at all"
    lines = _access_lines(edge.access_log.read_text())
    assert not [r for r in lines if r["uri"].startswith("/health")]


def test_edge_errors_are_openai_shaped(edge, ca, tmp_path):
    with httpx.Client(verify=ca.ssl_context(), base_url=edge.url) as http:
        metrics = http.get("/metrics")
        assert metrics.status_code == 404 and metrics.json()["error"]["code"] == "not_found"
        too_big = http.post("/v1/embeddings", content=b"x" * (17 * 1024 * 1024),
                            headers={"Content-Type": "application/json", "X-Request-ID": "big-body-1"})
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "request_too_large"
        assert too_big.headers["x-request-id"] == "big-body-1"
    # No replica reachable: nginx's own 502, in the gateway's shape, with a request id.
    dead = start_nginx(tmp_path / "nginx-dead", [f"127.0.0.1:{free_port()}"], ca)
    try:
        with httpx.Client(verify=ca.ssl_context(), base_url=dead.url) as http:
            response = http.post("/v1/embeddings", json={"model": "minilm", "input": "x"})
        assert response.status_code == 502
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert response.headers["x-request-id"]
    finally:
        dead.stop()


def _smoke(url: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, "MAAS_SMOKE_EMBED_MODEL": "minilm",
            "MAAS_SMOKE_EMBED_DIM": "384", **env}
    return subprocess.run(["bash", str(ROOT / "scripts" / "smoke_test.sh"), url], env=full,
                          capture_output=True, text=True, timeout=120)


def test_smoke_test_passes_against_a_router_and_through_tls(router_url, edge):
    direct = _smoke(router_url)
    assert direct.returncode == 0, direct.stdout + direct.stderr
    assert "all checks passed" in direct.stdout
    through_edge = _smoke(edge.url, CURL_CA_BUNDLE=str(edge.ca.ca_cert))
    assert through_edge.returncode == 0, through_edge.stdout + through_edge.stderr


def test_smoke_test_fails_on_a_wrong_answer_or_no_server(router_url):
    wrong = _smoke(router_url, MAAS_SMOKE_EMBED_DIM="1024")
    assert wrong.returncode == 1 and "FAIL v1/embeddings" in wrong.stdout
    nothing = _smoke(f"http://127.0.0.1:{free_port()}")
    assert nothing.returncode == 1 and "FAIL health/ready" in nothing.stdout

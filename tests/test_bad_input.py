"""Every malformed request gets its status and an OpenAI-shaped error; the server keeps serving."""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx
import pytest

from tests.support.waiting import wait_for

EMB = "/v1/embeddings"
RR = "/v1/rerank"

CASES = [
    ("non-json", EMB, b"{not json", 400, None),
    ("empty body", EMB, b"", 400, None),
    ("json array body", EMB, [1, 2], 400, None),
    ("missing model", EMB, {"input": "x"}, 400, "model"),
    ("model wrong type", EMB, {"model": 5, "input": "x"}, 400, "model"),
    ("missing input", EMB, {"model": "minilm"}, 400, "input"),
    ("empty input list", EMB, {"model": "minilm", "input": []}, 400, "input"),
    ("empty string", EMB, {"model": "minilm", "input": ""}, 400, "input"),
    ("empty string in list", EMB, {"model": "minilm", "input": ["a", ""]}, 400, "input"),
    ("mixed list", EMB, {"model": "minilm", "input": ["a", 1]}, 400, "input"),
    ("input object", EMB, {"model": "minilm", "input": {"text": "a"}}, 400, "input"),
    ("too many inputs", EMB, {"model": "minilm", "input": ["a"] * 2049}, 400, "input"),
    ("bad encoding", EMB, {"model": "minilm", "input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
    ("bad dimensions", EMB, {"model": "minilm", "input": "a", "dimensions": -1}, 400, "dimensions"),
    ("dimensions too big", EMB, {"model": "minilm", "input": "a", "dimensions": 4096}, 400, "dimensions"),
    ("token id out of vocab", EMB, {"model": "minilm", "input": [[10 ** 9]]}, 400, "input"),
    ("negative token id", EMB, {"model": "minilm", "input": [[-1]]}, 400, "input"),
    ("unknown model", EMB, {"model": "gpt-17", "input": "a"}, 404, "model"),
    ("rerank model on embeddings", EMB, {"model": "rerank-base", "input": "a"}, 400, "model"),
    ("embedding model on rerank", RR, {"model": "minilm", "query": "q", "documents": ["d"]}, 400, "model"),
    ("no documents", RR, {"model": "rerank-base", "query": "q", "documents": []}, 400, "documents"),
    ("documents missing", RR, {"model": "rerank-base", "query": "q"}, 400, "documents"),
    ("empty query", RR, {"model": "rerank-base", "query": "", "documents": ["d"]}, 400, "query"),
    ("document wrong type", RR, {"model": "rerank-base", "query": "q", "documents": [3]}, 400, "documents"),
    ("bad top_k", RR, {"model": "rerank-base", "query": "q", "documents": ["d"], "top_k": -1}, 400, "top_k"),
    ("bad top_n", RR, {"model": "rerank-base", "query": "q", "documents": ["d"], "top_n": "2"}, 400, "top_n"),
    ("bad return_documents", RR, {"model": "rerank-base", "query": "q", "documents": ["d"],
                                  "return_documents": "yes"}, 400, "return_documents"),
]


def _assert_openai_error(resp: httpx.Response, status: int, param: str | None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param


@pytest.mark.parametrize("name,path,body,status,param", CASES, ids=[c[0] for c in CASES])
def test_bad_input(router_url, name, path, body, status, param):
    if isinstance(body, bytes):
        resp = httpx.post(router_url + path, content=body, headers={"Content-Type": "application/json"})
    else:
        resp = httpx.post(router_url + path, json=body)
    _assert_openai_error(resp, status, param)
    ok = httpx.post(router_url + EMB, json={"model": "minilm", "input": "still serving"})
    assert ok.status_code == 200


def test_body_over_the_size_limit_is_413(router_url):
    big = b'{"model":"minilm","input":"' + b"a" * (17 * 1024 * 1024) + b'"}'
    resp = httpx.post(router_url + EMB, content=big, headers={"Content-Type": "application/json"})
    _assert_openai_error(resp, 413, None)
    assert httpx.post(router_url + EMB, json={"model": "minilm", "input": "after"}).status_code == 200


def test_unknown_route_and_method_are_openai_shaped(router_url):
    _assert_openai_error(httpx.get(router_url + "/v1/nothing"), 404, None)
    _assert_openai_error(httpx.get(router_url + EMB), 405, None)


def test_disabled_model_is_404_and_hidden(tmp_path):
    from tests.support.configs import copy_default_configs, read_yaml, write_yaml
    from tests.support.processes import start_router

    cfg = copy_default_configs(tmp_path / "configs")
    routing = read_yaml(cfg / "routing.yaml")
    routing["rerank"][0]["enabled"] = False
    write_yaml(cfg / "routing.yaml", routing)
    server, url = start_router(cfg, tmp_path / "router.log")
    try:
        resp = httpx.post(url + RR, json={"model": "rerank-base", "query": "q", "documents": ["d"]})
        _assert_openai_error(resp, 404, "model")
        assert "rerank-base" not in {m["id"] for m in httpx.get(url + "/v1/models").json()["data"]}
    finally:
        server.stop()
    server, url = start_router(cfg, tmp_path / "router2.log", ROUTER_ALLOW_DISABLED_MODELS="true")
    try:
        listed = {m["id"]: m for m in httpx.get(url + "/v1/models").json()["data"]}
        assert listed["rerank-base"]["enabled"] is False
        resp = httpx.post(url + RR, json={"model": "rerank-base", "query": "q", "documents": ["d"]})
        _assert_openai_error(resp, 404, "model")
    finally:
        server.stop()


def test_a_client_gone_mid_body_is_logged_as_499_without_a_traceback(default_router, router_url):
    rid = f"gone-{uuid.uuid4().hex[:12]}"
    host, port = router_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {EMB} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"X-Request-ID: {rid}\r\nContent-Length: 1000\r\n\r\n".encode() + b'{"model": "mi')
        time.sleep(0.2)  # the router is waiting for the rest of the body
    lines = []

    def logged() -> bool:
        lines[:] = [json.loads(x) for x in default_router.log_text().splitlines() if rid in x]
        return any(x.get("logger") == "maas.access" for x in lines)

    assert wait_for(logged), "the request is in the access log"
    assert [x["status"] for x in lines if x.get("logger") == "maas.access"] == [499]
    assert not [x for x in lines if x.get("level") == "error"], lines
    assert httpx.post(router_url + EMB, json={"model": "minilm", "input": "still serving"}).status_code == 200

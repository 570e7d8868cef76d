"""A cold model behind the HTTP API: the embedded MiniLM, timed as it loaded, answers the first
request it ever sees honestly — a request too large for its deadline is refused at once with 413
(or, on a machine fast enough, answered 200), never admitted on a guess and ended by a 504."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from tests.support.configs import copy_default_configs, read_yaml, write_yaml
from tests.support.processes import start_router

TIMEOUT_S = 10  # the route's timeout: 2,048 inputs of ~100 tokens take minutes on two cores


def _post(url: str, body: dict) -> tuple[int, float, dict]:
    request = urllib.request.Request(url + "/v1/embeddings", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            resp.read()
            return resp.status, time.perf_counter() - started, {}
    except urllib.error.HTTPError as exc:
        return exc.code, time.perf_counter() - started, json.loads(exc.read())


def test_the_first_request_a_cold_minilm_sees_is_refused_at_once_or_answered_never_504(tmp_path):
    config = copy_default_configs(tmp_path / "config")
    limits = read_yaml(config / "rate_limits.yaml")
    limits["anonymous"] = {"capacity": 10000, "refill_rate": 10000}
    write_yaml(config / "rate_limits.yaml", limits)
    routing = read_yaml(config / "routing.yaml")
    routing["embeddings"][0]["upstream"]["timeout_seconds"] = TIMEOUT_S
    write_yaml(config / "routing.yaml", routing)
    router, url = start_router(config, tmp_path / "router.log")
    try:
        paragraph = " ".join(f"word{i % 50}" for i in range(60))  # ~100 tokens
        inputs = [f"{k} {paragraph}" for k in range(2048)]
        status, _, error = _post(url, {"model": "minilm", "input": inputs})
        assert status in (200, 413), (status, error)
        if status == 413:
            assert error["error"]["code"] == "request_too_large_for_deadline"
        assert _post(url, {"model": "minilm", "input": inputs[:2]})[0] == 200  # what fits is answered
    finally:
        router.stop()

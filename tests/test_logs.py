"""The JSON log lines, and the access log's direct path (lines of one loop turn written together)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

from core.logs import AccessLog, JsonFormatter, request_id_var

FIELDS = {"status": 200, "path": "/v1/embeddings", "duration_ms": 1.5, "model": "m", "caller": "key-1", "tokens": 3}


class _Stream(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        return super().write(data)


async def test_lines_of_one_loop_turn_go_out_in_one_write_after_it():
    stream = _Stream()
    access = AccessLog("maas.access.test-direct")
    access.logger.setLevel(logging.INFO)
    access.write_to(stream)
    for i in range(3):
        token = request_id_var.set(f"rid-{i}")
        access.info(f"POST /v1/embeddings {200 + i}", FIELDS)
        request_id_var.reset(token)
    assert stream.getvalue() == b"", "nothing is written inside the turn"
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert stream.writes == 1 and len(lines) == 3
    assert [line["request_id"] for line in lines] == ["rid-0", "rid-1", "rid-2"]
    first = lines[0]
    assert first["logger"] == "maas.access.test-direct" and first["level"] == "info"
    assert first["msg"] == "POST /v1/embeddings 200"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert {k: first[k] for k in FIELDS} == FIELDS


def test_direct_lines_have_the_formatters_shape():
    stream = _Stream()
    access = AccessLog("maas.access.test-shape")
    access.logger.setLevel(logging.INFO)
    access.write_to(stream)
    token = request_id_var.set("rid-x")
    try:
        access.info("GET /v1/models 200", FIELDS)  # no running loop: written at once
        record = logging.LogRecord("maas.access.test-shape", logging.INFO, "", 0, "GET /v1/models 200", None, None)
        record.__dict__.update(FIELDS)
        formatted = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    direct = json.loads(stream.getvalue())
    assert list(direct) == list(formatted)
    assert {k: v for k, v in direct.items() if k != "ts"} == {k: v for k, v in formatted.items() if k != "ts"}


def test_the_level_is_respected_and_without_a_stream_lines_go_through_logging(caplog):
    stream = _Stream()
    quiet = AccessLog("maas.access.test-quiet")
    quiet.logger.setLevel(logging.WARNING)
    quiet.write_to(stream)
    quiet.info("POST /v1/embeddings 200", FIELDS)
    assert stream.getvalue() == b""
    plain = AccessLog("maas.access.test-plain")
    with caplog.at_level(logging.INFO, logger="maas.access.test-plain"):
        plain.info("POST /v1/rerank 200", FIELDS)
    [record] = [r for r in caplog.records if r.name == "maas.access.test-plain"]
    assert record.getMessage() == "POST /v1/rerank 200" and record.model == "m"

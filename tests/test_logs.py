"""The JSON log lines, and the access log's direct path (lines buffered for ``FLUSH_S``, written together)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

from core.logs import FLUSH_LINES, FLUSH_S, AccessLog, JsonFormatter, request_id_var

FIELDS = {"status": 200, "path": "/v1/embeddings", "duration_ms": 1.5, "model": "m", "caller": "key-1", "tokens": 3}


class _Stream(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        return super().write(data)


def _log(access: AccessLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        token = request_id_var.set(f"rid-{i}")
        access.info(f"POST /v1/embeddings {200 + i % 100}", FIELDS)
        request_id_var.reset(token)


async def test_lines_wait_for_one_write_at_most_flush_s_after_the_first(monkeypatch):
    monkeypatch.setattr("core.logs.FLUSH_S", 0.5)  # room for a slow machine between the lines and the check
    stream = _Stream()
    access = AccessLog("maas.access.test-direct")
    access.logger.setLevel(logging.INFO)
    access.write_to(stream)
    _log(access, 2)
    for _ in range(3):  # later event-loop turns join the same write
        await asyncio.sleep(0)
    _log(access, 1, start=2)
    assert stream.getvalue() == b"", "nothing is written before FLUSH_S"
    await asyncio.sleep(1.0)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert stream.writes == 1 and len(lines) == 3
    assert [line["request_id"] for line in lines] == ["rid-0", "rid-1", "rid-2"]
    first = lines[0]
    assert first["logger"] == "maas.access.test-direct" and first["level"] == "info"
    assert first["msg"] == "POST /v1/embeddings 200"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert {k: first[k] for k in FIELDS} == FIELDS
    _log(access, 1, start=3)  # the next line waits for a write of its own
    await asyncio.sleep(1.0)
    assert stream.writes == 2 and stream.getvalue().count(b"\n") == 4


async def test_flush_lines_waiting_are_written_at_once_and_flush_writes_the_rest():
    stream = _Stream()
    access = AccessLog("maas.access.test-full")
    access.logger.setLevel(logging.INFO)
    access.write_to(stream)
    _log(access, FLUSH_LINES + 5)
    assert stream.writes == 1 and stream.getvalue().count(b"\n") == FLUSH_LINES, "a full buffer is written at once"
    access.flush()  # as the app does when it stops
    ids = [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()]
    assert ids == [f"rid-{i}" for i in range(FLUSH_LINES + 5)], "every line, once, in order"
    await asyncio.sleep(FLUSH_S * 2)  # the timer went with the flush: nothing written twice
    assert stream.writes == 2


def test_a_loop_that_closed_before_its_flush_does_not_hold_later_lines():
    stream = _Stream()
    access = AccessLog("maas.access.test-closed")
    access.logger.setLevel(logging.INFO)
    access.write_to(stream)

    async def one(wait: float) -> None:
        _log(access, 1)
        await asyncio.sleep(wait)

    asyncio.run(one(0))  # the loop ends with the line still waiting for its timer
    assert stream.writes == 0
    asyncio.run(one(FLUSH_S * 2))  # a new loop: its line schedules a flush of its own, which writes both
    assert stream.writes == 1 and stream.getvalue().count(b"\n") == 2


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

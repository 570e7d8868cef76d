"""The openai SDK, unmodified, against a live router's Batch API. Run inside the SDK venv.

    batches.py roundtrip URL KEY OTHER_KEY   one JSON line a check: {"call", "ok", "detail"}
    batches.py submit URL KEY JSONL          upload the file, make a job of it; prints the job id
    batches.py wait URL KEY BATCH OUT        poll the job until it ends, save its output; prints the job
"""

from __future__ import annotations

import base64
import io
import json
import sys
import time
import traceback

import numpy as np
from openai import BadRequestError, NotFoundError, OpenAI

MODEL = "minilm"


def client(url: str, key: str) -> OpenAI:
    return OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def submit(c: OpenAI, data: bytes) -> str:
    file = c.files.create(file=("corpus.jsonl", io.BytesIO(data)), purpose="batch")
    return c.batches.create(input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h",
                            metadata={"corpus": "test"}).id


def wait(c: OpenAI, batch_id: str, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = c.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(batch.model_dump_json())
        time.sleep(0.2)


def vector(embedding) -> np.ndarray:
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.asarray(embedding, dtype=np.float32)


def lines(n: int, encoding: str = "float") -> list[dict]:
    return [{"custom_id": f"doc-{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": MODEL, "input": [f"Document {i} is about topic {i % 7}.", "word " * (i % 13 + 1)],
                      "encoding_format": encoding if i % 2 else "float"}} for i in range(n)]


def jsonl(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def roundtrip(url: str, key: str, other: str) -> None:
    c, o = client(url, key), client(url, other)
    checks = []

    def check(call):
        def run(fn):
            try:
                checks.append({"call": call, "ok": True, "detail": fn()})
            except Exception as exc:  # noqa: BLE001 - every failure is a row
                checks.append({"call": call, "ok": False, "detail": repr(exc)[:300], "trace": traceback.format_exc()})
        return run

    rows = lines(40, "base64")
    state: dict = {}

    @check("files.create, batches.create, retrieve until completed, files.content")
    def _():
        state["id"] = submit(c, jsonl(rows))
        batch = wait(c, state["id"])
        assert batch.status == "completed", batch
        assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (40, 40, 0)
        assert batch.metadata == {"corpus": "test"} and batch.endpoint == "/v1/embeddings"
        state["batch"] = batch
        out = [json.loads(x) for x in c.files.content(batch.output_file_id).text.splitlines()]
        assert sorted(a["custom_id"] for a in out) == sorted(r["custom_id"] for r in rows)
        state["out"] = {a["custom_id"]: a for a in out}
        return f"{len(out)} lines, status {batch.status}"

    @check("every line's vectors equal the synchronous answer bit for bit")
    def _():
        same, worst = 0, 0.0
        for row in rows:
            sync = json.loads(c.embeddings.with_raw_response.create(**row["body"]).text)["data"]
            got = state["out"][row["custom_id"]]["response"]["body"]["data"]
            for mine, theirs in zip(got, sync, strict=True):
                a, b = vector(mine["embedding"]), vector(theirs["embedding"])
                assert a.shape == b.shape == (384,), row["custom_id"]
                same += int(a.tobytes() == b.tobytes())
                worst = max(worst, float(np.max(np.abs(a - b))))
        assert same == 2 * len(rows), f"{same} of {2 * len(rows)} bit-identical; the rest within {worst:.1e}"
        return f"all {same} vectors bit-identical"

    @check("batches.list pages")
    def _():
        page = c.batches.list(limit=1)
        assert page.data[0].id == state["id"], page
        return f"first {page.data[0].id}"

    @check("another key: its file and job are 404")
    def _():
        batch = state["batch"]
        for call in (lambda: o.batches.retrieve(batch.id), lambda: o.files.retrieve(batch.input_file_id),
                     lambda: o.files.content(batch.output_file_id), lambda: o.batches.cancel(batch.id)):
            try:
                call()
            except NotFoundError:
                continue
            raise AssertionError("another key saw the job or a file")
        assert all(b.id != batch.id for b in o.batches.list())
        return "404 on retrieve, content, cancel; absent from the list"

    @check("a bad line is a 400 naming it")
    def _():
        bad = jsonl(rows[:3] + [{**rows[3], "body": {"model": MODEL, "input": []}}])
        try:
            c.files.create(file=("bad.jsonl", io.BytesIO(bad)), purpose="batch")
        except BadRequestError as exc:
            assert "Line 4" in exc.message, exc.message
            return exc.message[:80]
        raise AssertionError("accepted")

    @check("batches.cancel keeps what is done")
    def _():
        batch_id = submit(c, jsonl(lines(600)))
        cancelled = c.batches.cancel(batch_id)
        assert cancelled.status in ("cancelling", "cancelled"), cancelled.status
        batch = wait(c, batch_id, 30)
        assert batch.status == "cancelled", batch.status
        done = batch.request_counts.completed
        kept = c.files.content(batch.output_file_id).text.splitlines() if batch.output_file_id else []
        assert len(kept) == done < 600
        return f"cancelled with {done} of 600 lines kept"

    @check("files.delete")
    def _():
        gone = c.files.delete(state["batch"].input_file_id)
        assert gone.deleted
        try:
            c.files.retrieve(state["batch"].input_file_id)
        except NotFoundError:
            return "deleted, then 404"
        raise AssertionError("still there")

    for row in checks:
        print(json.dumps(row), flush=True)


def main() -> None:
    mode, url, key = sys.argv[1:4]
    if mode == "roundtrip":
        roundtrip(url, key, sys.argv[4])
    elif mode == "submit":
        with open(sys.argv[4], "rb") as fh:
            print(submit(client(url, key), fh.read()))
    elif mode == "wait":
        c = client(url, key)
        batch = wait(c, sys.argv[4])
        if batch.output_file_id:
            with open(sys.argv[5], "wb") as fh:
                fh.write(c.files.content(batch.output_file_id).read())
        print(batch.model_dump_json())


if __name__ == "__main__":
    main()

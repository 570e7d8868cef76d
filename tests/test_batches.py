"""Bulk jobs in process, on the echo adapter: files checked line by line, jobs run to the end,
their answers equal the synchronous ones, each key sees only its own files and jobs."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from core import hookimpl
from core.errors import ConfigError
from core.routes import RouteTable
from tests.support.inprocess import serve, write_configs

KEYS = {"api_keys": [{"key": "key-a", "name": "team-a"}, {"key": "key-b", "name": "team-b"},
                     {"key": "key-c", "name": "team-c", "models": ["echo-other"]}]}
A, B, C = ({"Authorization": f"Bearer {k}"} for k in ("key-a", "key-b", "key-c"))


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def line(i: int, model: str = "echo-emb", **body) -> dict:
    return {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": model, "input": [f"text {i}", "x" * (i + 1)], **body}}


async def upload(client, data: bytes, headers=A, purpose: str = "batch"):
    form = aiohttp.FormData()
    form.add_field("purpose", purpose)
    form.add_field("file", data, filename="in.jsonl", content_type="application/jsonl")
    return await client.post("/v1/files", data=form, headers=headers)


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    settings = write_configs(tmp_path / "configs", auth=KEYS,
                             environ={"ROUTER_BATCH_DIR": str(tmp_path / "batches"), "ROUTER_BATCH_CHUNK_LINES": "7",
                                      "ROUTER_BATCH_MAX_FILE_MB": "0.05"})
    return await serve(aiohttp_client, settings)


async def wait_final(client, batch_id: str, headers=A) -> dict:
    for _ in range(500):
        batch = await (await client.get(f"/v1/batches/{batch_id}", headers=headers)).json()
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return batch
        await asyncio.sleep(0.02)
    raise TimeoutError(batch)


async def test_a_job_runs_to_the_end_and_equals_the_synchronous_answers(client):
    rows = [line(i) for i in range(30)] + [line(30, model="no-such-model")]
    made = await upload(client, jsonl(rows))
    assert made.status == 200, await made.text()
    file = await made.json()
    assert file["object"] == "file" and file["purpose"] == "batch" and file["bytes"] == len(jsonl(rows))
    created = await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                     "completion_window": "24h", "metadata": {"run": "1"}}, headers=A)
    assert created.status == 200, await created.text()
    batch = await wait_final(client, (await created.json())["id"])
    assert batch["status"] == "completed", batch
    assert batch["request_counts"] == {"total": 31, "completed": 30, "failed": 1}
    assert batch["metadata"] == {"run": "1"}
    out = await client.get(f"/v1/files/{batch['output_file_id']}/content", headers=A)
    answers = [json.loads(x) for x in (await out.read()).splitlines()]
    assert [a["custom_id"] for a in answers] == [f"req-{i}" for i in range(30)]
    for row, answer in zip(rows, answers, strict=False):
        sync = await (await client.post("/v1/embeddings", json=row["body"], headers=A)).json()
        assert answer["response"]["status_code"] == 200
        assert answer["response"]["body"]["data"] == sync["data"]
    errors = [json.loads(x) for x in (await (await client.get(
        f"/v1/files/{batch['error_file_id']}/content", headers=A)).read()).splitlines()]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("req-30", 404)]
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"


async def test_a_model_the_key_may_not_call_fails_its_lines_as_synchronously(client):
    file = await (await upload(client, jsonl([line(0), line(1, model="echo-other")]), headers=C)).json()
    created = await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                     "completion_window": "24h"}, headers=C)
    batch = await wait_final(client, (await created.json())["id"], headers=C)
    assert batch["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    errors = (await (await client.get(f"/v1/files/{batch['error_file_id']}/content", headers=C)).read()).splitlines()
    assert json.loads(errors[0])["response"]["status_code"] == 403


@pytest.mark.parametrize(("rows", "said"), [
    ([line(0), {"custom_id": "req-0", "method": "POST", "url": "/v1/embeddings", "body": {}}], "Line 2"),
    ([line(0), line(1), {**line(2), "custom_id": "req-0"}], "Line 3 of the file: 'custom_id'"),
    ([line(0), {**line(1), "method": "GET"}], "Line 2 of the file: 'method'"),
    ([line(0), {**line(1), "url": "/v1/chat/completions"}], "Line 2 of the file: 'url'"),
    ([line(0), line(1, dimensions=-1)], "Line 2 of the file: 'body' is not a valid /v1/embeddings request"),
])
async def test_a_bad_line_is_a_400_naming_it(client, rows, said):
    answer = await upload(client, jsonl(rows))
    assert answer.status == 400
    assert said in (await answer.json())["error"]["message"]


async def test_bad_json_size_and_purpose_are_refused(client):
    answer = await upload(client, b'{"custom_id": "a"\n')
    assert answer.status == 400 and "Line 1 of the file: not valid JSON" in (await answer.json())["error"]["message"]
    answer = await upload(client, jsonl([line(i) for i in range(1000)]))
    assert answer.status == 413 and (await answer.json())["error"]["code"] == "file_too_large"
    answer = await upload(client, jsonl([line(0)]), purpose="fine-tune")
    assert answer.status == 400


async def test_another_keys_file_and_job_are_404(client):
    file = await (await upload(client, jsonl([line(0)]))).json()
    created = await (await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                            "completion_window": "24h"}, headers=A)).json()
    for path in (f"/v1/files/{file['id']}", f"/v1/files/{file['id']}/content", f"/v1/batches/{created['id']}"):
        assert (await client.get(path, headers=B)).status == 404
    assert (await client.delete(f"/v1/files/{file['id']}", headers=B)).status == 404
    assert (await client.post(f"/v1/batches/{created['id']}/cancel", headers=B)).status == 404
    refused = await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                     "completion_window": "24h"}, headers=B)
    assert refused.status == 404
    assert (await (await client.get("/v1/batches", headers=B)).json())["data"] == []
    assert (await client.get("/v1/files", headers={})).status == 401


async def test_batches_are_listed_newest_first_in_pages(client):
    file = await (await upload(client, jsonl([line(0)]))).json()
    ids = []
    for _ in range(3):
        made = await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                      "completion_window": "24h"}, headers=A)
        ids.append((await made.json())["id"])
        await asyncio.sleep(1.01)  # created_at has whole seconds
    page = await (await client.get("/v1/batches?limit=2", headers=A)).json()
    assert [b["id"] for b in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    assert page["first_id"] == ids[2] and page["last_id"] == ids[1]
    rest = await (await client.get(f"/v1/batches?limit=2&after={page['last_id']}", headers=A)).json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["has_more"] is False


class TwoRoutes:
    @hookimpl
    def register_routes(self, register):
        register("GET", "/x", lambda request: None)
        register("GET", "/x", lambda request: None)


def test_two_plugins_serving_one_route_is_a_startup_error():
    table = RouteTable()
    table.registrar("one", False)("GET", "/x", lambda r: None)
    with pytest.raises(ConfigError, match="registered by both one and two"):
        table.registrar("two", False)("GET", "/x", lambda r: None)


class SlowAdapter:
    """A split-batched model that takes ``delay`` per batch and records each batch's size."""

    batches: list[int] = []
    delay = 0.2


def _slow_plugin():
    import numpy as np

    from core.adapters import Adapter, Batching, EmbedResult

    class Slow(Adapter):
        def batching(self, route):
            return Batching(max_in_flight=1, split=True, max_batch_size=16)

        async def embed(self, route, inputs, call):
            SlowAdapter.batches.append(len(inputs))
            await asyncio.sleep(SlowAdapter.delay)
            return EmbedResult(np.array([[len(t), 1.0, 0.0, 0.0] for t in inputs], dtype=np.float32))

    class Plugin:
        @hookimpl
        def register_adapters(self, register):
            register("slow", Slow)

    return Plugin()


@pytest.fixture
async def slow_client(aiohttp_client, tmp_path):
    SlowAdapter.batches = []
    settings = write_configs(tmp_path / "configs", auth=KEYS,
                             routing={"embeddings": [{"model": "slow", "upstream": {"type": "slow"}}]},
                             environ={"ROUTER_BATCH_DIR": str(tmp_path / "batches"), "ROUTER_BATCH_CHUNK_LINES": "40"})
    return await serve(aiohttp_client, settings, {"slow": _slow_plugin()})


async def test_lines_share_full_batches_and_a_cancel_stops_within_a_second_keeping_what_is_done(slow_client):
    client = slow_client
    rows = [{**line(i, model="slow"), "body": {"model": "slow", "input": f"text {i}"}} for i in range(200)]
    file = await (await upload(client, jsonl(rows))).json()
    batch = await (await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                          "completion_window": "24h"}, headers=A)).json()
    progress = f"/v1/batches/{batch['id']}"
    while (await (await client.get(progress, headers=A)).json())["request_counts"]["completed"] < 40:
        await asyncio.sleep(0.02)
    assert max(SlowAdapter.batches) == 16  # one-input lines fill whole batches together
    asked = asyncio.get_running_loop().time()
    cancelling = await (await client.post(f"/v1/batches/{batch['id']}/cancel", headers=A)).json()
    assert cancelling["status"] == "cancelling"
    final = await wait_final(client, batch["id"])
    assert final["status"] == "cancelled" and asyncio.get_running_loop().time() - asked < 1.0
    ran = sum(SlowAdapter.batches)
    await asyncio.sleep(0.5)
    assert sum(SlowAdapter.batches) == ran  # nothing more runs
    done = final["request_counts"]["completed"]
    assert 40 <= done < 200 and done % 40 == 0
    out = (await (await client.get(f"/v1/files/{final['output_file_id']}/content", headers=A)).read()).splitlines()
    assert [json.loads(x)["custom_id"] for x in out] == [f"req-{i}" for i in range(done)]


def _plugin(client):
    from core.http import GATEWAY

    return client.app[GATEWAY].pm.get_plugin("plugins.batches")


async def test_a_job_past_its_window_ends_expired_with_its_unfinished_lines_in_the_error_file(slow_client):
    client = slow_client
    rows = [{**line(i, model="slow"), "body": {"model": "slow", "input": f"text {i}"}} for i in range(120)]
    file = await (await upload(client, jsonl(rows))).json()
    batch = await (await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                          "completion_window": "24h"}, headers=A)).json()
    await _plugin(client).store.update(batch["id"], lambda job: {**job, "expires_at": job["created_at"] - 1})
    final = await wait_final(client, batch["id"])
    assert final["status"] == "expired" and final["expired_at"]
    done = final["request_counts"]["completed"]
    errors = (await (await client.get(f"/v1/files/{final['error_file_id']}/content", headers=A)).read()).splitlines()
    expired = [json.loads(x) for x in errors]
    assert len(expired) == 120 - done and all(e["error"]["code"] == "batch_expired" for e in expired)


async def test_the_disk_budget_refuses_an_upload_clearly(aiohttp_client, tmp_path):
    settings = write_configs(tmp_path / "configs", auth=KEYS,
                             environ={"ROUTER_BATCH_DIR": str(tmp_path / "batches"), "ROUTER_BATCH_MAX_GB": "0.001"})
    client = await serve(aiohttp_client, settings)
    data = jsonl([{**line(i % 9), "custom_id": f"req-{i}"} for i in range(3000)])  # about 0.4 MB
    assert 300_000 < len(data) < 500_000
    first = await upload(client, data)
    assert first.status == 200, await first.text()
    assert (await upload(client, data)).status == 200
    refused = await upload(client, data)
    assert refused.status == 413
    body = (await refused.json())["error"]
    assert body["code"] == "batch_storage_full" and "ROUTER_BATCH_MAX_GB" in body["message"]
    assert [p.name for p in (tmp_path / "batches" / "files").iterdir() if p.name.startswith(".")] == []


async def test_files_past_retention_are_deleted(client):
    from plugins.batches.retention import sweep

    file = await (await upload(client, jsonl([line(0)]))).json()
    plugin = _plugin(client)
    files = plugin.runner.files
    assert await sweep(files, plugin.store, 3600, ["team-a"]) == 0
    meta = files.read_meta(file["id"])
    (files.files / f"{file['id']}.json").write_text(json.dumps({**meta, "expires_at": meta["created_at"] - 1}))
    assert await sweep(files, plugin.store, 3600, ["team-a"]) == 1
    assert (await client.get(f"/v1/files/{file['id']}", headers=A)).status == 404


async def test_the_state_file_is_read_once_before_anything_is_written(tmp_path):
    from plugins.batches.store import LocalJobStore

    first = LocalJobStore(tmp_path)
    await first.create({"id": "batch_a", "owner": "o", "status": "in_progress", "created_at": 1})
    again = LocalJobStore(tmp_path)  # a restart: reads and a new job arrive together
    found, _ = await asyncio.gather(again.active(),
                                    again.create({"id": "batch_b", "owner": "o", "status": "validating",
                                                  "created_at": 2}))
    assert sorted(await again.active()) == ["batch_a", "batch_b"]
    assert sorted(await LocalJobStore(tmp_path).active()) == ["batch_a", "batch_b"]
    assert found in (["batch_a"], ["batch_a", "batch_b"])


async def test_cohere_v2_embed_lines_run_as_a_job_of_their_own_endpoint(client):
    rows = [{"custom_id": f"c{i}", "method": "POST", "url": "/v2/embed",
             "body": {"model": "echo-emb", "texts": [f"text {i}"],
                      "embedding_types": ["float"]}} for i in range(5)]
    file = await (await upload(client, jsonl(rows))).json()
    wrong = await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                   "completion_window": "24h"}, headers=A)
    assert wrong.status == 400 and "/v2/embed" in (await wrong.json())["error"]["message"]
    made = await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v2/embed",
                                                  "completion_window": "24h"}, headers=A)
    batch = await wait_final(client, (await made.json())["id"])
    errors = await client.get(f"/v1/files/{batch['error_file_id']}/content", headers=A) \
        if batch["error_file_id"] else None
    assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}, await errors.text()
    out = [json.loads(x) for x in (await (await client.get(
        f"/v1/files/{batch['output_file_id']}/content", headers=A)).read()).splitlines()]
    for row, answer in zip(rows, out, strict=True):
        sync = await (await client.post("/v2/embed", json=row["body"], headers=A)).json()
        assert answer["response"]["body"]["embeddings"] == sync["embeddings"]


async def test_a_job_is_charged_to_its_keys_quota_and_usage_and_stops_at_the_quota(aiohttp_client, tmp_path):
    """Lines count as the key's requests and tokens (GET /v1/usage); once the day's quota is spent
    the remaining lines go to the error file with the quota's 429, uncharged."""
    limits = {"per_api_key": {"team-b": {"quota": {"requests_per_day": 10}}}}
    settings = write_configs(tmp_path / "configs", auth=KEYS, limits=limits,
                             environ={"ROUTER_BATCH_DIR": str(tmp_path / "batches"), "ROUTER_BATCH_CHUNK_LINES": "7"})
    client = await serve(aiohttp_client, settings)
    for headers, lines in ((A, 5), (B, 20)):
        file = await (await upload(client, jsonl([line(i) for i in range(lines)]), headers=headers)).json()
        created = await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                         "completion_window": "24h"}, headers=headers)
        batch = await wait_final(client, (await created.json())["id"], headers=headers)
        usage = await (await client.get("/v1/usage", headers=headers)).json()
        day = next(p for p in usage["periods"] if p["period"] == "day")
        done = batch["request_counts"]["completed"]
        assert day["requests"]["used"] == done and day["tokens"]["used"] > 0
        if headers is A:  # no quota: every line done and counted
            assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
            continue
        assert done in (6, 7) and batch["request_counts"]["failed"] == 20 - done  # one chunk fits in 10
        errors = [json.loads(x) for x in (await (await client.get(
            f"/v1/files/{batch['error_file_id']}/content", headers=B)).read()).splitlines()]
        assert {(e["response"]["status_code"], e["response"]["body"]["error"]["code"]) for e in errors} == {
            (429, "quota_exceeded")}


async def test_the_admission_window_holds_at_most_its_size_in_flight_as_it_grows_and_shrinks():
    """Hundreds of a chunk's lines wait at the window (a semaphore: a line that leaves wakes one
    waiter, not all of them): never more are in flight than the window's size at the time, places
    it gains as it grows are used, and after it halves the places out come back only down to the
    new size."""
    from plugins.batches.window import LOWEST, AdmissionWindow

    window = AdmissionWindow(start=8)
    most = 0

    async def line(grow: bool) -> None:
        nonlocal most
        async with window:
            assert window.in_flight <= int(window.size)
            most = max(most, window.in_flight)
            await asyncio.sleep(0)
            if grow:
                window.admitted()  # the window grows by 8 / size a line: 8 -> 9 after about 8 lines

    await asyncio.wait_for(asyncio.gather(*(line(True) for _ in range(400))), 10)
    assert window.in_flight == 0 and most >= 9
    window.size = 2 * LOWEST
    await asyncio.wait_for(asyncio.gather(*(line(False) for _ in range(200))), 10)  # places grow to 64
    window.refused()  # 64 -> 32
    most = 0
    await asyncio.wait_for(asyncio.gather(*(line(False) for _ in range(200))), 10)
    assert window.in_flight == 0 and most == int(LOWEST)


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data", b"garbage"),
    ("multipart/form-data; boundary=xyz", b"no boundary here"),
    ("multipart/form-data; boundary=xyz", b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\ncut short'),
])
async def test_a_malformed_upload_is_a_400_not_a_500(client, content_type, body):
    answer = await client.post("/v1/files", data=body, headers={**A, "Content-Type": content_type})
    assert answer.status == 400, await answer.text()
    assert (await answer.json())["error"]["type"] == "invalid_request_error"
    assert (await (await client.get("/health/live")).read())  # and the router goes on


def _split_plugin():
    """``split``: a model the scheduler batches across requests (as the in-process embedder), each
    text's vector a digest of the text alone (batch-invariant, as the in-process embedder is)."""
    import hashlib

    import numpy as np

    from core.adapters import Adapter, Batching, EmbedResult

    class Split(Adapter):
        def batching(self, route):
            return Batching(max_in_flight=1, split=True, max_batch_size=16)

        async def embed(self, route, inputs, call):
            return EmbedResult(np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:4], np.uint8)
                                         for t in inputs], dtype=np.float32) / 255)

    class Whole(Split):  # called with each request's texts alone (an HTTP upstream's way)
        def batching(self, route):
            return Batching(max_in_flight=4, split=False)

    class Plugin:
        @hookimpl
        def register_adapters(self, register):
            register("split", Split)
            register("whole", Whole)

    return Plugin()


async def _merged_client(aiohttp_client, tmp_path, limits: dict[str, str]):
    routing = {"embeddings": [{"model": "echo-emb", "upstream": {"type": "split"}},
                              {"model": "echo-other", "upstream": {"type": "split"}},
                              {"model": "echo-whole", "upstream": {"type": "whole"}}]}
    settings = write_configs(tmp_path / "configs", auth=KEYS, routing=routing,
                             environ={"ROUTER_BATCH_DIR": str(tmp_path / "batches"), **limits})
    return await serve(aiohttp_client, settings, {"split": _split_plugin()})


def _mixed_rows(n: int) -> list[dict]:
    """Lines of a few parameter sets, one text or several, of varied lengths."""
    params = [{}, {"encoding_format": "base64"}, {"user": "u1"}, {"model": "echo-other"}, {"model": "echo-whole"}]
    rows = []
    for i in range(n):
        body = {"model": "echo-emb", **params[i % len(params)]}
        texts = [f"text {i} " + "word " * (i % 7)] + ([f"second {i}"] if i % 3 == 0 else [])
        body["input"] = texts[0] if len(texts) == 1 and i % 2 else texts
        rows.append({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/embeddings", "body": body})
    return rows


async def _run_and_compare(client, rows) -> list[dict]:
    """Run ``rows`` as a job; each line's status and body must be its synchronous answer's."""
    file = await (await upload(client, jsonl(rows))).json()
    created = await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                     "completion_window": "24h"}, headers=A)
    batch = await wait_final(client, (await created.json())["id"])
    answers = {}
    for key in ("output_file_id", "error_file_id"):
        if batch.get(key):
            content = await (await client.get(f"/v1/files/{batch[key]}/content", headers=A)).read()
            answers.update({a["custom_id"]: a for a in map(json.loads, content.splitlines())})
    assert sorted(answers) == sorted(r["custom_id"] for r in rows)
    for row in rows:
        sync = await client.post("/v1/embeddings", json=row["body"], headers=A)
        got = answers[row["custom_id"]]["response"]
        assert got["status_code"] == sync.status, row
        assert got["body"] == await sync.json(), row
    return [answers[r["custom_id"]] for r in rows]


async def test_lines_of_one_model_and_parameters_run_as_one_request_each_answered_as_alone(aiohttp_client, tmp_path):
    """Lines whose bodies differ only in their texts go through the chain and the model together
    (they share a request id), and each line's answer (vectors, usage) is its synchronous one; a
    line over a limit fails alone, with the synchronous error, and its neighbours are answered."""
    client = await _merged_client(aiohttp_client, tmp_path, {"ROUTER_DOCUMENT_TOKEN_LIMIT": "12"})
    rows = _mixed_rows(40)
    rows[10]["body"]["input"] = ["too long " * 20]  # over the document limit: a 413 of its own
    answers = await _run_and_compare(client, rows)
    assert [k for k, a in enumerate(answers) if a["response"]["status_code"] != 200] == [10]  # 413
    by_request: dict[str, set[str]] = {}
    for row, answer in zip(rows, answers, strict=True):
        params = json.dumps({k: v for k, v in row["body"].items() if k != "input"}, sort_keys=True)
        by_request.setdefault(answer["response"]["request_id"], set()).add(params)
    assert len(by_request) < len(rows)  # lines were merged
    assert all(len(params) == 1 for params in by_request.values())  # never lines of other parameters
    whole = [a for r, a in zip(rows, answers, strict=True) if r["body"]["model"] == "echo-whole"]
    assert len({a["response"]["request_id"] for a in whole}) == len(whole)  # a model called whole: alone


async def test_merged_lines_over_the_request_limit_together_run_alone(aiohttp_client, tmp_path):
    """Together over ROUTER_SAFE_REQUEST_TOKEN_LIMIT, each line under it: each runs alone and is
    answered as synchronously."""
    client = await _merged_client(aiohttp_client, tmp_path, {"ROUTER_SAFE_REQUEST_TOKEN_LIMIT": "20"})
    rows = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/embeddings",
             "body": {"model": "echo-emb", "input": f"text number {i}"}} for i in range(12)]
    answers = await _run_and_compare(client, rows)
    assert all(a["response"]["status_code"] == 200 for a in answers)
    assert len({a["response"]["request_id"] for a in answers}) == len(rows)


async def _thirty_line_job(client) -> dict:
    """Thirty lines (five chunks of seven) run as a job to its end."""
    file = await (await upload(client, jsonl([line(i) for i in range(30)]))).json()
    batch = await (await client.post("/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/embeddings",
                                                          "completion_window": "24h"}, headers=A)).json()
    return await wait_final(client, batch["id"])


async def _output(client, final: dict) -> list[bytes]:
    return (await (await client.get(f"/v1/files/{final['output_file_id']}/content", headers=A)).read()).splitlines()


async def test_a_chunk_done_by_another_worker_between_its_read_and_the_claim_is_not_run_again(client):
    # Another replica takes each chunk first, runs it to the end and lets it go, all between this
    # replica's read of the done chunks and its own claim: the claim then succeeds on a done chunk.
    plugin = _plugin(client)
    store, runner = plugin.store, plugin.runner
    real_claim, real_run = store.claim, runner._run_chunk
    taken, runs = set(), []

    async def run_chunk(job, k, holder):
        runs.append(k)
        await real_run(job, k, holder)

    async def claim(batch_id, k, holder, lease_s):
        if isinstance(k, int) and k >= 0 and k not in taken:
            taken.add(k)
            assert await real_claim(batch_id, k, "another", lease_s)
            await run_chunk(await store.get(batch_id), k, "another")
            await store.release(batch_id, k, "another")
        return await real_claim(batch_id, k, holder, lease_s)

    store.claim, runner._run_chunk = claim, run_chunk
    final = await _thirty_line_job(client)
    assert final["status"] == "completed" and final["request_counts"]["completed"] == 30
    assert sorted(runs) == list(range(5))  # 30 lines in chunks of 7: each chunk ran once
    out = await _output(client, final)
    assert sorted(json.loads(x)["custom_id"] for x in out) == sorted(f"req-{i}" for i in range(30))


async def test_a_chunk_whose_claim_was_taken_while_it_ran_is_neither_charged_nor_written_by_the_loser(
        client, monkeypatch):
    # Each chunk's first claim is taken by another while its lines run (the renew before writing
    # says so; the watch, which renews too, is kept asleep): that run charges and writes nothing,
    # and the chunk is charged and written once, by the run that holds its claim.
    import plugins.batches.runner as runner

    monkeypatch.setattr(runner, "WATCH_S", 60.0)
    real_charge = runner.charge_chunk
    charged = []

    async def charge_chunk(gw, owner, tokens, lines):
        charged.append(lines)
        await real_charge(gw, owner, tokens, lines)

    monkeypatch.setattr(runner, "charge_chunk", charge_chunk)
    plugin = _plugin(client)
    store = plugin.store
    real_renew, real_done = store.renew, store.chunk_done
    lost, written = set(), []

    async def renew(batch_id, k, holder, lease_s):
        if k not in lost:
            lost.add(k)
            return False
        return await real_renew(batch_id, k, holder, lease_s)

    async def chunk_done(batch_id, k, completed, failed, run):
        written.append(k)
        return await real_done(batch_id, k, completed, failed, run)

    store.renew, store.chunk_done = renew, chunk_done
    final = await _thirty_line_job(client)
    assert final["status"] == "completed" and final["request_counts"]["completed"] == 30
    assert sorted(lost) == list(range(5)) and sorted(written) == list(range(5))
    assert sum(charged) == 30  # each line charged once


def _another_run_writes_first(client, run: str, *, records: bool):
    """Before each chunk's run records it, another run of the chunk (``run``) writes its parts (an
    output line ``<run>-<k>`` and an error line) and, with ``records``, records the chunk first."""
    import plugins.batches.jobs as job_files

    plugin = _plugin(client)
    real_done = plugin.store.chunk_done

    async def chunk_done(batch_id, k, completed, failed, own):
        lines = [b'{"custom_id": "%s-%d"}\n' % (run.encode(), k)]
        job_files.write_parts(plugin.runner.files.jobs / batch_id, k, lines, lines, run)
        if records:
            assert await real_done(batch_id, k, 1, 1, run)
        return await real_done(batch_id, k, completed, failed, own)

    plugin.store.chunk_done = chunk_done
    return plugin


async def test_two_runs_of_one_chunk_writing_at_once_leave_one_runs_lines_whole(client):
    # A run whose claim was taken over while it wrote (a 30 s stall) writes its parts beside the
    # taker's: each run's parts are its own, and the output holds the recorded run's lines only.
    _another_run_writes_first(client, "stale", records=False)
    final = await _thirty_line_job(client)
    assert final["status"] == "completed" and final["error_file_id"] is None
    out = await _output(client, final)
    assert [json.loads(x)["custom_id"] for x in out] == [f"req-{i}" for i in range(30)]


async def test_chunks_recorded_before_parts_were_named_by_run_are_read_by_their_old_names(tmp_path):
    # chunk 0 recorded by a version before runs (no run), chunk 1 after
    import plugins.batches.jobs as job_files
    from plugins.batches.store import Done, LocalJobStore

    state = {"jobs": {}, "results": {"batch_x": {"0": [5, 1], "1": [2, 0]}}, "runs": {"batch_x": {"1": "ab12"}}}
    (tmp_path / "state.json").write_text(json.dumps(state))
    results = await LocalJobStore(tmp_path).results("batch_x")
    assert results == {0: Done(5, 1, ""), 1: Done(2, 0, "ab12")}
    assert job_files.part(tmp_path, 0, "out", results[0].run).name == "000000.out.jsonl"
    assert job_files.part(tmp_path, 1, "err", results[1].run).name == "000001.ab12.err.jsonl"


async def test_a_run_recorded_after_another_run_of_its_chunk_drops_its_parts_and_the_first_stands(client):
    plugin = _another_run_writes_first(client, "first", records=True)
    final = await _thirty_line_job(client)
    assert final["status"] == "completed" and final["request_counts"] == {"total": 30, "completed": 5, "failed": 5}
    out = await _output(client, final)
    assert [json.loads(x)["custom_id"] for x in out] == [f"first-{k}" for k in range(5)]
    parts = sorted(p.name for p in (plugin.runner.files.jobs / final["id"]).glob("0*.jsonl"))
    assert parts == sorted(f"{k:06d}.first.{kind}.jsonl" for k in range(5) for kind in ("out", "err"))

"""Quotas per key over the UTC day and month, in process: the periods, the config, the refusal in
every wire format, refunds, and ``GET /v1/usage`` (each key sees only its own figures)."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import ConfigError, UpstreamError
from core.gateway import Gateway
from plugins.rate_limit.quota import QUOTA_METER
from plugins.rate_limit.quota.periods import current, iso
from tests.support.inprocess import echo_plugin_manager, serve, write_configs

ROUTING = {
    "defaults": {"embeddings": "echo-emb", "rerank": "echo-rerank"},
    # token ids read as they are: a request of n ids is n tokens, exactly
    "embeddings": [{"model": "echo-emb", "upstream": {"type": "echo", "dim": 4}, "token_ids": "model",
                    "max_input_tokens": 64, "prompts": {"query": "query: ", "document": "passage: "}}],
    "rerank": [{"model": "echo-rerank", "upstream": {"type": "echo"}, "max_input_tokens": 64}],
}
KEYS = {"api_keys": [{"name": "capped", "key": "k-capped"}, {"name": "team-a", "key": "k-a"},
                     {"name": "team-b", "key": "k-b"}, {"name": "free", "key": "k-free"}]}
LIMITS = {"per_api_key": {
    "capped": {"quota": {"tokens_per_day": 1}},
    "team-a": {"quota": {"tokens_per_day": 10, "tokens_per_month": 100, "requests_per_month": 50}},
    "team-b": {"capacity": 100, "refill_rate": 10, "quota": {"tokens_per_day": 1000, "requests_per_day": 3}},
}}


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- periods -------------------------------------------------------------------------------------

def test_the_day_runs_from_utc_midnight_to_the_next():
    day, month = current(_at(2026, 12, 4, 23, 59, 59))
    assert (iso(day.start), iso(day.end)) == ("2026-12-04T00:00:00Z", "2026-12-05T00:00:00Z")
    assert day.id == "d2026-12-04" and month.id == "m2026-12"
    assert day.seconds_left(_at(2026, 12, 4, 23, 59, 59)) == 1
    assert current(_at(2026, 12, 5))[0].id == "d2026-12-05"  # midnight belongs to the new day


def test_a_time_in_another_zone_counts_in_utc():
    from datetime import timedelta, timezone

    moscow = datetime(2026, 12, 5, 1, 30, tzinfo=timezone(timedelta(hours=3)))  # 22:30 UTC on the 4th
    assert current(moscow)[0].id == "d2026-12-04"
    assert current(1796342400.0)[0].id == "d2026-12-04"  # Unix seconds: 2026-12-04T00:00:00Z
    assert current(1796342399.0)[0].id == "d2026-12-03"
    with pytest.raises(ValueError):
        current(datetime(2026, 12, 4))  # naive: no zone to read it in


@pytest.mark.parametrize("now, start, end", [
    (_at(2026, 12, 31, 23, 0), "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),  # December → January
    (_at(2027, 1, 1), "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"),
    (_at(2028, 2, 29, 12), "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),  # leap year
    (_at(2027, 2, 28, 12), "2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z"),
    (_at(2026, 4, 30, 23, 59, 59), "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"),
])
def test_the_month_is_the_calendar_month(now, start, end):
    month = current(now)[1]
    assert (iso(month.start), iso(month.end)) == (start, end)


def test_leap_day_and_new_year_are_days_of_their_own():
    leap = current(_at(2028, 2, 29, 5))[0]
    assert (leap.id, iso(leap.end)) == ("d2028-02-29", "2028-03-01T00:00:00Z")
    eve = current(_at(2026, 12, 31, 23, 59, 59, 999999))[0]
    assert iso(eve.end) == "2027-01-01T00:00:00Z"
    assert eve.seconds_left(_at(2026, 12, 31, 12)) == 12 * 3600


# --- the meter, on a clock of the test's -----------------------------------------------------------

class _Snapshot:
    """What the meter reads of a snapshot: the keys' quotas and the flags."""

    def __init__(self, **specs):
        from types import SimpleNamespace

        self.files = SimpleNamespace(auth=None, rate_limits=SimpleNamespace(resolve=lambda section, auth: (specs, [])))

    def flag(self, name):
        return False


def _meter(at: list[float]):
    from plugins.rate_limit.quota.meter import QuotaMeter
    from plugins.rate_limit.quota.store import MemoryQuotaStore

    return QuotaMeter(MemoryQuotaStore(clock=lambda: at[0]), clock=lambda: at[0])


async def test_retry_after_is_the_reset_of_the_period_that_is_spent():
    from core.errors import QuotaExceeded
    from plugins.rate_limit.quota.limits import QuotaSpec

    at = [_at(2026, 12, 15, 12).timestamp()]
    meter, snap = _meter(at), _Snapshot(k=QuotaSpec(tokens_per_day=10, tokens_per_month=25))
    assert await meter.charge(snap, "k", 10) is not None
    with pytest.raises(QuotaExceeded) as day:
        await meter.charge(snap, "k", 1)
    assert day.value.retry_after == 12 * 3600 and day.value.headers["Retry-After"] == str(12 * 3600)
    assert day.value.code == "quota_exceeded" and day.value.status == 429
    at[0] = _at(2026, 12, 16, 0).timestamp()  # midnight: a new day, the same month
    assert await meter.charge(snap, "k", 10) is not None
    at[0] = _at(2026, 12, 17, 6).timestamp()
    with pytest.raises(QuotaExceeded) as month:
        await meter.charge(snap, "k", 6)  # fits the day (0 + 6), not the month (20 + 6 > 25)
    left = _at(2027, 1, 1).timestamp() - at[0]  # December's reset is the first of January
    assert month.value.retry_after == left and month.value.headers["retry-after-ms"] == str(int(left * 1000))
    assert "25 tokens per month" in month.value.message and "2027-01-01T00:00:00Z" in month.value.message
    assert await meter.charge(snap, "k", 5) is not None  # exactly the rest of the month
    at[0] = _at(2027, 1, 1).timestamp()
    assert await meter.charge(snap, "k", 10) is not None  # January: both periods anew


async def test_a_settled_ticket_corrects_to_the_billed_tokens_or_gives_all_back():
    from plugins.rate_limit.quota.limits import QuotaSpec

    at = [_at(2028, 2, 29, 23).timestamp()]
    meter, snap = _meter(at), _Snapshot(k=QuotaSpec(requests_per_day=5))
    first = await meter.charge(snap, "k", 7)
    meter.settle(first, 9)  # the answer billed 9
    second = await meter.charge(snap, "k", 3)
    meter.settle(second, None)  # no answer: given back
    meter.record("other", 4)
    await meter.flush()
    day, month = await meter.usage(snap, "k")
    assert (day.used.tokens, day.used.requests) == (9, 1) and (month.used.tokens, month.used.requests) == (9, 1)
    assert day.period.id == "d2028-02-29" and [u.used.tokens for u in await meter.usage(snap, "other")] == [4, 4]


# --- config --------------------------------------------------------------------------------------

@pytest.mark.parametrize("quota, complaint", [
    ({"tokens_per_day": 0}, "positive whole number"),
    ({"tokens_per_day": -5}, "positive whole number"),
    ({"tokens_per_month": 1.5}, "whole number"),
    ({"requests_per_day": True}, "whole number"),
    ({"tokens_per_week": 10}, "unknown field 'tokens_per_week'"),
    ({}, "sets no limit"),
    ({"fail_open": True}, "sets no limit"),
    ({"tokens_per_day": 10, "fail_open": "yes"}, "fail_open"),
    ("lots", "must be a mapping"),
])
def test_a_bad_quota_is_refused_naming_file_and_line(tmp_path, quota, complaint):
    settings = write_configs(tmp_path, routing=ROUTING, auth=KEYS, limits={"per_api_key": {"team-a": {"quota": quota}}})
    with pytest.raises(ConfigError) as err:
        Gateway(settings, echo_plugin_manager()).validate()
    assert complaint in str(err.value) and err.value.file.endswith("rate_limits.yaml") and err.value.line


def test_a_quota_beside_a_bucket_leaves_the_bucket_as_it_was(tmp_path):
    settings = write_configs(tmp_path, routing=ROUTING, auth=KEYS, limits=LIMITS)
    files = Gateway(settings, echo_plugin_manager()).validate()
    quotas = files.rate_limits.resolve("quota", files.auth)[0]
    buckets = files.rate_limits.resolve("buckets", files.auth)[0]
    assert set(quotas) == {"capped", "team-a", "team-b"} and set(buckets) == {"team-b"}
    assert quotas["team-a"].tokens_per_month == 100 and quotas["team-a"].requests_per_day is None
    assert buckets["team-b"].capacity == 100


# --- requests ------------------------------------------------------------------------------------

@pytest.fixture
async def client(aiohttp_client, tmp_path):
    return await serve(aiohttp_client, write_configs(tmp_path, routing=ROUTING, auth=KEYS, limits=LIMITS))


def _key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer k-{name.removeprefix('team-')}"}


async def _embed(client, key: str, tokens: int):
    return await client.post("/v1/embeddings", json={"model": "echo-emb", "input": [list(range(1, tokens + 1))]},
                             headers=_key(key))


async def _usage(client, key: str) -> dict:
    await client.app[QUOTA_METER].flush()
    resp = await client.get("/v1/usage", headers=_key(key))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    return await resp.json()


REFUSED = [
    ("/v1/embeddings", {"model": "echo-emb", "input": "a longer text"}, "openai"),
    ("/embeddings", {"model": "echo-emb", "input": "a longer text"}, "openai"),
    ("/v1/embed", {"model": "echo-emb", "texts": ["a longer text"], "input_type": "search_query"}, "cohere"),
    ("/v2/embed", {"model": "echo-emb", "texts": ["a longer text"], "input_type": "search_query",
                   "embedding_types": ["float"]}, "cohere"),
    ("/embed", {"inputs": "a longer text"}, "openai"),
    ("/v1/rerank", {"model": "echo-rerank", "query": "a question", "documents": ["one text", "another"]}, "openai"),
    ("/v2/rerank", {"model": "echo-rerank", "query": "a question", "documents": ["one text", "another"]}, "cohere"),
    ("/rerank", {"query": "a question", "texts": ["one text", "another"]}, "openai"),
]


@pytest.mark.parametrize("path, body, shape", REFUSED, ids=[p for p, _, _ in REFUSED])
async def test_over_quota_is_a_429_quota_exceeded_in_the_paths_shape(client, path, body, shape):
    resp = await client.post(path, json=body, headers=_key("capped"))
    answer = await resp.json()
    assert resp.status == 429, answer
    midnight = current()[0].seconds_left(datetime.now(UTC))
    assert abs(int(resp.headers["Retry-After"]) - math.ceil(midnight)) <= 2  # at the day's reset
    assert abs(int(resp.headers["retry-after-ms"]) / 1000 - midnight) <= 2  # exact: no jitter on a reset
    assert resp.headers["x-should-retry"] == "false"
    if shape == "cohere":
        assert set(answer) == {"message"}
        message = answer["message"]
    else:
        assert answer["error"]["code"] == "quota_exceeded" and answer["error"]["type"] == "rate_limit_error"
        message = answer["error"]["message"]
    assert "Quota exceeded for key 'capped'" in message and "1 tokens per day" in message
    assert "k-capped" not in message and "k-capped" not in str(dict(resp.headers))
    print(f"\n{path}: {resp.status} Retry-After={resp.headers['Retry-After']} "
          f"x-should-retry={resp.headers['x-should-retry']} body={answer}")


async def test_the_quota_is_spent_exactly_and_refused_past_it(client):
    statuses = [(await _embed(client, "team-a", 3)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # 9 of 10 tokens; 3 more would pass the day's 10
    assert (await _embed(client, "team-a", 1)).status == 200  # the last token fits
    assert (await _embed(client, "team-a", 1)).status == 429
    day, month = (await _usage(client, "team-a"))["periods"]
    assert day["tokens"] == {"used": 10, "limit": 10, "remaining": 0}
    assert month["tokens"] == {"used": 10, "limit": 100, "remaining": 90}
    assert month["requests"] == {"used": 4, "limit": 50, "remaining": 46}  # refused requests cost nothing
    assert day["requests"] == {"used": 4, "limit": None, "remaining": None}


async def test_a_request_quota_counts_requests(client):
    assert [(await _embed(client, "team-b", 1)).status for _ in range(4)] == [200, 200, 200, 429]


async def test_usage_shows_each_key_only_its_own(client):
    await _embed(client, "team-a", 2)
    for _ in range(2):
        await _embed(client, "team-b", 5)
    a, b = await _usage(client, "team-a"), await _usage(client, "team-b")
    assert a["object"] == "usage" and a["key"] == "team-a" and b["key"] == "team-b"
    assert [p["tokens"]["used"] for p in a["periods"]] == [2, 2]
    assert [p["tokens"]["used"] for p in b["periods"]] == [10, 10]
    assert [p["requests"]["used"] for p in b["periods"]] == [2, 2]
    day, month = a["periods"]
    assert (day["period"], month["period"]) == ("day", "month")
    today, this_month = current()
    assert (day["start"], day["resets_at"]) == (iso(today.start), iso(today.end))
    assert (month["start"], month["resets_at"]) == (iso(this_month.start), iso(this_month.end))
    assert "team-b" not in str(a) and "team-a" not in str(b)


async def test_a_key_without_a_quota_still_sees_its_usage(client):
    await _embed(client, "free", 4)
    await client.post("/v1/rerank", json={"model": "echo-rerank", "query": "q", "documents": ["a", "b"]},
                      headers=_key("free"))
    body = await _usage(client, "free")
    for period in body["periods"]:
        assert period["requests"] == {"used": 2, "limit": None, "remaining": None}
        assert period["tokens"]["used"] > 4 and period["tokens"]["limit"] is None  # rerank tokens counted too


async def test_usage_needs_a_key(client, aiohttp_client, tmp_path):
    assert (await client.get("/v1/usage")).status == 401
    assert (await client.get("/v1/usage", headers={"Authorization": "Bearer nope"})).status == 401
    anonymous = await serve(aiohttp_client, write_configs(tmp_path / "open", routing=ROUTING))
    resp = await anonymous.get("/v1/usage")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "missing_api_key"


class _FailAfterCharge:
    """A stage after the quota's charge that fails the request before the model runs."""

    name = "fail_after_charge"

    async def __call__(self, flow):
        if flow.headers.get("X-Fail"):
            raise UpstreamError("the upstream is down")


async def test_a_request_that_gets_no_answer_is_given_its_charge_back(aiohttp_client, tmp_path):
    from core import hookimpl

    class Failing:
        @hookimpl
        def register_stages(self, register):
            register(_FailAfterCharge(), after="token_budget")

    pm = echo_plugin_manager()
    pm.register(Failing(), name="failing")
    from core.app import create_app
    from core.http import GATEWAY

    app = create_app(write_configs(tmp_path, routing=ROUTING, auth=KEYS, limits=LIMITS), pm)
    client = await aiohttp_client(app)
    while not app[GATEWAY].ready:
        await asyncio.sleep(0.01)
    body = {"model": "echo-emb", "input": [[1, 2, 3, 4]]}
    failed = await client.post("/v1/embeddings", json=body, headers={**_key("team-a"), "X-Fail": "1"})
    assert failed.status == 502
    assert (await client.post("/v1/embeddings", json=body, headers=_key("team-a"))).status == 200
    day, month = (await _usage(client, "team-a"))["periods"]
    assert day["tokens"]["used"] == 4 and month["requests"]["used"] == 1  # as Prometheus bills: answered only


def test_the_documented_quota_example_is_a_valid_config(tmp_path):
    import re

    import yaml

    from tests.support.processes import ROOT

    section = (ROOT / "OPERATIONS.md").read_text().split("## Quotas", 1)[1]
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    sample = (ROOT / "configs" / "rate_limits.yaml").read_text()
    block = sample[sample.index("# per_api_key:"):sample.index("\nper_api_key:")]
    commented = yaml.safe_load("\n".join(line[2:] for line in block.splitlines()))
    for limits in (example, commented):
        auth = {"api_keys": [{"name": "team-search", "key": "k-search"}]}
        files = Gateway(write_configs(tmp_path, routing=ROUTING, auth=auth, limits=limits),
                        echo_plugin_manager()).validate()
        quota = files.rate_limits.resolve("quota", files.auth)[0]["team-search"]
        assert quota.tokens_per_day == 2000000 and quota.tokens_per_month == 40000000


async def test_a_reload_changes_the_limits_and_keeps_the_counts(client, tmp_path):
    from tests.support.configs import write_yaml
    from tests.support.inprocess import gateway_of

    assert [(await _embed(client, "team-a", 5)).status for _ in range(3)] == [200, 200, 429]
    gateway = gateway_of(client)
    raised = {"per_api_key": {**LIMITS["per_api_key"], "team-a": {"quota": {"tokens_per_day": 15}}}}
    write_yaml(Path(gateway.settings.rate_limits_path), raised)
    await gateway.load()
    assert [(await _embed(client, "team-a", 5)).status for _ in range(2)] == [200, 429]  # 10 used, 15 allowed
    day, month = (await _usage(client, "team-a"))["periods"]
    assert day["tokens"] == {"used": 15, "limit": 15, "remaining": 0}
    assert month["tokens"] == {"used": 15, "limit": None, "remaining": None}  # the month's limit was dropped

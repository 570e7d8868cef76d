"""The work of one request, held to a budget: the way Django's ``assertNumQueries`` guards queries.

One embeddings call (one input, idle model, no cache, one key, token bucket on) and one rerank
call go through the whole router on the ``echo`` adapter; the calls they make into the project's
own code are counted (``tests.support.calls``) and held against ``tests/call_budget.json``. A
change that adds calls to the common path fails here, with the functions that grew; a change
that makes it leaner passes with a warning until the budget is lowered. Both are one command:

    MAAS_CALL_BUDGET_UPDATE=1 .venv/bin/python -m pytest -q tests/test_call_budget.py

which rewrites the budget from this checkout (commit it with the change that moved it). Counts
are exact, not timings: they do not depend on the machine or its load. Timings stay in bench/.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

from plugins.routing import RouteStage
from tests.support.calls import count_requests, per_module

BUDGET = Path(__file__).with_name("call_budget.json")
UPDATE = "MAAS_CALL_BUDGET_UPDATE"
REGENERATE = f"{UPDATE}=1 .venv/bin/python -m pytest -q tests/test_call_budget.py"

pytestmark = pytest.mark.skipif(sys.getprofile() is not None, reason="another profiler is set (the counts need it)")


def budget_of(counts: dict[str, Counter[str]]) -> dict:
    return {"about": f"Calls into core/, plugins/ and adapters/ of one request (tests/test_call_budget.py). "
                     f"Regenerate: {REGENERATE}",
            "python": ".".join(platform.python_version_tuple()[:2]),
            **{kind: {"total": sum(c.values()), "modules": per_module(c), "functions": dict(sorted(c.items()))}
               for kind, c in counts.items()}}


def over_budget(budget: dict, counts: dict[str, Counter[str]]) -> list[str]:
    """What grew past the budget: per request kind, the total or a module's count, with every
    function whose count moved (an empty list: within budget)."""
    found: list[str] = []
    for kind, now in counts.items():
        held = budget.get(kind, {"total": 0, "modules": {}, "functions": {}})
        total = sum(now.values())
        modules = per_module(now)
        grown = [m for m, n in modules.items() if n > held["modules"].get(m, 0)]
        if total <= held["total"] and not grown:
            continue
        lines = [f"{kind}: {total} calls, budget {held['total']} ({total - held['total']:+d}); "
                 f"modules over budget: {', '.join(grown) or 'none'}"]
        before = Counter(held["functions"])
        for fn in sorted(set(before) | set(now)):
            if now[fn] != before[fn]:
                lines.append(f"  {now[fn] - before[fn]:+4d}  {fn}  ({before[fn]} → {now[fn]})")
        found.append("\n".join(lines))
    return found


def under_budget(budget: dict, counts: dict[str, Counter[str]]) -> list[str]:
    return [f"{kind}: {sum(c.values())} calls, budget {budget[kind]['total']}" for kind, c in counts.items()
            if kind in budget and sum(c.values()) < budget[kind]["total"]]


async def measure(work: Path) -> dict[str, Counter[str]]:
    """Each kind's count, checked to be the same on two calls in a row (a count that varies
    means something else runs beside the request: a timer, a background task)."""
    runs = await count_requests(work)
    counts: dict[str, Counter[str]] = {}
    for kind, repeated in runs.items():
        if "(other code)" in kind:
            continue
        first, *rest = repeated
        moved = {k for again in rest for k in set(first) | set(again) if first[k] != again[k]}
        assert not moved, f"{kind}: the count differs between two identical calls: {sorted(moved)}"
        counts[kind] = first
    return counts


async def test_one_request_does_no_more_work_than_its_budget(tmp_path):
    counts = await measure(tmp_path)
    if os.environ.get(UPDATE):
        BUDGET.write_text(json.dumps(budget_of(counts), indent=1, ensure_ascii=False) + "\n")
        return
    budget = json.loads(BUDGET.read_text())
    grown = over_budget(budget, counts)
    assert not grown, ("one request does more work than its budget (tests/call_budget.json):\n"
                       + "\n".join(grown) + f"\nIf the added work belongs on every request, regenerate: {REGENERATE}")
    leaner = under_budget(budget, counts)
    if leaner:
        warnings.warn(f"the common path got leaner ({'; '.join(leaner)}): lower the budget with {REGENERATE}",
                      stacklevel=1)


async def test_the_budget_catches_one_added_call(tmp_path, monkeypatch):
    """A stage that makes one more call into the project's code is over budget, and the report
    names that function."""
    route = RouteStage.__call__

    def with_an_extra_call(self, flow):
        flow.snapshot.flag("no-such-flag")  # one call into core.snapshot on every request
        return route(self, flow)

    baseline = await measure(tmp_path / "baseline")
    monkeypatch.setattr(RouteStage, "__call__", with_an_extra_call)
    counts = await measure(tmp_path / "extra")
    grown = over_budget(budget_of(baseline), counts)
    assert len(grown) == 2  # embeddings and rerank alike
    assert all("(+1)" in g and "+1  core.snapshot:Snapshot.flag" in g for g in grown), grown
    assert not under_budget(budget_of(baseline), counts)


def test_a_leaner_path_is_within_budget_and_says_how_to_lower_it():
    budget = budget_of({"embeddings": Counter({"core.flow:Flow.parsed": 3, "core.http:json_response": 1})})
    leaner = {"embeddings": Counter({"core.flow:Flow.parsed": 2, "core.http:json_response": 1})}
    assert not over_budget(budget, leaner)
    assert under_budget(budget, leaner) == ["embeddings: 3 calls, budget 4"]
    moved = {"embeddings": Counter({"core.flow:Flow.parsed": 2, "core.http:json_response": 2})}
    [report] = over_budget(budget, moved)  # same total, but one module grew: a change to look at
    assert "modules over budget: core.http" in report and "+1  core.http:json_response  (1 → 2)" in report

"""The request path's lock-free series export exactly what prometheus_client's own would."""

from __future__ import annotations

import random
import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.metric_series import LoopCounter, LoopGauge, LoopHistogram

BOUNDS = (0.0005, 0.001, 0.0025, 0.01, 0.5, 1, 2.5, 60)


def _exposition(counter_cls, histogram_cls, gauge_cls, ops: list[tuple]) -> str:
    registry = CollectorRegistry()
    counter = counter_cls("t_requests_total", "requests", ["endpoint", "status"], registry=registry)
    histogram = histogram_cls("t_seconds", "latency", ["endpoint"], buckets=BOUNDS, registry=registry)
    gauge = gauge_cls("t_inflight", "in flight", registry=registry)
    for op in ops:
        if op[0] == "inc":
            counter.labels(endpoint=op[1], status=op[2]).inc(op[3])
        elif op[0] == "observe":
            histogram.labels(op[1]).observe(op[2])
        else:  # the gauge: "up" or "down"
            (gauge.inc if op[0] == "up" else gauge.dec)()
    # the creation times differ by construction; everything else must be the same text
    return re.sub(r"(_created(\{[^}]*\})?) [0-9.e+]+", r"\1 T", generate_latest(registry).decode())


@pytest.mark.parametrize("seed", range(5))
def test_same_exposition_as_prometheus_client(seed: int) -> None:
    rng = random.Random(seed)
    values = [*BOUNDS, 0.0, 1e-9, 1e6, *(rng.uniform(0, 3) for _ in range(20))]  # bounds exactly: ``le``
    ops: list[tuple] = []
    for _ in range(300):
        kind = rng.choice(["inc", "observe", "up", "down"])
        if kind == "inc":
            ops.append(("inc", rng.choice("ab"), rng.choice(["200", "429"]), rng.choice([1, 3, 0.5])))
        elif kind == "observe":
            ops.append(("observe", rng.choice(["embeddings", "rerank"]), rng.choice(values)))
        else:
            ops.append((kind,))
    ours = _exposition(LoopCounter, LoopHistogram, LoopGauge, ops)
    theirs = _exposition(Counter, Histogram, Gauge, ops)
    assert "t_seconds_bucket" in ours and "t_requests_total{" in ours
    assert ours == theirs


def test_labels_by_position_or_name_are_one_child_and_wrong_arity_refused() -> None:
    counter = LoopCounter("u_total", "u", ["a", "b"])
    counter.labels("x", "y").inc()
    counter.labels(a="x", b="y").inc(2)
    assert counter.labels("x", "y").value == 3
    with pytest.raises(ValueError):
        counter.labels("x")
    counter.remove("x", "y")
    assert counter.labels("x", "y").value == 0

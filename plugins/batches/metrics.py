"""The bulk jobs' own Prometheus series, in the gateway's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_QUEUE_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
_CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STATES = ("validating", "in_progress", "finalizing", "cancelling")


class BatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Gauge("maas_batch_jobs", "Bulk jobs not yet final, by state (as this replica last read the "
                          "store)", ["state"], registry=registry)
        self.finished = Counter("maas_batch_jobs_finished_total", "Bulk jobs this replica finalized, by final state",
                                ["state"], registry=registry)
        self.lines = Counter("maas_batch_lines_total", "Bulk-job lines this replica ran, by result (completed, "
                             "failed)", ["result"], registry=registry)
        self.inputs = Counter("maas_batch_inputs_total", "Inputs bulk jobs embedded on this replica (its rate is the "
                              "bulk throughput)", registry=registry)
        self.chunk_seconds = Histogram("maas_batch_chunk_seconds", "Time to run one chunk of a bulk job",
                                       buckets=_CHUNK_BUCKETS, registry=registry)
        self.queue_seconds = Histogram("maas_batch_queue_seconds", "From a bulk job's creation to its start",
                                       buckets=_QUEUE_BUCKETS, registry=registry)
        for state in STATES:
            self.jobs.labels(state=state).set(0)
        for result in ("completed", "failed"):
            self.lines.labels(result=result)

    def states(self, counts: dict[str, int]) -> None:
        for state in STATES:
            self.jobs.labels(state=state).set(counts.get(state, 0))

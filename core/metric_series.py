"""Counters and histograms of the request path, counted in plain Python and exported per scrape.

``prometheus_client``'s own metrics take a lock on every increment and walk their buckets in
Python on every observation: a dozen of them a request added up to several microseconds of every
request. These series are updated on the event loop's thread only (the request path and the
scheduler run there), so a child is a plain object: an increment is one addition, an observation
one bisection. The registry reads them when ``/metrics`` is scraped (``collect``), in the same
exposition as ``prometheus_client``'s (``_total`` and ``_created``; ``_bucket``, ``_count``,
``_sum``), so names, labels and dashboards do not change.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


class CounterCell:
    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramCell:
    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # ``le``: a value on a bound counts in it
        self.sum += amount


class _Family:
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._cells: dict[tuple[str, ...], object] = {}
        if registry is not None:
            registry.register(self)  # a collector: ``collect`` and ``describe``

    def _new(self) -> object:
        raise NotImplementedError

    def _cell(self, values: tuple[str, ...]) -> object:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = self._new()
        return cell

    def labels(self, *values: str, **named: str) -> object:
        key = tuple(str(v) for v in values) if values else tuple(str(named[n]) for n in self.labelnames)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes the labels {self.labelnames}")
        return self._cell(key)

    def remove(self, *values: str) -> None:
        del self._cells[tuple(str(v) for v in values)]

    def describe(self) -> list[Metric]:  # the registry checks names with it, before any value
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError


class LoopCounter(_Family):
    """A counter family; a child is a ``CounterCell``."""

    def _new(self) -> CounterCell:
        return CounterCell()

    def labels(self, *values: str, **named: str) -> CounterCell:
        return super().labels(*values, **named)  # type: ignore[return-value]

    def inc(self, amount: float = 1.0) -> None:  # a family without labels
        self.labels().inc(amount)

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, cell in list(self._cells.items()):
            family.add_metric(values, cell.value, created=cell.created)  # type: ignore[attr-defined]
        yield family


class LoopHistogram(_Family):
    """A histogram family with fixed bucket bounds; a child is a ``HistogramCell``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float], registry: CollectorRegistry | None = None) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        super().__init__(name, documentation, labelnames, registry)

    def _new(self) -> HistogramCell:
        return HistogramCell(self.bounds)

    def labels(self, *values: str, **named: str) -> HistogramCell:
        return super().labels(*values, **named)  # type: ignore[return-value]

    def observe(self, amount: float) -> None:  # a family without labels
        self.labels().observe(amount)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for values, cell in list(self._cells.items()):
            counts, total, buckets = list(cell.counts), 0, []  # type: ignore[attr-defined]
            for edge, n in zip(edges, counts, strict=True):
                total += n
                buckets.append((edge, total))
            family.add_metric(values, buckets, cell.sum)  # type: ignore[attr-defined]
            family.samples.append(Sample(self.name + "_created", dict(zip(self.labelnames, values, strict=True)),
                                         cell.created))  # type: ignore[attr-defined]
        yield family


class LoopGauge(_Family):
    """A gauge without labels read at scrape time from a counter the loop moves (``inc``/``dec``)."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry | None = None) -> None:
        self.value = 0.0
        super().__init__(name, documentation, (), registry)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        family.add_metric((), self.value)
        yield family

"""Prometheus metrics: HTTP traffic, queries, data sizes; shared across worker processes.

With several workers, prometheus_client's multiprocess mode keeps each process's values in
memory-mapped files under ``PROMETHEUS_MULTIPROC_DIR`` (set by the runner before workers
start), and a scrape of any worker sums them.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from quarry.engine import Engine

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class StoreCollector(Collector):
    """Sizes read from the store at scrape time (no per-process state to aggregate)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily("quarry_dataset_bytes", "Data bytes at HEAD", labels=["dataset"])
        index = GaugeMetricFamily("quarry_dataset_index_bytes", "Index bytes at HEAD",
                                  labels=["dataset"])
        versions = GaugeMetricFamily("quarry_dataset_versions", "Versions kept",
                                     labels=["dataset"])
        rows = GaugeMetricFamily("quarry_dataset_rows", "Lines or records at HEAD",
                                 labels=["dataset"])
        store = self.engine.store
        for name in store.datasets():
            head = store.head(name)
            if head is None:
                continue
            snap = store.snapshot(head)
            size.add_metric([name], snap.size)
            index.add_metric([name], sum(p.size for p in snap.parts if "index" in p.role))
            versions.add_metric([name], len(store.history(name)))
            n = snap.meta.get("lines", snap.meta.get("rows"))
            if isinstance(n, int):
                rows.add_metric([name], n)
        yield from (size, index, versions, rows)


class Metrics:
    """One per app. Adapters call ``request``/``query``; the hot path tallies locally."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        r = self.registry
        self.requests = Counter("quarry_http_requests", "HTTP requests",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("quarry_http_request_duration_seconds",
                                 "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.queries = Counter("quarry_queries", "Queries by dataset and key used",
                               ["dataset", "kind", "key"], registry=r)
        self.ingested = Counter("quarry_ingest_bytes", "Bytes ingested", ["dataset"],
                                registry=r)
        self.events = Counter("quarry_events", "Events published", ["event"], registry=r)
        self.pipeline_runs = Counter("quarry_pipeline_runs", "Pipeline stage runs",
                                     ["stage", "outcome"], registry=r)
        self._store_collector = StoreCollector(engine)
        if not self.multiprocess:
            r.register(self._store_collector)
        self.hot = HotTally(self)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def query(self, dataset: str, kind: str, key: str = "") -> None:
        self.queries.labels(dataset, kind, key).inc()

    def exposition(self, shown: Callable[[str], bool] = lambda name: True) -> bytes:
        """The text exposition, without the series of datasets ``shown`` refuses (closed
        ones, for a scrape without the token: their names, sizes and counts)."""
        self.hot.flush()
        if not self.multiprocess:
            return generate_latest(_Shown(self.registry, shown))
        # Sum every worker's files, and add the store's sizes once.
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape)  # type: ignore[no-untyped-call]
        scrape.register(self._store_collector)
        return generate_latest(_Shown(scrape, shown))


class _Shown(CollectorRegistry):
    """A registry's metrics without the samples labelled with a dataset not ``shown``."""

    def __init__(self, inner: CollectorRegistry, shown: Callable[[str], bool]) -> None:
        super().__init__(auto_describe=False)
        self.inner = inner
        self.shown = shown

    def collect(self) -> Iterator[Metric]:
        for metric in self.inner.collect():
            kept = [s for s in metric.samples
                    if "dataset" not in s.labels or self.shown(s.labels["dataset"])]
            if len(kept) != len(metric.samples):
                metric = copy.copy(metric)
                metric.samples = kept
            yield metric


class HotTally:
    """Counts for the hot path, kept in plain ints and folded into the metrics every second.

    A labelled counter increment plus a histogram observation cost ~3 µs, as much as the whole
    hot route; tallying costs a fraction of that.
    """

    FLUSH_EVERY = 1.0

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.counts: dict[tuple[str, int], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.seconds: dict[str, float] = {}
        self.last_flush = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        buckets = self.buckets.get(route)
        if buckets is None:
            buckets = self.buckets[route] = [0] * (len(LATENCY_BUCKETS) + 1)
        buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.seconds[route] = self.seconds.get(route, 0.0) + seconds
        if time.monotonic() - self.last_flush > self.FLUSH_EVERY:
            self.flush()
        elif self._timer is None:
            # Folded in within a second even when no more requests come: a scrape reaches
            # one worker, which sums every worker's metrics but flushes only its own tally.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # outside a server: flushed by the next scrape
            self._timer = loop.call_later(self.FLUSH_EVERY, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.last_flush = time.monotonic()
        counts, self.counts = self.counts, {}
        buckets, self.buckets = self.buckets, {}
        seconds, self.seconds = self.seconds, {}
        for (route, status), n in counts.items():
            self.metrics.requests.labels(route, "GET", str(status)).inc(n)
        for route, per_bucket in buckets.items():
            child: Any = self.metrics.latency.labels(route)
            # prometheus_client has no bulk observe; its histogram keeps one counter per
            # bucket plus a sum, which we add to directly (what observe() does n times).
            for i, n in enumerate(per_bucket):
                if n:
                    child._buckets[i].inc(n)
            child._sum.inc(seconds[route])

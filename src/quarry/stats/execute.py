"""Running a statistics request: its predicate tree, zone-map pruning, partials per chunk,
merge, finalize.

Chunks are read on a few threads (Arrow kernels and most numpy ones release the GIL) with
at most ``threads + 1`` in flight, and each chunk's partials are merged into the running
total as soon as they arrive, so memory holds the totals and a few chunks, never all rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from quarry.errors import BadRequest
from quarry.formats import logical
from quarry.query import visitors
from quarry.query.predicate import AlwaysTrue, Predicate, bind
from quarry.stats import kernels
from quarry.stats.kernels import Partial
from quarry.stats.request import StatsRequest

Zones = Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class ChunkSource:
    """A chunk to scan: how to read it (only the named columns), its rows and zone maps."""

    read: Callable[[Sequence[str]], pa.Table]
    rows: int
    zones: Zones


def bound_where(request: StatsRequest, schema: pa.Schema) -> tuple[Predicate, dict[str, str]]:
    """The request's tree bound to a table's logical types (400 naming a bad field)."""
    types = logical.of_schema(schema)
    return bind(request.where, types), types


def may_match(zones: Zones, where: Predicate, types: Mapping[str, str]) -> bool:
    """False when a chunk's zone maps prove no row can pass the (bound) tree."""
    return visitors.may_match(where, zones, types)


def apply_where(table: pa.Table, where: Predicate, types: Mapping[str, str]) -> pa.Table:
    if isinstance(where, AlwaysTrue) or table.num_rows == 0:
        return table
    return table.filter(visitors.mask(where, table.column, table.num_rows, types))


class Accumulator:
    """The running totals of a request: ``add`` a table (any thread), ``result`` at any time."""

    def __init__(self, request: StatsRequest) -> None:
        self.request = request
        self._totals: list[Partial] | None = None
        self._lock = threading.Lock()
        self._bound: tuple[pa.Schema, Predicate, dict[str, str]] | None = None
        self.rows_scanned = 0
        self.rows_matched = 0

    def bind(self, schema: pa.Schema) -> tuple[Predicate, dict[str, str]]:
        """The tree bound to ``schema`` (kept for the next table of the same schema)."""
        hit = self._bound
        if hit is not None and hit[0].equals(schema):
            return hit[1], hit[2]
        where, types = bound_where(self.request, schema)
        self._bound = (schema, where, types)
        return where, types

    def partials(self, table: pa.Table, zones: Zones | None = None) -> list[Partial]:
        scanned = table.num_rows
        if not isinstance(self.request.where, AlwaysTrue):
            table = apply_where(table, *self.bind(table.schema))
        parts = [kernels.partial(a, table, dict(zones or {})) for a in self.request.aggregates]
        with self._lock:
            self.rows_scanned += scanned
            self.rows_matched += table.num_rows
        return parts

    def merge(self, parts: list[Partial]) -> None:
        with self._lock:
            if self._totals is None:
                self._totals = parts
            else:
                self._totals = [kernels.merge(a, b) for a, b in zip(self._totals, parts,
                                                                       strict=True)]

    def add(self, table: pa.Table, zones: Zones | None = None) -> None:
        self.merge(self.partials(table, zones))

    def result(self) -> dict[str, Any]:
        with self._lock:
            totals = self._totals
        if totals is None:
            totals = [_empty(a.op) for a in self.request.aggregates]
        return {a.name: kernels.finalize(a, p)
                for a, p in zip(self.request.aggregates, totals, strict=True)}


def _empty(op: str) -> Partial:
    if op == "count":
        return kernels.Rows(0)
    if op in ("top_k", "group_count", "histogram"):
        return kernels.ValueCounts.empty()
    if op == "distinct_count":
        return kernels.Distinct(np.zeros(0, np.int64))
    return kernels.Moments(0, None, None, None)


def run(request: StatsRequest, chunks: Iterable[ChunkSource], schema: pa.Schema | None,
        *, threads: int = 2) -> dict[str, Any]:
    """Scan ``chunks`` (pruned by zone maps where filters allow) and answer ``request``."""
    t0 = time.perf_counter()
    acc = Accumulator(request)
    columns = request.columns()
    where: Predicate | None = None
    types: dict[str, str] = {}
    if schema is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise BadRequest(f"no field {missing[0]!r}; fields are {', '.join(schema.names)}",
                             field=missing[0])
        where, types = bound_where(request, schema)
    total = pruned = 0
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: list[Future[list[Partial]]] = []
        for chunk in chunks:
            total += 1
            if where is not None and not may_match(chunk.zones, where, types):
                pruned += 1
                continue
            pending.append(pool.submit(_scan, acc, chunk, columns))
            if len(pending) > threads:
                acc.merge(pending.pop(0).result())
        for f in pending:
            acc.merge(f.result())
    return {"results": acc.result(), "rows_scanned": acc.rows_scanned,
            "rows_matched": acc.rows_matched, "chunks": total, "chunks_pruned": pruned,
            "seconds": round(time.perf_counter() - t0, 6)}


def _scan(acc: Accumulator, chunk: ChunkSource, columns: Sequence[str]) -> list[Partial]:
    table = chunk.read(columns)
    if not columns:
        # count alone reads no column; keep the row count.
        table = pa.table({"_": pa.nulls(chunk.rows, pa.null())})
    return acc.partials(table, chunk.zones)

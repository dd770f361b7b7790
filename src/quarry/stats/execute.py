"""Running a statistics request: filters, zone-map pruning, partials per chunk, merge, finalize.

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
import pyarrow.compute as pc

from quarry.errors import BadRequest
from quarry.stats import kernels
from quarry.stats.kernels import Partial
from quarry.stats.request import Filter, StatsRequest

Zones = Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class ChunkSource:
    """A chunk to scan: how to read it (only the named columns), its rows and zone maps."""

    read: Callable[[Sequence[str]], pa.Table]
    rows: int
    zones: Zones


def _per_second(t: pa.DataType) -> int | None:
    if pa.types.is_timestamp(t):
        return {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[t.unit]
    return None


def _scalar(value: Any, t: pa.DataType, field: str) -> pa.Scalar:
    """A filter value as a scalar of the column's type (times: POSIX seconds or ISO text)."""
    per_s = _per_second(t)
    try:
        if per_s is not None and value is not None:
            from quarry.query.model import parse_time

            seconds = parse_time(value, f"filter value for {field}")
            assert seconds is not None
            return pa.scalar(round(seconds * per_s), pa.int64()).cast(t)
        if pa.types.is_fixed_size_binary(t) and t.byte_width == 16 and isinstance(value, str):
            # An IP column (16-byte form): the filter gives the address as text.
            from quarry.query.model import ip_bytes

            return pa.scalar(ip_bytes([value])[0], t)
        return pa.scalar(value).cast(t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
        raise BadRequest(f"filter value {value!r} does not fit field {field} ({t})") from None


def _as_int(s: pa.Scalar) -> int | None:
    if pa.types.is_timestamp(s.type):
        s = s.cast(pa.int64())
    v = s.as_py()
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def may_match(zones: Zones, filters: Sequence[Filter], schema: pa.Schema) -> bool:
    """False when a chunk's zone maps prove no row can pass the filters."""
    for f in filters:
        zone = zones.get(f.field)
        if zone is None or f.field not in schema.names or f.op == "prefix":
            continue
        t = schema.field(f.field).type
        if not (pa.types.is_integer(t) or pa.types.is_timestamp(t)):
            continue
        lo, hi = int(zone[0]), int(zone[1])
        if f.op == "eq":
            v = _as_int(_scalar(f.value, t, f.field))
            if v is not None and not lo <= v <= hi:
                return False
        elif f.op == "in":
            vals = [_as_int(_scalar(x, t, f.field)) for x in f.value]
            if all(v is not None and not lo <= v <= hi for v in vals):
                return False
        elif f.op == "range":
            a = None if f.value[0] is None else _as_int(_scalar(f.value[0], t, f.field))
            b = None if f.value[1] is None else _as_int(_scalar(f.value[1], t, f.field))
            if (a is not None and hi < a) or (b is not None and lo > b):
                return False
    return True


def apply_filters(table: pa.Table, filters: Sequence[Filter]) -> pa.Table:
    if not filters or table.num_rows == 0:
        return table
    mask: pa.ChunkedArray | pa.Array | None = None
    for f in filters:
        if f.field not in table.column_names:
            raise BadRequest(f"no field {f.field!r} to filter on; fields are "
                             f"{', '.join(table.column_names)}")
        col = table.column(f.field)
        t = col.type
        if f.op == "eq":
            m = pc.equal(col, _scalar(f.value, t, f.field))
        elif f.op == "in":
            values = pa.array([_scalar(v, t, f.field).as_py() for v in f.value], t)
            m = pc.is_in(col, value_set=values)
        elif f.op == "range":
            m = pc.is_valid(col)
            if f.value[0] is not None:
                m = pc.and_(m, pc.greater_equal(col, _scalar(f.value[0], t, f.field)))
            if f.value[1] is not None:
                m = pc.and_(m, pc.less_equal(col, _scalar(f.value[1], t, f.field)))
        else:
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise BadRequest(f"prefix filter needs a text field; {f.field} is {t}")
            m = pc.starts_with(col, f.value)
        mask = m if mask is None else pc.and_(mask, m)
    return table.filter(pc.fill_null(mask, False))


class Accumulator:
    """The running totals of a request: ``add`` a table (any thread), ``result`` at any time."""

    def __init__(self, request: StatsRequest) -> None:
        self.request = request
        self._totals: list[Partial] | None = None
        self._lock = threading.Lock()
        self.rows_scanned = 0
        self.rows_matched = 0

    def partials(self, table: pa.Table, zones: Zones | None = None) -> list[Partial]:
        scanned = table.num_rows
        table = apply_filters(table, self.request.filters)
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
    if schema is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise BadRequest(f"no field {missing[0]!r}; fields are {', '.join(schema.names)}")
    total = pruned = 0
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: list[Future[list[Partial]]] = []
        for chunk in chunks:
            total += 1
            if request.filters and schema is not None and not may_match(
                    chunk.zones, request.filters, schema):
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

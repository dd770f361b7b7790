"""Statistics requests (``quarry.stats``) as shard queries: each shard scans its chunks into the
kernels' partials (counts per value, HyperLogLog registers, moments...), which merge exactly,
so top-k, histograms and distinct counts over shards equal one process's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from quarry.cluster import wire
from quarry.cluster.ops import Op, register
from quarry.datasets.records import ChunkInfo, RecordsView
from quarry.errors import BadRequest
from quarry.stats import kernels
from quarry.stats.execute import Accumulator, bound_where, may_match
from quarry.stats.request import Aggregate, StatsRequest


@dataclass(frozen=True)
class StatsPartial:
    totals: tuple[Any, ...] | None  # one kernel partial per aggregate; None: no chunk read
    rows_scanned: int = 0
    rows_matched: int = 0
    chunks: int = 0
    pruned: int = 0


class StatsOp(Op[StatsRequest, StatsPartial, dict[str, Any]]):
    query_type = StatsRequest

    def window(self, q: StatsRequest) -> None:
        return None

    def keeps(self, q: StatsRequest, chunk: ChunkInfo) -> bool:
        # The tree is checked against zone maps by each shard, which has the schema.
        return True

    def map(self, view: RecordsView, q: StatsRequest, scan: bool) -> StatsPartial:
        if not view.chunks:
            return StatsPartial(None)
        schema = view.chunks[0].table.schema
        columns = list(q.columns())
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise BadRequest(f"no field {missing[0]!r}; fields are {', '.join(schema.names)}",
                             field=missing[0])
        # The task carries the unbound tree; each shard binds it to the chunks it reads.
        where, types = bound_where(q, schema)
        acc = Accumulator(q)
        totals: list[Any] | None = None
        pruned = 0
        for c in view.chunks:
            if not may_match(c.info.zones, where, types):
                pruned += 1
                continue
            # count alone reads no column; keep the row count.
            table = c.table.select(columns) if columns else pa.table(
                {"_": pa.nulls(c.info.rows, pa.null())})
            parts = acc.partials(table, c.info.zones)
            totals = parts if totals is None else [
                kernels.merge(a, b) for a, b in zip(totals, parts, strict=True)]
        return StatsPartial(None if totals is None else tuple(totals), acc.rows_scanned,
                            acc.rows_matched, len(view.chunks), pruned)

    def combine(self, q: StatsRequest, parts: Sequence[StatsPartial]) -> StatsPartial:
        totals: list[Any] | None = None
        for p in parts:
            if p.totals is not None:
                totals = list(p.totals) if totals is None else [
                    kernels.merge(a, b) for a, b in zip(totals, p.totals, strict=True)]
        return StatsPartial(None if totals is None else tuple(totals),
                            sum(p.rows_scanned for p in parts),
                            sum(p.rows_matched for p in parts), sum(p.chunks for p in parts),
                            sum(p.pruned for p in parts))

    def finish(self, q: StatsRequest, part: StatsPartial, version: str) -> dict[str, Any]:
        acc = Accumulator(q)
        if part.totals is not None:
            acc.merge(list(part.totals))
        return {"results": acc.result(), "rows_scanned": part.rows_scanned,
                "rows_matched": part.rows_matched, "chunks": part.chunks,
                "chunks_pruned": part.pruned}


register(StatsOp())
wire.register(StatsRequest, Aggregate, StatsPartial, kernels.ValueCounts,
              kernels.Distinct, kernels.Sketch, kernels.Rows, kernels.Moments)

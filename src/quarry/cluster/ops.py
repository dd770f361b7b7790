"""Queries as map/reduce over chunks: each query type's ``map``, ``combine`` and ``finish``.

A shard answers ``map(view of its chunks, query, scan)`` with a *partial*; partials of any
number of shards ``combine`` into one partial of the same type (so dispatchers nest: a remote
dispatcher answers with its own combined partial), and ``finish`` turns the last one into the
answer. Partials are small frozen values of numpy arrays and numbers — never rows gathered
needlessly. Other query kinds plug in with :func:`register`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from quarry.datasets.records import ChunkInfo, RecordsView
from quarry.errors import BadRequest
from quarry.index.zonemap import overlaps
from quarry.query import iplog
from quarry.query.model import DistinctQuery, FindQuery, MembershipQuery, VisitsQuery, Window

Q = TypeVar("Q")
P = TypeVar("P")
R = TypeVar("R")


class Op(Generic[Q, P, R]):
    """How one query type is mapped over shards and reduced."""

    query_type: type[Any] = object

    def window(self, q: Q) -> Window | None:
        """The time window, if any, used to prune chunks and shards by their zone maps."""
        w = getattr(q, "window", None)
        return w if isinstance(w, Window) else None

    def keeps(self, q: Q, chunk: ChunkInfo) -> bool:
        w = self.window(q)
        return w is None or overlaps(chunk.zones.get("ts"), w.start_us, w.end_us)

    def map(self, view: RecordsView, q: Q, scan: bool) -> P:
        raise NotImplementedError

    def combine(self, q: Q, parts: Sequence[P]) -> P:
        raise NotImplementedError

    def finish(self, q: Q, part: P, version: str) -> R:
        raise NotImplementedError


_OPS: dict[type[Any], Op[Any, Any, Any]] = {}


def register(op: Op[Any, Any, Any]) -> Op[Any, Any, Any]:
    """Make ``op`` the way to run queries of ``op.query_type`` (one table, like a codec map)."""
    _OPS[op.query_type] = op
    return op


def op_for(query: object) -> Op[Any, Any, Any]:
    op = _OPS.get(type(query))
    if op is None:
        raise BadRequest(f"{type(query).__name__} queries cannot be run on shards")
    return op


def query_types() -> tuple[type[Any], ...]:
    return tuple(_OPS)


def _concat_hits(q: FindQuery, parts: Sequence[iplog.Hits]) -> iplog.Hits:
    """Hits of several shards in (time, chunk, row) order. Their ``qi`` all index the same
    query addresses, so they concatenate as they are."""
    parts = [p for p in parts if len(p)]
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return iplog.Hits(z, z, z, z, q.ips)
    if len(parts) == 1:
        return parts[0]
    hits = iplog.Hits(np.concatenate([p.ts for p in parts]),
                      np.concatenate([p.chunk for p in parts]),
                      np.concatenate([p.row for p in parts]),
                      np.concatenate([p.qi for p in parts]), q.ips)
    return hits.take(np.lexsort((hits.row, hits.chunk, hits.ts)))


class FindOp(Op[FindQuery, iplog.Hits, iplog.FindPage]):
    """Records in time order: each shard sends its first ``limit + 1``; the merge keeps the
    first ``limit + 1`` of all, so the answer and its cursor equal a single process's."""

    query_type = FindQuery

    def map(self, view: RecordsView, q: FindQuery, scan: bool) -> iplog.Hits:
        return iplog.find_page(view, dataclasses.replace(q, limit=q.limit + 1), scan).hits

    def combine(self, q: FindQuery, parts: Sequence[iplog.Hits]) -> iplog.Hits:
        return _concat_hits(q, parts).slice(q.limit + 1)

    def finish(self, q: FindQuery, part: iplog.Hits, version: str) -> iplog.FindPage:
        if len(part) > q.limit:
            page = part.slice(q.limit)
            return iplog.FindPage(page, page.cursor(version).encode())
        return iplog.FindPage(part, None)


class MembershipOp(Op[MembershipQuery, np.ndarray, np.ndarray]):
    query_type = MembershipQuery

    def map(self, view: RecordsView, q: MembershipQuery, scan: bool) -> np.ndarray:
        return iplog.membership(view, q, scan)

    def combine(self, q: MembershipQuery, parts: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros(len(q.ips), dtype=bool)
        for p in parts:
            out |= p
        return out

    def finish(self, q: MembershipQuery, part: np.ndarray, version: str) -> np.ndarray:
        return part


class VisitsOp(Op[VisitsQuery, iplog.Visits, iplog.Visits]):
    query_type = VisitsQuery

    def map(self, view: RecordsView, q: VisitsQuery, scan: bool) -> iplog.Visits:
        return iplog.visits(view, q, scan)

    def combine(self, q: VisitsQuery, parts: Sequence[iplog.Visits]) -> iplog.Visits:
        parts = [p for p in parts if p.count]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return iplog.Visits(0, None, None, empty,
                                (empty, empty) if q.bucket_s else None)
        times = np.sort(np.concatenate([p.times_us for p in parts]), kind="stable")[: q.limit]
        buckets = None
        if q.bucket_s:
            starts = np.concatenate([p.buckets[0] for p in parts if p.buckets is not None])
            counts = np.concatenate([p.buckets[1] for p in parts if p.buckets is not None])
            uniq, inv = np.unique(starts, return_inverse=True)
            buckets = (uniq, np.bincount(inv, weights=counts).astype(np.int64))
        firsts = [p.first_us for p in parts if p.first_us is not None]
        lasts = [p.last_us for p in parts if p.last_us is not None]
        return iplog.Visits(sum(p.count for p in parts), min(firsts), max(lasts), times,
                            buckets)

    def finish(self, q: VisitsQuery, part: iplog.Visits, version: str) -> iplog.Visits:
        return part


class DistinctOp(Op[DistinctQuery, iplog.AddressCounts, iplog.Distinct]):
    """Distinct addresses with counts: partials are per-shard counts, summed by address;
    the top-k page is cut only after the merge, so it is exact."""

    query_type = DistinctQuery

    def map(self, view: RecordsView, q: DistinctQuery, scan: bool) -> iplog.AddressCounts:
        return iplog.address_counts(view, q.window, scan)

    def combine(self, q: DistinctQuery,
                parts: Sequence[iplog.AddressCounts]) -> iplog.AddressCounts:
        return iplog.AddressCounts.merge(list(parts))

    def finish(self, q: DistinctQuery, part: iplog.AddressCounts,
               version: str) -> iplog.Distinct:
        return iplog.distinct_page(part, q)


for _op in (FindOp(), MembershipOp(), VisitsOp(), DistinctOp()):
    register(_op)


@dataclass(frozen=True)
class Task:
    """What a shard is sent: names and ids only, never engine objects or tables."""

    dataset: str
    version: str
    chunks: tuple[int, ...]  # positions in the version's manifest
    query: Any  # a frozen query description
    scan: bool = False  # the shard is asleep: answer without its indexes
    shard: str = ""  # for messages and load accounting


def run_task(view: RecordsView, task: Task) -> Any:
    """Run ``task`` on an opened view of its version: the worker side of every backend."""
    op = op_for(task.query)
    sub = view.subset(task.chunks)
    if task.scan:
        for c in sub.chunks:
            c.drop_index()
    return op.map(sub, task.query, task.scan)

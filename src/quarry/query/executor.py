"""Filtered queries over a records view: prune chunks by zone maps, find candidate rows with
the planned key (or take all rows), evaluate the rest of the predicate tree on them (Arrow
kernels; strings once per dictionary value).

Results come in (chunk position, row) order whatever the plan, so pages and cursors are the
same with or without keys, and a cursor stays valid when keys come and go.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.datasets.records import Chunk, RecordsView
from quarry.formats import tabular
from quarry.formats.ipaddr import format_ips
from quarry.index.keyset import Key
from quarry.query.filters import Query, RowCursor
from quarry.query.lean import lean_page
from quarry.query.planner import KeyScore, choose, primary
from quarry.query.predicate import AlwaysTrue, Leaf, Predicate, and_
from quarry.query.visitors import describe, mask, may_match


@dataclass
class Stats:
    key: str | None = None
    source: str | None = None
    score: int = 0
    perfect: bool = False
    keys_scored: int = 0
    chunks: int = 0
    chunks_pruned: int = 0
    rows_examined: int = 0
    rows_matched: int = 0
    keyed_fields: list[str] = field(default_factory=list)
    post_filters: list[str] = field(default_factory=list)
    # chunks: zone maps, a lookup and post-filters per chunk; version key / chunk keys: the
    # lean path (the key answers the query alone; one gather of the rows).
    path: str = "chunks"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Page:
    version: str
    table: pa.Table
    next_cursor: str | None
    stats: Stats


def pruned(chunk: Chunk, where: Predicate, types: Mapping[str, str]) -> bool:
    """Whether the chunk's zone maps prove no row matches."""
    return not may_match(where, chunk.info.zones, types)


def rows_mask(chunk: Chunk, where: Predicate, types: Mapping[str, str],
              rows: np.ndarray | slice) -> np.ndarray:
    """Which of ``rows`` (positions, or a slice read without a gather) satisfy ``where``."""
    t = chunk.table
    if isinstance(rows, slice):
        start, stop, _ = rows.indices(t.num_rows)
        n = max(0, stop - start)

        def col(f: str) -> pa.Array | pa.ChunkedArray:
            return t.column(f).slice(start, n)
    else:
        n = len(rows)
        idx = pa.array(rows, pa.int64())

        def col(f: str) -> pa.Array | pa.ChunkedArray:
            return t.column(f).take(idx)
    return mask(where, col, n, types)


def chunk_rows(chunk: Chunk, q: Query, types: Mapping[str, str], key: Key | None, start: int,
               stats: Stats) -> np.ndarray:
    """Matching rows (ascending, >= ``start``) of one chunk."""
    conds = q.conds
    rest: Sequence[Predicate] = conds
    rows: np.ndarray | None = None
    ck = key.chunk_key(chunk) if key is not None else None
    if ck is not None:
        by_field = primary(conds)
        hit = ck.lookup(by_field)
        if hit is not None:
            rows, used = hit
            consumed = {id(by_field[f]) for f in used}
            rest = [c for c in conds if id(c) not in consumed]
            if start:
                rows = rows[rows >= start]
    residual = and_(*rest)
    if rows is None:
        stats.rows_examined += chunk.info.rows - start
        if isinstance(residual, AlwaysTrue):
            return np.arange(start, chunk.info.rows, dtype=np.int64)
        # A scan reads slices of the columns (no gather).
        m = rows_mask(chunk, residual, types, slice(start, chunk.info.rows))
        return np.flatnonzero(m).astype(np.int64) + start
    stats.rows_examined += len(rows)
    if isinstance(residual, AlwaysTrue) or not len(rows):
        return rows
    out: np.ndarray = rows[rows_mask(chunk, residual, types, rows)]
    return out


def plan(view: RecordsView, q: Query, keys: Sequence[Key]) -> tuple[Key | None, Stats]:
    stats = Stats(chunks=len(view.chunks))
    best: KeyScore | None
    best, stats.keys_scored = choose([k.spec for k in keys], q.conds, view.types)
    key = None
    if best is not None:
        key = next(k for k in keys if k.spec == best.spec)
        key.uses += 1
        stats.key, stats.source, stats.score = best.spec.name, key.source, best.score
        stats.perfect, stats.keyed_fields = best.perfect, list(best.matched)
    matched = set(best.matched) if best else set()
    by_field = primary(q.conds)
    stats.post_filters = [describe(c) for c in q.conds
                          if not (isinstance(c, Leaf) and c.field in matched
                                  and by_field.get(c.field) is c)]
    return key, stats


def iter_matches(view: RecordsView, q: Query, key: Key | None,
                 stats: Stats) -> Iterator[tuple[Chunk, np.ndarray]]:
    cur = q.cursor
    for chunk in view.chunks:
        if cur is not None and chunk.position < cur.chunk:
            continue
        if pruned(chunk, q.where, view.types):
            stats.chunks_pruned += 1
            continue
        start = cur.row + 1 if cur is not None and chunk.position == cur.chunk else 0
        rows = chunk_rows(chunk, q, view.types, key, start, stats)
        if len(rows):
            stats.rows_matched += len(rows)
            yield chunk, rows


def project(chunk: Chunk, rows: np.ndarray, fields: Sequence[str] | None) -> pa.Table:
    t = chunk.table if fields is None else chunk.table.select(list(fields))
    return t.take(rows)


def run_page(view: RecordsView, q: Query, keys: Sequence[Key]) -> Page:
    """At most ``q.limit`` matching rows and a cursor to the rest."""
    if q.cursor is not None and q.cursor.version != view.version:
        raise AssertionError("the caller opens the cursor's version")
    key, stats = plan(view, q, keys)
    if key is not None and not stats.post_filters:
        lean = lean_page(view, q, key)
        if lean is not None:
            stats.path = "version key" if lean.whole else "chunk keys"
            stats.rows_examined = stats.rows_matched = lean.matched
            return Page(view.version, lean.table, lean.next_cursor, stats)
    parts: list[pa.Table] = []
    got = 0
    last: tuple[int, int] | None = None
    more = False
    for chunk, rows in iter_matches(view, q, key, stats):
        if got >= q.limit:
            more = True
            break
        take = rows[: q.limit - got]
        parts.append(project(chunk, take, q.fields))
        got += len(take)
        last = (chunk.position, int(take[-1]))
        if len(take) < len(rows):
            more = True
            break
    # Chunks' dictionaries differ, but a chunked column may mix them: decode once, at the end.
    table = plain(pa.concat_tables(parts)) if parts else empty(view, q.fields)
    nxt = RowCursor(view.version, *last).encode() if more and last else None
    return Page(view.version, table, nxt, stats)


def empty(view: RecordsView, fields: Sequence[str] | None) -> pa.Table:
    if view.chunks:
        t = view.chunks[0].table
        return plain(t.select(list(fields)) if fields is not None else t).slice(0, 0)
    schema = pa.schema([pa.field(n, pa.bool_()) if t == "bool" else tabular.field(n, t)
                        for n, t in view.types.items() if fields is None or n in fields])
    return plain(schema.empty_table())


def plain(t: pa.Table) -> pa.Table:
    """Dictionary strings decoded (field metadata kept), for output and concatenation."""
    for i, f in enumerate(t.schema):
        if pa.types.is_dictionary(f.type):
            col = t.column(i).cast(f.type.value_type)
            t = t.set_column(i, f.with_type(col.type), col)
    return t


def to_records(t: pa.Table) -> list[dict[str, Any]]:
    """JSON-ready rows: addresses as text, times as POSIX seconds."""
    cols: dict[str, list[Any]] = {}
    for f, col in zip(t.schema, t.columns, strict=True):
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_fixed_size_binary(arr.type) and arr.type.byte_width == 16:
            ips = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[
                arr.offset * 16:(arr.offset + len(arr)) * 16].reshape(-1, 16)
            text = format_ips(ips)
            cols[f.name] = pc.if_else(arr.is_valid(), text, None).to_pylist() if len(arr) else []
        elif pa.types.is_timestamp(arr.type):
            us = arr.cast(pa.int64())
            # Unchecked: a time beyond 2^53 µs (data ingested before times were bounded)
            # loses precision in seconds rather than failing the whole answer.
            cols[f.name] = pc.divide(us.cast(pa.float64(), safe=False), 1e6).to_pylist()
        else:
            cols[f.name] = arr.to_pylist()
    names = list(cols)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]

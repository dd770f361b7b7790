"""The lean path: a query a key answers completely, without per-chunk work.

When the planned key consumes every condition (nothing to post-filter), the matching rows are
exactly the key's hits. A declared key is searched once in its version-wide form (one sorted
array over all chunks); a built key, which has only per-chunk parts, once per chunk. Either
way the hits become version-wide row numbers, ascending, i.e. (chunk position, row) order as
on the general path, and one numpy gather over the memory-mapped columns makes the answer
(:mod:`quarry.datasets.gather`). Zone maps are not consulted: a key search is cheaper than
the per-chunk check, and pruning never changes an answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from quarry.datasets.gather import version_columns
from quarry.datasets.records import RecordsView
from quarry.errors import Corrupt
from quarry.index.keyset import Key
from quarry.query.filters import Query, RowCursor
from quarry.query.planner import primary


@dataclass(frozen=True)
class LeanAnswer:
    table: pa.Table
    next_cursor: str | None
    matched: int  # every row the key found (before the limit)
    whole: bool  # searched the version-wide key (else each chunk's part)


def lean_page(view: RecordsView, q: Query, key: Key) -> LeanAnswer | None:
    """The page, when ``key`` answers ``q`` on its own (None: use the general path)."""
    if not view.chunks:
        return None
    cols = version_columns(view)
    if not cols.uniform:
        return None
    conds = q.conds
    by_field = primary(conds)
    if len(by_field) != len(conds):
        return None  # a conjunct the key cannot serve (or a second one on a field)
    vk = key.whole(view, cols.positions)
    if vk is not None:
        hit = vk.lookup(by_field)
        if hit is None or len(hit[1]) != len(by_field):
            return None
        rows = hit[0]
    else:
        parts = []
        for chunk, off in zip(view.chunks, cols.offsets, strict=False):
            ck = key.chunk_key(chunk)
            found = None if ck is None else ck.lookup(by_field)
            if found is None or len(found[1]) != len(by_field):
                return None  # this chunk's key left a field out: it needs a post-filter
            if len(found[0]) and found[0][-1] >= chunk.info.rows:
                raise Corrupt(f"key {key.spec.name} does not match chunk {chunk.position}")
            parts.append(found[0] + off)
        rows = np.concatenate(parts)
    matched = len(rows)
    if q.cursor is not None:
        rows = rows[rows >= cols.start_after(q.cursor.chunk, q.cursor.row)]
    more = len(rows) > q.limit
    if more:
        rows = rows[:q.limit]
    nxt = RowCursor(view.version, *cols.locate(rows[-1])).encode() if more else None
    return LeanAnswer(cols.take(rows, q.fields), nxt, matched, vk is not None)

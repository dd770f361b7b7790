"""The shortcut for the commonest keyed query: ``{"where": {field: value or [values]}}``
(with any ``limit`` and ``fields``, no cursor) where a declared key leads with ``field``.

Such a query costs little in data (one search of the version-wide key, one gather of a few
rows) and so its cost was mostly Python: parsing into conditions, planning, per-chunk loops.
Here the plan is made once per (version, field) and kept with the version's keys (a swap of
built keys drops it); each query only checks its values' types (with the same ``coerce`` as
the parser, hence the same 400s), searches and gathers. Anything else (cursors, operators,
several fields, a field no declared key leads with, any other bad input) goes the general
way, which answers or refuses it as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from quarry.datasets.gather import version_columns
from quarry.datasets.records import RecordsView
from quarry.index.keyset import Key, KeyCatalog
from quarry.query.advisor import Shape, Workload
from quarry.query.executor import Page, Stats, plan
from quarry.query.filters import DEFAULT_LIMIT, MAX_IN, Query, RowCursor, coerce, parse_fields
from quarry.query.model import MAX_LIMIT
from quarry.query.predicate import COMBINATORS, In

PER_QUERY = frozenset({"keyed_fields", "post_filters", "rows_examined", "rows_matched"})


@dataclass(frozen=True)
class _Plan:
    key: Key
    shape: Shape
    stats: Mapping[str, Any]  # the Stats of every such query, but for the row counts


def _plan(view: RecordsView, field: str, keys: KeyCatalog) -> _Plan | None:
    if not view.chunks or not version_columns(view).uniform:
        return None
    q = Query(In(field, ()))
    key, stats = plan(view, q, keys.keys(view))
    if key is None or stats.post_filters or key.source != "declared":
        return None
    key.uses -= 1  # counted per query below
    stats.path = "version key"
    return _Plan(key, Shape.of(q.conds), {k: v for k, v in stats.to_json().items()
                                          if k not in PER_QUERY})


def fast_query(dataset: str, view: RecordsView, body: Mapping[str, Any], keys: KeyCatalog,
               workload: Workload) -> Page | None:
    """The page for ``body``, or None when it is not such a query (use the general path).
    The caller has checked there is no cursor; other keys than where/limit/fields are not the
    parser's business either."""
    where = body.get("where")
    if type(where) is not dict or len(where) != 1:
        return None
    ((field, raw),) = where.items()
    logical = view.types.get(field)
    limit = body.get("limit", DEFAULT_LIMIT)
    if logical is None or field in COMBINATORS or isinstance(raw, dict) \
            or type(limit) is not int \
            or not 1 <= limit <= MAX_LIMIT:
        return None
    memo = keys.memo(view.version)
    p = memo.get(("fast", field), False)
    if p is False:
        p = memo[("fast", field)] = _plan(view, field, keys)
    if p is None:
        return None
    cols = version_columns(view)
    vk = p.key.whole(view, cols.positions)
    if vk is None:
        return None
    payload = None
    order = None  # set when the payload slice is not in row order
    if isinstance(raw, list):
        if len(raw) > MAX_IN:
            return None
        values = tuple(dict.fromkeys(coerce(x, logical, field) for x in raw))
        hit = vk.lookup({field: In(field, values)})
        if hit is None:
            return None
        rows = hit[0]
    else:
        value = coerce(raw, logical, field)
        payload = p.key.payload(view, cols, keys.payloads)
        if payload is None:
            rows = vk.point(value)
        else:
            a, z = vk.span(value)
            rows = payload.rows[a:z]  # their numbers, for the cursor; the rows are a slice
            if len(rows) > 1 and bool((rows[1:] < rows[:-1]).any()):
                # A key with trailing fields orders one value's rows by those fields;
                # answers come in row order, so put them back in it.
                order = np.argsort(rows, kind="stable")
                rows = rows[order]
    fields = parse_fields(body.get("fields"), view.types)
    workload.record(dataset, view.version, p.shape)
    p.key.uses += 1
    n = len(rows)
    nxt = None
    if n > limit:
        rows = rows[:limit]
        nxt = RowCursor(view.version, *cols.locate(int(rows[-1]))).encode()
    stats = Stats(**p.stats, keyed_fields=[field], rows_examined=n, rows_matched=n)
    if payload is not None:
        stats.path = "payload key"
        if order is None:
            table = payload.table.slice(a, len(rows))
        else:
            table = payload.table.slice(a, z - a).take(order[: len(rows)])
        return Page(view.version, table if fields is None else table.select(list(fields)),
                    nxt, stats)
    return Page(view.version, cols.take(np.asarray(rows), fields), nxt, stats)

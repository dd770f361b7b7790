"""Filtered queries, explains and joins as the adapters call them: each leases one version for
its whole run (hot swap: a moving alias never mixes versions in an answer), records its shape
in the workload, and plans with the keys published for that version when it started."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.index.keyset import Key
from quarry.query import join as joins
from quarry.query.advisor import Shape
from quarry.query.executor import Page, Stats, iter_matches, plain, plan, project, run_page
from quarry.query.fast import fast_query
from quarry.query.filters import Query, RowCursor, parse_fields, parse_query, parse_where

STREAM_ROWS = 65536


def _version(body: Mapping[str, Any]) -> tuple[str | None, RowCursor | None]:
    cursor = RowCursor.decode(body["cursor"]) if body.get("cursor") else None
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise BadRequest("version must be a string (an id, a prefix, an alias or HEAD)")
    if cursor is not None and version is None:
        version = cursor.version  # a cursor pins the version its first page came from
    return version, cursor


def query(engine: Engine, dataset: str, body: Mapping[str, Any]) -> Page:
    version, cursor = _version(body)
    with engine.lease(dataset, version) as view:
        if cursor is None:
            page = fast_query(dataset, view, body, engine.keys, engine.workload)
            if page is not None:
                return page
        q = parse_query(body, view.types)
        if cursor is not None and cursor.version != view.version:
            raise BadRequest("the cursor belongs to another version: pass the same version "
                             "(or none) with it")
        engine.workload.record(dataset, view.version, Shape.of(q.conds))
        return run_page(view, q, engine.keys.keys(view))


def explain(engine: Engine, dataset: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The plan and what running it took (the query runs, its rows are not returned)."""
    page = query(engine, dataset, {**body, "limit": body.get("limit", 1_000_000)})
    return {"version": page.version, **page.stats.to_json()}


def stream(engine: Engine, dataset: str, body: Mapping[str, Any]) -> tuple[str, Iterator[pa.Table]]:
    """Every matching row (up to ``limit`` when given) in pieces, on one leased version."""
    version, _ = _version(body)
    lease = engine.lease(dataset, version)
    view = lease.__enter__()
    try:
        q = parse_query({k: v for k, v in body.items() if k != "limit"}, view.types)
        limit = body.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise BadRequest(f"limit must be a positive integer, got {limit!r}")
        engine.workload.record(dataset, view.version, Shape.of(q.conds))
        key, stats = plan(view, q, engine.keys.keys(view))
    except BaseException:
        lease.__exit__(None, None, None)
        raise

    def pieces() -> Iterator[pa.Table]:
        left = limit
        try:
            for chunk, rows in iter_matches(view, q, key, stats):
                if left is not None:
                    rows = rows[:left]
                    left -= len(rows)
                for s in range(0, len(rows), STREAM_ROWS):
                    yield plain(project(chunk, rows[s:s + STREAM_ROWS], q.fields))
                if left is not None and left <= 0:
                    return
        finally:
            lease.__exit__(None, None, None)

    return view.version, pieces()


def join(engine: Engine, dataset: str, probes: pa.Table,
         params: Mapping[str, Any]) -> tuple[str, pa.Table, Stats]:
    version, _ = _version(params)
    with engine.lease(dataset, version) as view:
        on = joins.parse_on(params.get("on"), probes.column_names)
        spec = joins.JoinSpec(on, str(params.get("how", "inner")),
                              parse_where(params.get("where"), view.types),
                              parse_fields(params.get("fields"), view.types))
        engine.workload.record(dataset, view.version,
                               Shape(frozenset(d for _, d in on), frozenset()),
                               n=float(params.get("weight", 1.0)))
        table, stats = joins.join(view, probes, spec, engine.keys.keys(view))
        return view.version, table, stats


def keys_report(engine: Engine, dataset: str, suggestions: list[Any],
                accepted: list[Any]) -> dict[str, Any]:
    vid, snap = engine.snapshot(dataset)
    if snap.kind != "records":  # nothing to key; the console asks every dataset
        return {"version": vid, "declared": [], "built": [], "accepted": [], "suggested": []}
    view = engine.records(dataset)
    keys = engine.keys.keys(view)
    fields = engine.workload.fields(dataset)

    def one(k: Key) -> dict[str, Any]:
        return {"fields": list(k.spec.fields), "state": k.source, "uses": k.uses,
                "size": k.nbytes}

    return {
        "version": view.version,
        "budget": engine.key_budget,
        "built_bytes": engine.keys.built_bytes(),
        "declared": [one(k) for k in keys if k.source == "declared"],
        "built": [one(k) for k in keys if k.source != "declared"],
        "accepted": [list(s.fields) for s in accepted],
        "suggested": [{"fields": list(s.spec.fields), "state": "suggested",
                       "weight": round(s.weight, 3), "size": s.bytes} for s in suggestions],
        "workload": {
            "fields": {f: round(w, 3) for f, w in sorted(fields.items(), key=lambda x: -x[1])},
            "shapes": [{**s.to_json(), "weight": round(w, 3)} for s, w in sorted(
                engine.workload.shapes(dataset).items(), key=lambda x: -x[1])],
        },
    }


__all__ = ["Query", "explain", "join", "keys_report", "query", "stream"]

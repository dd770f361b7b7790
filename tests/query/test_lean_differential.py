"""The lean path (a key answers the query alone) and its shortcut for ``{field: value}``,
against SQLite and against the general path (per-chunk lookups and Arrow takes).

The general path is forced by switching the lean path and the shortcut off; both must give
the same table (schema with metadata, values, order), the same cursors and the same pages.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.index.keys import KeySpec
from quarry.index.keyset import build_key
from quarry.query import executor, service
from quarry.query.executor import Page
from quarry.store import Store
from tests.query.test_keyed_differential import (
    FIELDS,
    T0,
    cond_st,
    oracle,
    pages,
    row_st,
    table_of,
)

KEYABLE = ("eq", "in", "gt", "gte", "lt", "lte", "range", "prefix")


def keyable(spec: Any) -> bool:
    return not isinstance(spec, dict) or all(op in KEYABLE for op in spec)


lean_where_st = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True).flatmap(
    lambda fs: st.fixed_dictionaries({f: cond_st(f).filter(keyable) for f in fs}))


def make_engine(d: Path, rows: list[dict[str, Any]], keys: list[str],
                chunk_rows: int, payload_budget: int = 0) -> Engine:
    pq.write_table(table_of(rows), d / "t.parquet")
    store = Store(d / "data")
    ingest_table(store, "t", [d / "t.parquet"], types={"t": "timestamp", "ip": "ip",
                                                      "s": "string"},
                 keys=[KeySpec.parse(k) for k in keys], chunk_rows=chunk_rows)
    return Engine(store, refresh_interval=0, payload_budget=payload_budget)


@contextmanager
def general_path() -> Iterator[None]:
    with mock.patch.object(service, "fast_query", lambda *a: None), \
            mock.patch.object(executor, "lean_page", lambda *a: None):
        yield


def same(a: Page, b: Page) -> None:
    assert a.table.schema.equals(b.table.schema, check_metadata=True)
    assert a.table.equals(b.table)
    assert a.next_cursor == b.next_cursor


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row_st, min_size=1, max_size=40), where=lean_where_st,
       chunk_rows=st.integers(1, 25), limit=st.integers(1, 7), data=st.data())
def test_lean_answers_equal_sqlite_and_the_general_path(
        rows: list[dict[str, Any]], where: dict[str, Any], chunk_rows: int, limit: int,
        data: st.DataObject) -> None:
    # A key on the queried fields (in some order, maybe with a trailing field), declared
    # or built: the lean path on a version-wide key or on per-chunk keys.
    fields = list(where)
    order = data.draw(st.permutations(fields))
    extra = data.draw(st.lists(st.sampled_from([f for f in FIELDS if f not in fields]),
                               max_size=1))
    spec = ",".join([*order, *extra])
    built = data.draw(st.booleans())
    payload = not built and data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as d:
        engine = make_engine(Path(d), rows, [] if built else [spec], chunk_rows,
                             1 << 30 if payload else 0)
        if payload:
            engine.warm("t")
        if built:
            view = engine.records("t")
            k = build_key(view, KeySpec.parse(spec))
            engine.keys.swap(view.version, {k.spec: k})
        body = {"where": where, "limit": 10_000}
        lean = service.query(engine, "t", body)
        assert sorted(lean.table.column("rid").to_pylist()) == oracle(rows, where)
        small = service.query(engine, "t", {**body, "limit": limit})
        got = pages(engine, where, limit)
        with general_path():
            general = service.query(engine, "t", body)
            assert general.stats.path == "chunks"
            same(small, service.query(engine, "t", {**body, "limit": limit}))
            assert got == pages(engine, where, limit)
        same(lean, general)
        assert got == lean.table.column("rid").to_pylist()


def test_payload_key_with_trailing_fields_answers_in_row_order(tmp_path: Path) -> None:
    """Found by the test above: a payload key on "f,s" holds one f's rows in s order, but
    answers (and their pages) come in row order."""
    rows = [{"i": None, "f": -1.5, "s": s, "t": 0, "ip": "10.0.0.1"} for s in (None, None, "")]
    engine = make_engine(tmp_path, rows, ["f,s"], chunk_rows=1, payload_budget=1 << 30)
    engine.warm("t")
    whole = service.query(engine, "t", {"where": {"f": -1.5}})
    assert whole.stats.path == "payload key"
    assert whole.table.column("rid").to_pylist() == [0, 1, 2]
    assert whole.table.column("s").to_pylist() == [None, None, ""]
    assert pages(engine, {"f": -1.5}, 1) == [0, 1, 2]


def test_paths_taken_and_stats(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = [{"i": int(rng.integers(0, 5)), "f": 0.0, "s": f"v{rng.integers(0, 4)}",
             "t": int(rng.integers(0, 20)), "ip": "10.0.0.1"} for _ in range(60)]
    engine = make_engine(tmp_path, rows, ["i", "s,t"], chunk_rows=7)
    point = service.query(engine, "t", {"where": {"i": 3}})
    assert point.stats.path == "version key" and point.stats.key == "i"
    # The shortcut records the workload and counts the key's uses like any query.
    view = engine.records("t")
    assert engine.workload.fields("t")["i"] > 0
    assert next(k for k in engine.keys.keys(view) if k.spec.name == "i").uses == 1
    assert point.stats.rows_matched == sum(r["i"] == 3 for r in rows)
    assert point.table.column("rid").to_pylist() == [n for n, r in enumerate(rows)
                                                     if r["i"] == 3]
    # Fully keyed but not the shortcut's shape: the lean path itself.
    both = service.query(engine, "t", {"where": {"s": "v1", "t": {"gte": T0 + 5}}})
    assert both.stats.path == "version key" and both.stats.key == "s,t"
    # A post-filter: the general path.
    post = service.query(engine, "t", {"where": {"i": 3, "s": {"contains": "1"}}})
    assert post.stats.path == "chunks" and post.stats.post_filters == ["s contains"]
    with general_path():
        general = service.query(engine, "t", {"where": {"i": 3}})
    for k in ("key", "source", "score", "perfect", "keys_scored", "chunks", "keyed_fields",
              "post_filters", "rows_matched"):
        assert getattr(point.stats, k) == getattr(general.stats, k), k


def test_shortcut_errors_are_the_parsers(tmp_path: Path) -> None:
    rows = [{"i": 1, "f": 0.0, "s": "a", "t": 0, "ip": "10.0.0.1"}]
    engine = make_engine(tmp_path, rows, ["i"], chunk_rows=1)
    for body in ({"where": {"i": "x"}}, {"where": {"i": [1, "x"]}}, {"where": {"i": 1},
                                                                     "limit": 0},
                 {"where": {"nope": 1}}, {"where": {"i": 1}, "fields": ["nope"]}):
        with pytest.raises(BadRequest) as fast:
            service.query(engine, "t", body)
        with general_path(), pytest.raises(BadRequest) as slow:
            service.query(engine, "t", body)
        assert str(fast.value) == str(slow.value)


def test_large_versions_get_their_version_key_in_the_background(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quarry.index import keyset
    from quarry.index.keys import ChunkKey

    monkeypatch.setattr(keyset, "SYNC_ROWS", 10)
    gate = threading.Event()  # holds the background build until the first query is done
    merge = ChunkKey.merge
    monkeypatch.setattr(ChunkKey, "merge", classmethod(
        lambda cls, *a: merge(*a) if gate.wait(30) else None))
    rows = [{"i": n % 4, "f": 0.0, "s": "a", "t": 0, "ip": "10.0.0.1"} for n in range(40)]
    engine = make_engine(tmp_path, rows, ["i"], chunk_rows=9)
    first = service.query(engine, "t", {"where": {"i": 2}})
    assert first.stats.path == "chunk keys"  # meanwhile, each chunk's key
    key = engine.keys.declared(engine.records("t"))[0]
    assert key._building
    gate.set()
    deadline = time.monotonic() + 30
    while key._building and time.monotonic() < deadline:
        time.sleep(0.01)
    second = service.query(engine, "t", {"where": {"i": 2}})
    assert second.stats.path == "version key"
    same(first, second)


def test_payload_keys_within_their_budget(tmp_path: Path) -> None:
    rows = [{"i": n % 5, "f": n / 2, "s": f"v{n % 3}", "t": n, "ip": "10.0.0.1"}
            for n in range(50)]
    engine = make_engine(tmp_path, rows, ["i", "s"], chunk_rows=8, payload_budget=1 << 20)
    engine.warm("t")
    used = engine.keys.payloads.used
    assert used > 0
    page = service.query(engine, "t", {"where": {"i": 3}, "limit": 4})
    assert page.stats.path == "payload key"
    with general_path():
        same(page, service.query(engine, "t", {"where": {"i": 3}, "limit": 4}))
        rest = service.query(engine, "t", {"where": {"i": 3}, "cursor": page.next_cursor})
    assert rest.table.column("rid").to_pylist() == [n for n in range(50) if n % 5 == 3][4:]
    # A budget too small for a copy: the version key answers, nothing is reserved.
    (tmp_path / "b").mkdir()
    small = make_engine(tmp_path / "b", rows, ["i"], chunk_rows=8, payload_budget=100)
    small.warm("t")
    assert small.keys.payloads.used == 0
    assert service.query(small, "t", {"where": {"i": 3}}).stats.path == "version key"
    # Releasing the version gives the budget back.
    engine.keys.release(engine.records("t").version)
    assert engine.keys.payloads.used == 0


def test_payload_keys_are_made_in_the_background_on_first_use(tmp_path: Path) -> None:
    rows = [{"i": n % 5, "f": 0.0, "s": "a", "t": n, "ip": "10.0.0.1"} for n in range(30)]
    engine = make_engine(tmp_path, rows, ["i"], chunk_rows=7, payload_budget=1 << 20)
    first = service.query(engine, "t", {"where": {"i": 1}})
    assert first.stats.path == "version key"
    key = engine.keys.declared(engine.records("t"))[0]
    deadline = time.monotonic() + 30
    while key._payload is None and time.monotonic() < deadline:
        time.sleep(0.01)
    second = service.query(engine, "t", {"where": {"i": 1}})
    assert second.stats.path == "payload key"
    same(first, second)

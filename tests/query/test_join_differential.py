"""Keyed joins: the version-wide key's answer against the per-chunk one and against SQLite.

Hypothesis makes tables (with nulls and repeated keys), probe rows (with misses, repeats
and nulls) and join shapes; the two Quarry paths must give the same table, and the matched
(probe, row) pairs must be SQLite's.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.index.keys import KeySpec
from quarry.query import join as joins
from quarry.query import service
from quarry.store import Store

row_st = st.fixed_dictionaries({
    "i": st.one_of(st.none(), st.integers(-3, 3)),
    "s": st.one_of(st.none(), st.sampled_from(["", "a", "b", "é"])),
    "f": st.sampled_from([0.5, 1.5, -2.0]),
})
probe_st = st.fixed_dictionaries({
    "i": st.one_of(st.none(), st.integers(-4, 4)),
    "s": st.one_of(st.none(), st.sampled_from(["", "a", "b", "é", "zz"])),
    "tag": st.integers(0, 9),
})


def sqlite_pairs(rows: list[dict[str, Any]], probes: list[dict[str, Any]],
                 on: list[str]) -> list[tuple[int, int]]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (rid INTEGER, i INTEGER, s TEXT, f REAL)")
    db.execute("CREATE TABLE p (pid INTEGER, i INTEGER, s TEXT)")
    db.executemany("INSERT INTO t VALUES (?,?,?,?)",
                   [(n, r["i"], r["s"], r["f"]) for n, r in enumerate(rows)])
    db.executemany("INSERT INTO p VALUES (?,?,?)",
                   [(n, r["i"], r["s"]) for n, r in enumerate(probes)])
    cond = " AND ".join(f"p.{f} = t.{f}" for f in on)
    got = db.execute(f"SELECT p.pid, t.rid FROM p JOIN t ON {cond} ORDER BY p.pid, t.rid")
    out = [(int(a), int(b)) for a, b in got]
    db.close()
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row_st, min_size=1, max_size=40), probes=st.lists(probe_st, max_size=15),
       on=st.sampled_from([["i"], ["s"], ["i", "s"], ["s", "i"]]),
       how=st.sampled_from(["inner", "left", "anti"]), chunk_rows=st.integers(1, 25),
       project=st.booleans(), per_thread=st.sampled_from([1, 3, 20_000]))
def test_version_key_join_equals_per_chunk_and_sqlite(
        rows: list[dict[str, Any]], probes: list[dict[str, Any]], on: list[str], how: str,
        chunk_rows: int, project: bool, per_thread: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        t = pa.table({"rid": pa.array(range(len(rows)), pa.int64()),
                      "i": pa.array([r["i"] for r in rows], pa.int64()),
                      "s": pa.array([r["s"] for r in rows], pa.string()),
                      "f": pa.array([r["f"] for r in rows], pa.float64())})
        pq.write_table(t, Path(d) / "t.parquet")
        store = Store(Path(d) / "data")
        ingest_table(store, "t", [Path(d) / "t.parquet"], types={"s": "string"},
                     keys=[KeySpec(tuple(on))], chunk_rows=chunk_rows)
        engine = Engine(store, refresh_interval=0)
        ptable = pa.table({"i": pa.array([p["i"] for p in probes], pa.int64()),
                           "s": pa.array([p["s"] for p in probes], pa.string()),
                           "tag": pa.array([p["tag"] for p in probes], pa.int64())})
        params = {"on": on, "how": how, **({"fields": ["rid", "s"]} if project else {})}
        # Few probes a thread: the probes split between threads, as large joins do.
        with mock.patch.object(joins, "PARALLEL_PROBES", per_thread):
            _, fast, stats = service.join(engine, "t", ptable, params)
        assert stats.path == "version key"
        with mock.patch.object(joins, "_whole_pairs", lambda *a: None):
            _, slow, slow_stats = service.join(engine, "t", ptable, params)
        assert slow_stats.path == "chunks"
        assert fast.schema.equals(slow.schema, check_metadata=True)
        assert fast.equals(slow)
        assert stats.rows_matched == slow_stats.rows_matched
        want = sqlite_pairs(rows, probes, on)
        if how == "inner":
            got = list(zip(fast.column(joins.PROBE).to_pylist(),
                           fast.column("rid").to_pylist(), strict=True))
            assert got == want
        elif how == "anti":
            hit = {p for p, _ in want}
            assert fast.column(joins.PROBE).to_pylist() == [
                n for n in range(len(probes)) if n not in hit]
        else:
            hit = {p for p, _ in want}
            got = list(zip(fast.column(joins.PROBE).to_pylist(),
                           fast.column("rid").to_pylist(), strict=True))
            assert [x for x in got if x[1] is not None] == want
            assert sorted(p for p, r in got if r is None) == [
                n for n in range(len(probes)) if n not in hit]

"""The adaptive key builder: greedy choice within the budget, atomic swaps, aged workloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.index.keys import KeySpec
from quarry.keybuilder import KeyBuilder
from quarry.query import service
from quarry.query.advisor import Shape, Workload, suggest
from quarry.store import Store

N = 20_000


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def setup(tmp_path: Path, budget: int) -> tuple[Engine, KeyBuilder, Clock]:
    rng = np.random.default_rng(5)
    t = pa.table({"a": rng.integers(0, 1000, N), "b": rng.integers(0, 10, N),
                  "c": pa.array([f"c{x}" for x in rng.integers(0, 300, N)]),
                  "d": rng.normal(size=N)})
    pq.write_table(t, tmp_path / "t.parquet")
    store = Store(tmp_path / "data")
    ingest_table(store, "t", [tmp_path / "t.parquet"], chunk_rows=5000)
    engine = Engine(store, refresh_interval=0, key_budget=budget)
    clock = Clock()
    engine.workload = Workload(half_life=60.0, clock=clock)
    return engine, KeyBuilder(engine), clock


def test_greedy_suggestions_order_fields_by_score() -> None:
    types = {"a": "int", "b": "int", "c": "string", "ip": "ip"}
    shapes = {Shape(frozenset({"a", "b"}), frozenset()): 10.0,
              Shape(frozenset({"b"}), frozenset({"c"})): 6.0,
              Shape(frozenset({"ip"}), frozenset()): 3.0,
              Shape(frozenset({"a"}), frozenset()): 1.0}  # under min_weight: does not pay
    got = suggest(shapes, types, rows=100, budget=10_000)
    # b is in two shapes, a in one: b leads. Then b's score is zeroed, and (b, c) still
    # scores by c (6 x 8 bytes), tying ip (3 x 16) and winning on weight; ranges come last.
    assert [s.spec for s in got] == [KeySpec(("b", "a")), KeySpec(("b", "c")),
                                     KeySpec(("ip",))]
    assert len(suggest(shapes, types, rows=100, budget=1200)) == 1  # room for one key
    have = suggest(shapes, types, rows=100, budget=10_000, existing=[KeySpec(("b", "a", "c"))])
    assert [s.spec for s in have] == [KeySpec(("b", "c")), KeySpec(("ip",))]


def test_builder_makes_queries_use_keys_within_budget(tmp_path: Path) -> None:
    engine, builder, clock = setup(tmp_path, budget=N * 12 * 2 + 250_000)
    q1 = {"where": {"a": 7, "b": 3}}
    q2 = {"where": {"c": "c5", "d": {"gt": 0}}}
    q3 = {"where": {"b": 1}}
    before = [service.query(engine, "t", q).stats for q in (q1, q2, q3) for _ in range(3)]
    assert all(s.key is None for s in before)
    report = builder.run_once()
    # Two keys: (b, a) serves the b-only shape too; both fit in the budget.
    assert sorted(report["t"]["keys"]) == ["b,a", "c,d"]
    assert engine.keys.built_bytes() <= engine.key_budget
    after = service.query(engine, "t", q1)
    assert after.stats.key in ("a,b", "b,a")
    assert after.stats.rows_examined == after.stats.rows_matched
    assert sorted(after.table.column("a").to_pylist()) == sorted(
        service.query(engine, "t", {**q1, "fields": ["a"]}).table.column("a").to_pylist())
    # Time passes with only q2 asked: the other keys stop paying and are dropped.
    clock.t += 3600
    for _ in range(5):
        service.query(engine, "t", q2)
    report = builder.run_once()
    assert report["t"]["keys"] == ["c,d"] and report["t"]["dropped"]
    assert service.query(engine, "t", q2).stats.key == "c,d"


def test_accepted_keys_are_kept_and_zero_budget_builds_nothing(tmp_path: Path) -> None:
    engine, builder, _ = setup(tmp_path, budget=0)
    for _ in range(5):
        service.query(engine, "t", {"where": {"a": 1}})
    assert builder.run_once()["t"]["keys"] == []
    builder.accept("t", KeySpec(("c",)))
    assert builder.run_once()["t"]["keys"] == ["c"]
    assert service.query(engine, "t", {"where": {"c": "c1"}}).stats.source == "accepted"
    assert KeyBuilder(engine).accepted.get("t") == [KeySpec(("c",))]  # persisted


def test_background_thread_starts_and_stops(tmp_path: Path) -> None:
    engine, _, _ = setup(tmp_path, budget=1 << 30)
    builder = KeyBuilder(engine, interval=0.05)
    for _ in range(3):
        service.query(engine, "t", {"where": {"b": 2}})
    builder.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while builder.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        builder.stop()
    assert builder.runs >= 1 and builder.last_error is None
    assert service.query(engine, "t", {"where": {"b": 2}}).stats.key == "b"

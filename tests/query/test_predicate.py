"""The predicate tree: parsing, binding, and one reproducer for each wrong answer of the first
filter language (issue 15), each run through the query service as users meet it."""

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quarry.cluster import wire
from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.index.keys import KeySpec
from quarry.index.keyset import build_key
from quarry.query import service
from quarry.query.predicate import (
    AlwaysTrue,
    And,
    In,
    IsNull,
    Not,
    Or,
    Range,
    bind,
    parse,
)
from quarry.store import Store


def make(tmp_path: Path, table: pa.Table, *, keys: tuple[str, ...] = (),
         types: dict[str, str] | None = None, chunk_rows: int = 4) -> Engine:
    pq.write_table(table, tmp_path / "t.parquet")
    store = Store(tmp_path / "data")
    ingest_table(store, "t", [tmp_path / "t.parquet"], types=types,
                 keys=[KeySpec.parse(k) for k in keys], chunk_rows=chunk_rows)
    return Engine(store, refresh_interval=0)


def rids(engine: Engine, where: Any) -> list[int]:
    page = service.query(engine, "t", {"where": where, "fields": ["rid"], "limit": 100_000})
    return sorted(page.table.column("rid").to_pylist())


def ints(n: int = 10, nulls: tuple[int, ...] = ()) -> pa.Table:
    return pa.table({"rid": pa.array(range(n), pa.int64()),
                     "x": pa.array([None if i in nulls else i for i in range(n)], pa.int64())})


# -- parsing and binding ---------------------------------------------------------------------

def test_parse_is_backward_compatible_and_adds_combinators() -> None:
    assert parse(None) == AlwaysTrue()
    assert parse({"a": 1}) == In("a", (1,))
    assert parse({"a": [1, 2], "b": {"is_null": True}}) == And((In("a", (1, 2)), IsNull("b")))
    assert parse({"or": [{"a": 1}, {"not": {"b": {"is_null": False}}}]}) == Or(
        (In("a", (1,)), IsNull("b")))  # not not: the same in three-valued logic
    assert parse({"a": {"not": {"gt": 3, "ne": 5}}}) == Not(And(
        (Range("a", lo=3, lo_incl=False), Not(In("a", (5,))))))


def test_bind_coerces_and_merges_ranges() -> None:
    types = {"a": "int", "t": "timestamp", "ip": "ip"}
    assert bind(parse({"a": {"gt": 5, "gte": 0, "lte": 9}}), types) == Range("a", 5, 9, False)
    assert bind(parse({"t": "1970-01-01T00:00:01Z"}), types) == In("t", (1_000_000,))
    b = bind(parse({"ip": "1.2.3.0"}), types)
    assert isinstance(b, In) and b.values[0][-4:] == bytes([1, 2, 3, 0])


@pytest.mark.parametrize(("where", "field"), [
    ({"nope": 1}, "nope"),
    ({"a": "x"}, "a"),
    ({"a": {"prefix": "x"}}, "a"),
    ({"s": {"gt": 1}}, "s"),
    ({"s": {"regex": "("}}, "s"),
    ({"a": {"in": list(range(100_001))}}, "a"),
    ({"t": ""}, "t"),
    ({"t": {"gte": "   "}}, "t"),
    ({"ip": "not-an-ip"}, "ip"),
    ({"a": {"eq": None}}, "a"),
    ({"a": {"is_null": 1}}, "a"),
    ({"a": {"zz": 1}}, "a"),
    ({"or": [{"a": 1}, {"b": {"eq": True}}]}, "b"),
    ({"a": {"gt": 1 << 70}}, "a"),
])
def test_bad_predicates_are_400s_naming_the_field(where: Any, field: str) -> None:
    types = {"a": "int", "b": "float", "s": "string", "t": "timestamp", "ip": "ip"}
    with pytest.raises(BadRequest) as e:
        bind(parse(where), types)
    assert e.value.extra.get("field") == field
    assert repr(field) in e.value.detail


def test_unbound_trees_travel_on_the_wire() -> None:
    tree = parse({"or": [{"a": {"gt": 1, "lt": 5}}, {"not": {"s": {"prefix": "x"}}}],
                  "b": {"is_null": True}})
    assert wire.unpack(wire.pack(tree)) == tree


# -- the wrong answers of the first filter language ------------------------------------------

def test_several_range_ops_on_one_field_are_anded(tmp_path: Path) -> None:
    engine = make(tmp_path, ints())
    assert rids(engine, {"x": {"gt": 5, "gte": 0}}) == [6, 7, 8, 9]
    assert rids(engine, {"x": {"lt": 3, "lte": 8}}) == [0, 1, 2]


def test_not_negates_the_conjunction(tmp_path: Path) -> None:
    engine = make(tmp_path, ints())
    assert rids(engine, {"x": {"not": {"gt": 3, "ne": 5}}}) == [0, 1, 2, 3, 5]


def test_open_range_does_not_match_nulls(tmp_path: Path) -> None:
    engine = make(tmp_path, ints(nulls=(2, 7)))
    assert rids(engine, {"x": {"range": [None, None]}}) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert rids(engine, {"x": {"is_null": True}}) == [2, 7]
    assert rids(engine, {"not": {"x": {"gt": 4}}}) == [0, 1, 3, 4]  # null stays unknown


def test_float_column_with_inf_and_nan(tmp_path: Path) -> None:
    vals = [1.0, float("inf"), float("nan"), -float("inf"), 5.0, None, 2.5, float("nan")]
    t = pa.table({"rid": pa.array(range(len(vals)), pa.int64()), "f": pa.array(vals, pa.float64())})
    engine = make(tmp_path, t, chunk_rows=3)
    assert rids(engine, {"f": {"gt": 2}}) == [1, 4, 6]
    assert rids(engine, {"f": {"lt": 2}}) == [0, 3]
    assert rids(engine, {"f": {"range": [None, None]}}) == [0, 1, 3, 4, 6]
    assert rids(engine, {"not": {"f": {"gt": 2}}}) == [0, 2, 3, 7]  # NaN is not > 2
    assert rids(engine, {"f": 5.0}) == [4]


def test_key_on_float_column_open_ranges_skip_nan(tmp_path: Path) -> None:
    vals = [1.0, float("nan"), 3.0, float("nan"), 0.5, None]
    t = pa.table({"rid": pa.array(range(len(vals)), pa.int64()), "f": pa.array(vals, pa.float64())})
    engine = make(tmp_path, t, keys=("f",), chunk_rows=10)
    assert rids(engine, {"f": {"gte": 0.75}}) == [0, 2]
    assert rids(engine, {"f": {"lt": 2}}) == [0, 4]
    assert rids(engine, {"f": {"range": [None, None]}}) == [0, 2, 4]
    ex = service.explain(engine, "t", {"where": {"f": {"gte": 0.75}}})
    assert ex["key"] == "f"


def test_empty_timestamp_is_a_400(tmp_path: Path) -> None:
    t = pa.table({"rid": pa.array([0, 1], pa.int64()), "ts": pa.array([10, 20], pa.int64())})
    engine = make(tmp_path, t, types={"ts": "timestamp"})
    for where in ({"ts": ""}, {"ts": {"gte": ""}}, {"ts": {"range": ["", 5]}}):
        with pytest.raises(BadRequest) as e:
            rids(engine, where)
        assert e.value.extra.get("field") == "ts"
    assert rids(engine, {"ts": {"gte": "1970-01-01T00:00:15Z"}}) == [1]


IPS = ["1.2.3.0", "1.2.3.4", "10.0.0.0", "::", "2001:db8::"]


def ip_table() -> pa.Table:
    return pa.table({"rid": pa.array(range(len(IPS)), pa.int64()), "ip": pa.array(IPS)})


def test_built_key_on_ip_finds_addresses_ending_in_a_zero_byte(tmp_path: Path) -> None:
    engine = make(tmp_path, ip_table(), types={"ip": "ip"}, chunk_rows=10)
    view = engine.records("t")
    k = build_key(view, KeySpec.parse("ip"))
    engine.keys.swap(view.version, {k.spec: k})
    for i, ip in enumerate(IPS):
        assert rids(engine, {"ip": ip}) == [i], ip
        assert rids(engine, {"ip": [ip, "9.9.9.9"]}) == [i], ip
    assert service.explain(engine, "t", {"where": {"ip": "1.2.3.0"}})["key"] == "ip"


def test_declared_key_on_ip_with_zero_bytes_ingests(tmp_path: Path) -> None:
    engine = make(tmp_path, ip_table(), types={"ip": "ip"}, keys=("ip",), chunk_rows=2)
    for i, ip in enumerate(IPS):
        assert rids(engine, {"ip": ip}) == [i], ip
    assert rids(engine, {"ip": {"gte": "1.2.3.0", "lte": "10.0.0.0"}}) == [0, 1, 2]

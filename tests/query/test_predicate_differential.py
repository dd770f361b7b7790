"""Random tables and random predicate trees: the rows ``query`` returns and the count ``stats``
returns, against DuckDB over the same Arrow table.

The SQL is written from the JSON independently of Quarry's parser. Semantics are SQL's
three-valued logic, with one deliberate difference spelt out here: DuckDB orders NaN above
every number, Quarry (like IEEE 754 and Arrow) leaves it unordered, so the oracle's order
comparisons on a float column add ``NOT isnan(f)``.
"""

import ipaddress
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.index.keys import KeySpec
from quarry.index.keyset import build_key
from quarry.query import service
from quarry.query.predicate import parse
from quarry.stats.dataset import dataset_stats
from quarry.stats.request import Aggregate, StatsRequest
from quarry.store import Store

INF = float("inf")
IPS = ["10.0.0.1", "1.2.3.0", "192.168.1.1", "::", "2001:db8::", "::1"]
STRS = ["", "a", "ab", "abc", "b", "ba", "héllo", "a.b"]
FLOATS = [-1.5, 0.0, 0.25, 2.0, INF, -INF, float("nan")]
T0 = 1_600_000_000
FIELDS = ("i", "f", "s", "t", "ip")

row_st = st.fixed_dictionaries({
    "i": st.one_of(st.none(), st.integers(-3, 3)),
    "f": st.one_of(st.none(), st.sampled_from(FLOATS)),
    "s": st.one_of(st.none(), st.sampled_from(STRS)),
    "t": st.one_of(st.none(), st.integers(0, 20)),
    "ip": st.one_of(st.none(), st.sampled_from(IPS)),
})


def values(field: str) -> st.SearchStrategy[Any]:
    if field == "i":
        return st.integers(-4, 4)
    if field == "f":
        return st.sampled_from([-2.0, -1.5, 0.0, 0.3, 2.0, 1e9])
    if field == "s":
        return st.sampled_from([*STRS, "zz"])
    if field == "t":
        return st.integers(-1, 21).map(lambda x: T0 + x)
    return st.sampled_from([*IPS, "8.8.8.8"])


def ops(field: str) -> st.SearchStrategy[dict[str, Any]]:
    v = values(field)
    some: dict[str, st.SearchStrategy[Any]] = {
        "eq": v, "ne": v, "in": st.lists(v, max_size=3),
        "is_null": st.booleans()}
    if field != "s":
        some |= {"gt": v, "gte": v, "lt": v, "lte": v,
                 "range": st.tuples(st.one_of(st.none(), v), st.one_of(st.none(), v)).map(list)}
    else:
        some |= {"prefix": st.sampled_from(["", "a", "ab", "h"]),
                 "contains": st.sampled_from(["a", "b", "."]),
                 "regex": st.sampled_from(["^a", "b$", "a.b", "^$"])}
    names = sorted(some)
    return st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True).flatmap(
        lambda ks: st.fixed_dictionaries({k: some[k] for k in ks}))


def cond(field: str) -> st.SearchStrategy[Any]:
    o = ops(field)
    return st.one_of(values(field), st.lists(values(field), max_size=3), o,
                     o.map(lambda d: {"not": d}))


leaf_st = st.sampled_from(FIELDS).flatmap(lambda f: cond(f).map(lambda c: {f: c}))
where_st = st.recursive(leaf_st, lambda kids: st.one_of(
    st.lists(kids, min_size=1, max_size=3).map(lambda ws: {"and": ws}),
    st.lists(kids, min_size=1, max_size=3).map(lambda ws: {"or": ws}),
    kids.map(lambda w: {"not": w}),
    st.tuples(kids, kids).map(lambda p: {**p[0], **p[1]})), max_leaves=6)


def packed(ip: str) -> bytes:
    a = ipaddress.ip_address(ip)
    return a.packed if a.version == 6 else b"\0" * 10 + b"\xff\xff" + a.packed


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({
        "rid": pa.array(range(len(rows)), pa.int64()),
        "i": pa.array([r["i"] for r in rows], pa.int64()),
        "f": pa.array([r["f"] for r in rows], pa.float64()),
        "s": pa.array([r["s"] for r in rows], pa.string()),
        "t": pa.array([None if r["t"] is None else T0 + r["t"] for r in rows], pa.int64()),
        "ip": pa.array([r["ip"] for r in rows], pa.string()),
    })


def oracle_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The same rows as DuckDB sees them: times in µs, addresses as 16 bytes."""
    t = table_of(rows)
    return t.set_column(4, "t", pa.array(
        [None if r["t"] is None else (T0 + r["t"]) * 1_000_000 for r in rows], pa.int64())
    ).set_column(5, "ip", pa.array([None if r["ip"] is None else packed(r["ip"])
                                    for r in rows], pa.binary()))


class Sql:
    def __init__(self) -> None:
        self.params: list[Any] = []

    def val(self, field: str, v: Any) -> str:
        if field == "ip":
            v = packed(v)
        elif field == "t":
            v = v * 1_000_000
        self.params.append(v)
        return "?"

    def cmp(self, field: str, op: str, v: Any) -> str:
        out = f"{field} {op} {self.val(field, v)}"
        return f"({out} AND NOT isnan({field}))" if field == "f" else f"({out})"

    def ops(self, field: str, spec: Any) -> str:
        if not isinstance(spec, dict):
            spec = {"in": spec} if isinstance(spec, list) else {"eq": spec}
        parts = []
        for op, v in spec.items():
            if op == "eq":
                parts.append(f"({field} = {self.val(field, v)})")
            elif op == "ne":
                parts.append(f"({field} <> {self.val(field, v)})")
            elif op == "in":
                parts.append(f"({field} IN ({', '.join(self.val(field, x) for x in v)}))" if v
                             else f"(CASE WHEN {field} IS NULL THEN NULL ELSE FALSE END)")
            elif op in ("gt", "gte", "lt", "lte"):
                parts.append(self.cmp(field, {"gt": ">", "gte": ">=", "lt": "<",
                                              "lte": "<="}[op], v))
            elif op == "range":
                ends = ([self.cmp(field, ">=", v[0])] if v[0] is not None else []) + (
                    [self.cmp(field, "<=", v[1])] if v[1] is not None else [])
                any_value = "NOT isnan(f)" if field == "f" else "TRUE"
                parts.append(" AND ".join(ends) if ends else
                             f"(CASE WHEN {field} IS NULL THEN NULL ELSE {any_value} END)")
            elif op == "prefix":
                parts.append(f"starts_with({field}, {self.val(field, v)})")
            elif op == "contains":
                parts.append(f"contains({field}, {self.val(field, v)})")
            elif op == "regex":
                parts.append(f"regexp_matches({field}, {self.val(field, v)})")
            elif op == "is_null":
                parts.append(f"({field} IS {'' if v else 'NOT '}NULL)")
            elif op == "not":
                parts.append(f"(NOT {self.ops(field, v)})")
        return "(" + " AND ".join(parts) + ")"

    def where(self, w: dict[str, Any]) -> str:
        parts = []
        for k, v in w.items():
            if k == "and":
                parts.append("(" + " AND ".join(self.where(x) for x in v) + ")")
            elif k == "or":
                parts.append("(" + " OR ".join(self.where(x) for x in v) + ")")
            elif k == "not":
                parts.append(f"(NOT {self.where(v)})")
            else:
                parts.append(self.ops(k, v))
        return "(" + (" AND ".join(parts) or "TRUE") + ")"


def oracle(rows: list[dict[str, Any]], where: dict[str, Any]) -> list[int]:
    sql = Sql()
    clause = sql.where(where)
    con = duckdb.connect()
    try:
        con.register("r", oracle_table(rows))
        got = con.execute(f"SELECT rid FROM r WHERE {clause} IS TRUE ORDER BY rid",
                          sql.params).fetchall()
    finally:
        con.close()
    return [x[0] for x in got]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=st.lists(row_st, max_size=30), where=where_st,
       keys=st.lists(st.sampled_from(["i", "f", "s,i", "ip", "t,ip", "f,s"]), max_size=2,
                     unique=True),
       built=st.lists(st.sampled_from(["ip", "f", "s,i"]), max_size=1),
       chunk_rows=st.integers(1, 12))
def test_query_and_stats_match_duckdb(rows: list[dict[str, Any]], where: dict[str, Any],
                                      keys: list[str], built: list[str],
                                      chunk_rows: int) -> None:
    want = oracle(rows, where)
    with tempfile.TemporaryDirectory() as d:
        pq.write_table(table_of(rows), Path(d) / "t.parquet")
        store = Store(Path(d) / "data")
        ingest_table(store, "t", [Path(d) / "t.parquet"],
                     types={"t": "timestamp", "ip": "ip", "s": "string", "f": "float"},
                     keys=[KeySpec.parse(k) for k in keys], chunk_rows=chunk_rows)
        engine = Engine(store, refresh_interval=0)
        if built and rows:
            view = engine.records("t")
            k = build_key(view, KeySpec.parse(built[0]))
            engine.keys.swap(view.version, {k.spec: k})
        page = service.query(engine, "t", {"where": where, "limit": 10_000})
        assert sorted(page.table.column("rid").to_pylist()) == want
        if rows:
            out = dataset_stats(engine, "t", StatsRequest((Aggregate("count"),), parse(where)))
            assert out["results"]["count"] == len(want)

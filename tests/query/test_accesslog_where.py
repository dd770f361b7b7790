"""Filters on access-log datasets, whose chunks store physical Arrow types (uint16 status,
dictionary strings, plain request text, 16-byte addresses, µs times): the binder works on
logical types, so every field filters as users expect."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.textblocks import expand_sources
from quarry.query import service
from quarry.query.executor import plain, to_records
from quarry.store import Store

LOG = Path(__file__).resolve().parent.parent / "fixtures" / "accesslogs" / "apache_logs_head1500"
T0 = 1431857103.0  # 17/May/2015:10:05:03 +0000, the first line


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, list[dict[str, Any]]]:
    store = Store(tmp_path_factory.mktemp("logs") / "data")
    ingest(store, "weblogs", expand_sources([str(LOG)]), chunk_rows=500)
    engine = Engine(store, refresh_interval=0)
    view = engine.records("weblogs")
    rows = to_records(plain(pa.concat_tables([plain(c.table) for c in view.chunks])))
    return engine, rows


def count(engine: Engine, where: Any) -> int:
    page = service.query(engine, "weblogs", {"where": where, "limit": 100_000})
    return page.table.num_rows


CASES: list[tuple[Any, Callable[[dict[str, Any]], bool]]] = [
    ({"status": {"gte": 400}}, lambda r: r["status"] is not None and r["status"] >= 400),
    ({"status": [404, 500]}, lambda r: r["status"] in (404, 500)),
    ({"status": 200, "size": {"lt": 1000}},
     lambda r: r["status"] == 200 and r["size"] is not None and r["size"] < 1000),
    ({"ts": {"gte": "2015-05-17T12:00:00Z", "lt": T0 + 4 * 3600}},
     lambda r: T0 + 6897 <= r["ts"] < T0 + 4 * 3600),
    ({"agent": {"contains": "bot"}}, lambda r: r["agent"] is not None and "bot" in r["agent"]),
    ({"agent": {"not": {"contains": "bot"}}},
     lambda r: r["agent"] is not None and "bot" not in r["agent"]),
    ({"request": {"prefix": "GET /blog"}}, lambda r: r["request"].startswith("GET /blog")),
    ({"or": [{"status": {"gte": 500}}, {"referer": {"is_null": True}}]},
     lambda r: (r["status"] or 0) >= 500 or r["referer"] is None),
    ({"ip": {"gte": "66.0.0.0", "lt": "67.0.0.0"}}, lambda r: r["ip"].startswith("66.")),
]


@pytest.mark.parametrize(("where", "want"), CASES)
def test_access_log_fields_filter_by_logical_type(
        logs: tuple[Engine, list[dict[str, Any]]], where: Any,
        want: Callable[[dict[str, Any]], bool]) -> None:
    engine, rows = logs
    n = sum(1 for r in rows if want(r))
    assert n > 0  # each case selects something, so a filter that drops all rows shows
    assert count(engine, where) == n


def test_access_log_schema_shows_logical_types(
        logs: tuple[Engine, list[dict[str, Any]]]) -> None:
    engine, _ = logs
    schema = {f["name"]: f["type"] for f in engine.describe("weblogs")["schema"]}
    assert schema == {"ip": "ip", "ts": "timestamp", "ident": "string", "user": "string",
                      "request": "string", "status": "int", "size": "int",
                      "referer": "string", "agent": "string"}
    assert engine.records("weblogs").describe()["schema"] == [
        {"name": n, "type": t} for n, t in schema.items()]

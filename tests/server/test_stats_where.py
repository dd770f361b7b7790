"""``stats`` takes the query's ``where``: on an access log, with the older ``filters`` list
translated into the same tree, and never a key silently ignored."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.textblocks import expand_sources
from quarry.query.executor import plain, to_records
from quarry.store import Store
from tests.support import FIXTURES

LOG = FIXTURES / "accesslogs" / "apache_logs_head1500"


@pytest.fixture
def logs(store: Store, engine: Engine) -> list[dict[str, Any]]:
    ingest(store, "weblogs", expand_sources([str(LOG)]), chunk_rows=400)
    view = engine.records("weblogs")
    return to_records(plain(pa.concat_tables([plain(c.table) for c in view.chunks])))


def stats(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/datasets/weblogs/stats", json={"aggregates": ["count"], **body})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_where_is_applied(client: TestClient, logs: list[dict[str, Any]]) -> None:
    heads = sum(1 for r in logs if r["request"].startswith("HEAD "))
    assert 0 < heads < len(logs)
    assert stats(client, {"where": {"request": {"prefix": "HEAD "}}})["results"]["count"] == heads
    errors = sum(1 for r in logs if r["status"] >= 400)
    out = stats(client, {"where": {"status": {"gte": 400}},
                         "aggregates": ["count", "top_k:status:3"]})
    assert out["results"]["count"] == errors
    bots = sum(1 for r in logs if r["agent"] and "bot" in r["agent"].lower())
    got = stats(client, {"where": {"agent": {"regex": "(?i)bot"}}})["results"]["count"]
    assert got == bots


def test_in_on_dictionary_strings(client: TestClient, logs: list[dict[str, Any]]) -> None:
    agents = sorted({r["agent"] for r in logs if r["agent"]})[:2]
    want = sum(1 for r in logs if r["agent"] in agents)
    out = stats(client, {"filters": [{"field": "agent", "op": "in", "value": agents}]})
    assert out["results"]["count"] == want
    assert stats(client, {"where": {"agent": agents}})["results"]["count"] == want


def test_filters_and_where_are_anded(client: TestClient, logs: list[dict[str, Any]]) -> None:
    t_mid = logs[len(logs) // 2]["ts"]
    want = sum(1 for r in logs if r["ts"] >= t_mid and r["status"] == 200)
    out = stats(client, {"where": {"status": 200},
                         "filters": [{"field": "ts", "op": "range", "value": [t_mid, None]}]})
    assert out["results"]["count"] == want
    assert out["chunks_pruned"] >= 1  # the ts zone maps skip the early chunks


@pytest.mark.parametrize(("body", "field"), [
    ({"where": {"nope": 1}}, "nope"),
    ({"where": {"status": "x"}}, "status"),
    ({"where": {"agent": {"gt": 3}}}, "agent"),
    ({"where": {"agent": {"regex": "("}}}, "agent"),
    ({"where": {"ts": ""}}, "ts"),
    ({"filters": [{"field": "status", "op": "eq", "value": "x"}]}, "status"),
])
def test_bad_where_is_a_400_naming_the_field(client: TestClient, logs: list[dict[str, Any]],
                                             body: dict[str, Any], field: str) -> None:
    r = client.post("/datasets/weblogs/stats", json={"aggregates": ["count"], **body})
    assert r.status_code == 400, r.text
    assert repr(field) in r.json()["detail"]


def test_unknown_keys_are_refused(client: TestClient, logs: list[dict[str, Any]]) -> None:
    r = client.post("/datasets/weblogs/stats", json={"aggregates": ["count"],
                                                     "wehre": {"status": 200}})
    assert r.status_code == 400 and "'wehre'" in r.json()["detail"]

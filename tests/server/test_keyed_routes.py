"""The keyed-query routes: query, explain, keys, join; bad filters are clear 400s."""

from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.index.keys import KeySpec
from quarry.server.app import create_app
from quarry.server.settings import ServeSettings

CSV = "\n".join(["id,city,age,seen,ip,score"] + [
    f"{i},{['Paris', 'Oslo', 'Lima', 'Porto'][i % 4]},{20 + i % 50},"
    f"2024-01-{1 + i % 28:02d}T00:00:00Z,10.1.{i % 7}.{i % 200},{i / 10}" for i in range(400)])


@pytest.fixture
def kc(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "people.csv").write_text(CSV + "\n")
    ingest_table(engine.store, "people", [tmp_path / "people.csv"], sort_key="id",
                 keys=[KeySpec.parse("city,age")], chunk_rows=64)
    s = ServeSettings(data=str(engine.store.root), key_interval=0)
    with TestClient(create_app(engine, s)) as c:
        yield c


def test_schema_is_inferred(kc: TestClient) -> None:
    d = kc.get("/datasets/people").json()
    assert {f["name"]: f["type"] for f in d["schema"]} == {
        "id": "int", "city": "string", "age": "int", "seen": "timestamp", "ip": "ip",
        "score": "float"}


def test_query_with_key_projection_and_paging(kc: TestClient) -> None:
    body = {"where": {"city": ["Paris", "Lima"], "age": {"gte": 30, "lt": 40}},
            "fields": ["id", "city", "age"], "limit": 7, "explain": True}
    r = kc.post("/datasets/people/query", json=body)
    assert r.status_code == 200
    j = r.json()
    assert j["explain"]["key"] == "city,age" and j["explain"]["perfect"]
    want = [i for i in range(400) if i % 4 in (0, 2) and 30 <= 20 + i % 50 < 40]
    got = [x["id"] for x in j["rows"]]
    while j["next_cursor"]:
        j = kc.post("/datasets/people/query", json={**body, "cursor": j["next_cursor"]}).json()
        got += [x["id"] for x in j["rows"]]
    assert got == want
    assert set(j["rows"][0]) == {"id", "city", "age"}


def test_post_filters_not_and_stream(kc: TestClient) -> None:
    body = {"where": {"city": {"prefix": "P", "not": {"eq": "Porto"}},
                      "ip": {"gte": "10.1.2.0", "lte": "10.1.2.255"},
                      "seen": {"lt": "2024-01-20T00:00:00Z"}}, "stream": True}
    r = kc.post("/datasets/people/query", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    rows = [orjson.loads(x) for x in r.text.splitlines()]
    want = [i for i in range(400) if i % 4 == 0 and i % 7 == 2 and 1 + i % 28 < 20]
    assert [x["id"] for x in rows] == want and rows[0]["ip"].startswith("10.1.2.")
    e = kc.post("/datasets/people/explain", json={"where": {"id": {"gte": 390}}}).json()
    assert e["chunks_pruned"] == 6 and e["rows_examined"] == 16 and e["key"] is None


@pytest.mark.parametrize(("where", "says"), [
    ({"nope": 1}, "unknown field 'nope'"),
    ({"age": "old"}, "'age' is int"),
    ({"ip": "not-an-ip"}, "not-an-ip"),
    ({"city": {"gte": 3}}, "city"),
    ({"age": {"prefix": "2"}}, "prefix needs a string field"),
    ({"age": {"like": 2}}, "unknown operator 'like'"),
    ({"city": {"regex": "("}}, "invalid regex"),
    ({"age": list(range(100_001))}, "at most 100000"),
    ({"seen": {"gte": "yesterday"}}, "seen"),
    ("city=Paris", "where must be an object"),
])
def test_bad_filters_are_400(kc: TestClient, where: object, says: str) -> None:
    r = kc.post("/datasets/people/query", json={"where": where})
    assert r.status_code == 400, r.text
    assert says in r.json()["detail"]


def test_other_bad_requests(kc: TestClient) -> None:
    assert kc.post("/datasets/people/query", json={"fields": ["x"]}).status_code == 400
    assert kc.post("/datasets/people/query", json={"limit": 0}).status_code == 400
    assert kc.post("/datasets/people/query", json={"cursor": "garbage"}).status_code == 400
    assert kc.post("/datasets/people/query", content=b"[1]").status_code == 400
    assert kc.post("/datasets/nobody/query", json={}).status_code == 404
    assert kc.post("/datasets/people/join", json={"rows": [{"a": 1}], "on": ["a"]}
                   ).status_code == 400


def test_keys_workload_suggest_build_accept(kc: TestClient) -> None:
    for _ in range(3):
        kc.post("/datasets/people/query", json={"where": {"ip": "10.1.2.3", "age": 23}})
    k = kc.get("/datasets/people/keys").json()
    assert [x["fields"] for x in k["declared"]] == [["city", "age"]] and k["built"] == []
    assert k["declared"][0]["uses"] == 0 and k["declared"][0]["size"] > 0
    assert k["suggested"][0]["fields"] == ["ip", "age"]
    b = kc.post("/datasets/people/keys/build").json()
    assert [(x["fields"], x["state"]) for x in b["built"]] == [(["ip", "age"], "built")]
    e = kc.post("/datasets/people/explain", json={"where": {"ip": "10.1.2.3", "age": 23}}).json()
    assert e["key"] == "ip,age" and e["source"] == "built" and e["perfect"]
    a = kc.post("/datasets/people/keys", json={"fields": ["score"]}).json()
    assert ["score"] in a["accepted"]
    assert "accepted" in [x["state"] for x in a["built"]]
    assert kc.post("/datasets/people/keys", json={"fields": ["zz"]}).status_code == 400


def test_join_json_csv_arrow(kc: TestClient) -> None:
    probes = [{"city": "Oslo", "age": 21, "tag": "x"}, {"city": "Rome", "age": 1, "tag": "y"}]
    body = {"rows": probes, "on": ["city", "age"], "fields": ["id"], "explain": True}
    j = kc.post("/datasets/people/join", json=body).json()
    want = [i for i in range(400) if i % 4 == 1 and 20 + i % 50 == 21]
    assert [r["id"] for r in j["rows"]] == want and {r["tag"] for r in j["rows"]} == {"x"}
    assert j["explain"]["key"] == "city,age"
    left = kc.post("/datasets/people/join", json={**body, "how": "left"}).json()
    assert [r["_probe"] for r in left["rows"]] == [0] * len(want) + [1]
    anti = kc.post("/datasets/people/join?on=city,age&how=anti",
                   content=b"city,age\nOslo,21\nRome,1\n",
                   headers={"content-type": "text/csv"}).json()
    assert [(r["city"], r["_probe"]) for r in anti["rows"]] == [("Rome", 1)]
    sink = pa.BufferOutputStream()
    t = pa.table({"id": [5, 6, 999]})
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    r = kc.post("/datasets/people/join?on=id&fields=id,city", content=sink.getvalue().to_pybytes(),
                headers={"content-type": "application/vnd.apache.arrow.stream",
                         "accept": "application/vnd.apache.arrow.stream"})
    got = pa.ipc.open_stream(r.content).read_all()
    assert got.column("id").to_pylist() == [5, 6]
    res = kc.post("/datasets/people/join", json={
        "rows": [{"city": "Oslo"}], "on": ["city"], "where": {"age": {"lt": 22}},
        "fields": ["id"]}).json()
    assert [r["id"] for r in res["rows"]] == [i for i in range(400)
                                             if i % 4 == 1 and 20 + i % 50 < 22]


def test_accept_key_of_non_names_is_400(kc: TestClient) -> None:
    r = kc.post("/datasets/people/keys", json={"fields": [True], "build": False})
    assert r.status_code == 400 and "field names" in r.json()["detail"]

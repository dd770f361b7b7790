"""/shards routes, records answers through the dispatcher, partial answers over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from quarry.cluster import wire
from quarry.cluster.ops import Task
from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.textblocks import expand_sources
from quarry.query.model import DistinctQuery, Window
from tests.cluster.test_wire import HOSTILE
from tests.conftest import make_client
from tests.support import FIXTURES, free_port

LOGS = FIXTURES / "iplog" / "stable_dispatcher"


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    ingest(engine.store, "iplog", expand_sources([str(LOGS)]), chunk_rows=500)
    return engine


@pytest.fixture
def c(loaded: Engine) -> Iterator[TestClient]:
    with make_client(loaded, shards=4) as client:
        yield client


def test_shards_listed_woken_and_put_to_sleep(c: TestClient) -> None:
    body = c.get("/shards").json()
    assert body["backend"] == "in-process" and body["shards"] == []
    body = c.get("/shards", params={"dataset": "iplog"}).json()
    ids = [s["id"] for s in body["shards"]]
    assert len(ids) == 4 and all(s["state"] == "asleep" for s in body["shards"])
    assert {"memory_bytes", "awake_bytes", "load", "rows", "time_range"} <= set(body["shards"][0])
    r = c.post(f"/shards/{ids[2]}/wake")
    assert r.status_code == 200 and r.json()["state"] == "awake" and r.json()["memory_bytes"] > 0
    r = c.post(f"/shards/{ids[2]}/sleep")
    assert r.json()["state"] == "asleep" and r.json()["held_asleep"]
    assert c.get("/datasets/iplog/find/ips", params={"limit": 2}).status_code == 200
    after = {s["id"]: s for s in c.get("/shards").json()["shards"]}
    assert after[ids[2]]["state"] == "asleep" and after[ids[0]]["state"] == "awake"
    assert after[ids[0]]["load"]["queries"] == 1
    r = c.post("/shards/iplog@000000000000/3/wake")
    assert r.status_code == 404 and "GET /shards" in r.json()["detail"]


def test_memory_budget_over_http(loaded: Engine) -> None:
    with make_client(loaded, shards=4, memory_budget=1) as client:
        ids = [s["id"] for s in client.get("/shards", params={"dataset": "iplog"}).json()[
            "shards"]]
        r = client.post(f"/shards/{ids[0]}/wake")
        assert r.status_code == 507 and "memory budget" in r.json()["detail"]
        assert client.get("/datasets/iplog/find/ips").status_code == 200  # by scanning
        assert client.get("/shards").json()["memory_bytes"] == 0


def test_shard_map_runs_a_task_and_refuses_garbage(c: TestClient, loaded: Engine) -> None:
    view = loaded.records("iplog")
    task = Task("iplog", view.version, tuple(ch.position for ch in view.chunks[:2]),
                DistinctQuery(Window(), 5))
    r = c.post("/shards/map", content=wire.pack(task))
    assert r.status_code == 200
    got = wire.unpack(r.content)
    assert got["missing"] == [] and int(got["partial"].counts.sum()) == 1000
    assert c.post("/shards/map", content=b"\x00\x01nonsense").status_code == 400
    evil = wire.pack(task).replace(b"quarry.cluster.ops.Task", b"os.system.Taskxx")
    assert c.post("/shards/map", content=evil).status_code == 400


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_shard_map_answers_hostile_tasks_400(c: TestClient, raw: bytes) -> None:
    r = c.post("/shards/map", content=raw)
    assert r.status_code == 400 and r.json()["error"] == "malformed wire message", r.text


def test_partial_answers_are_flagged(loaded: Engine, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with make_client(loaded, remote=(dead,), on_shard_error="partial") as client:
        r = client.get("/datasets/iplog/find/ips")
        assert r.status_code == 200 and r.json()["partial"] is True
        assert dead in r.json()["missing"][0] and r.headers["x-quarry-partial"] == "true"
    with make_client(loaded, remote=(dead,)) as client:
        r = client.get("/datasets/iplog/find/ips")
        assert r.status_code == 503 and dead in r.json()["detail"]


def test_stats_route_runs_on_shards(loaded: Engine, c: TestClient) -> None:
    body = {"aggregates": ["count", "top_k:ip:3", "histogram:ts:3600"],
            "filters": [{"field": "ts", "op": "range", "value": [None, 1_412_700_000]}]}
    want = c.post("/datasets/iplog/stats", json=body).json()
    with make_client(loaded, shard_workers=2, shards=3) as pooled:
        got = pooled.post("/datasets/iplog/stats", json=body).json()
        load = [s["load"]["queries"] for s in pooled.get("/shards").json()["shards"]]
    assert got["results"] == want["results"] and got["rows_matched"] == want["rows_matched"]
    assert sum(load) == 3


def test_closed_shards_need_the_token(engine: Engine) -> None:
    """A shard task names its dataset in the body, out of the middleware's sight; a name
    under a closed one is closed there too. Wake and sleep change server state: writes."""
    ingest(engine.store, "vault/sub", expand_sources([str(LOGS)]), chunk_rows=500)
    auth = {"authorization": "Bearer t0k"}
    with make_client(engine, shards=2, token="t0k", closed=("vault",)) as c:
        view = engine.records("vault/sub")
        for version in ("HEAD", view.version):
            task = Task("vault/sub", version, tuple(ch.position for ch in view.chunks),
                        DistinctQuery(Window(), 5))
            r = c.post("/shards/map", content=wire.pack(task))
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", version
            assert c.post("/shards/map", content=wire.pack(task),
                          headers=auth).status_code == 200
        ids = [s["id"] for s in c.get("/shards", params={"dataset": "vault/sub"},
                                       headers=auth).json()["shards"]]
        assert ids and all("/" in i for i in ids)
        for action in ("wake", "sleep"):
            r = c.post(f"/shards/{ids[0]}/{action}")
            assert r.status_code == 401, action
            assert c.post(f"/shards/{ids[0]}/{action}", headers=auth).status_code == 200
        states = {s["id"]: s["state"] for s in c.get("/shards", headers=auth).json()["shards"]}
        assert states[ids[0]] == "asleep"
        assert c.get("/shards").json()["shards"] == []

"""The Python client against a real server process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from quarry import Client
from quarry.client import COVERED, EQUIVALENT
from quarry.engine import Engine
from quarry.errors import BadRequest, NotFound, OutOfRange, PreconditionFailed
from quarry.server.app import create_app
from quarry.server.settings import ServeSettings
from tests.support import FIXTURES, free_port, quarry_cmd, running

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"
IPLOG = FIXTURES / "iplog" / "1k.csv"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("client") / "d"
    subprocess.run(quarry_cmd("ingest", "logs", "iplog", str(IPLOG), "--data", str(data)),
                   check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", str(FRANKENSTEIN), "--name", "frank", "--data", str(data),
                      "--port", str(port))
    with running(args, f"{url}/healthz"):
        yield url


def test_every_route_is_covered(tmp_path: Path) -> None:
    app = create_app(Engine(tmp_path), ServeSettings(data=str(tmp_path)))
    missing = []
    for route in app.api.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            key = (method, route.path)
            if key not in COVERED and EQUIVALENT.get(key) not in COVERED:
                missing.append(key)
    assert not missing, f"client methods missing for {missing}"


def test_lines_and_datasets(server: str) -> None:
    with Client(server) as q:
        assert q.health()["status"] == "ok"
        names = {d["name"] for d in q.datasets()}
        assert {"frank", "iplog"} <= names
        assert q.dataset("frank")["kind"] == "lines"
        assert q.line("frank", 2).startswith("Project Gutenberg")
        assert q.line(None, 2) == q.line("frank", 2)
        assert q.lines("frank", 2, 3)[0] == q.line("frank", 2)
        assert "quarry_http_requests_total" in q.metrics()
        with pytest.raises(OutOfRange) as e:
            q.line("frank", 10**9)
        assert e.value.extra["lines"] > 7000
        with pytest.raises(BadRequest):
            q.line("frank", 0)
        with pytest.raises(NotFound):
            q.dataset("nope")


def test_versions_and_aliases(server: str) -> None:
    with Client(server) as q:
        r1 = q.put("docs/a", b"one", kind="document", message="first")
        assert r1["created"]
        r2 = q.put("docs/a", b"two")
        assert not q.put("docs/a", b"two")["created"]
        assert q.data("docs/a") == b"two"
        assert q.data("docs/a", r1["version"][:8]) == b"one"
        hist = q.versions("docs/a")
        assert [v["message"] for v in hist][-1] == "first"
        q.set_alias("docs/a", "prod", r1["version"])
        assert q.aliases("docs/a") == {"prod": r1["version"]}
        assert q.data("docs/a", "prod") == b"one"
        q.delete_alias("docs/a", "prod")
        with pytest.raises(PreconditionFailed):
            q.put("docs/a", b"three", if_match=r1["version"])
        with pytest.raises(NotFound):
            q.data("docs/a", "abcdef")
        assert r2["version"] == q.versions("docs/a")[0]["version"]
        events = list(q.events("docs/a", since=0, limit=2))
        assert [e["dataset"] for e in events] == ["docs/a", "docs/a"]
        q.put("docs/gone", b"x")
        assert q.delete("docs/gone")["deleted"] is True
        with pytest.raises(NotFound):
            q.delete("docs/gone")


def test_records(server: str) -> None:
    import csv

    rows = list(csv.reader(IPLOG.read_text().splitlines()))
    ip, ts = rows[0][0], float(rows[0][1])
    with Client(server) as q:
        recs = q.find("iplog", [ip], ts, ts)
        assert {"ip": ip, "ts": ts} in recs
        table = q.find("iplog", ip, arrow=True)
        assert table.num_rows >= 1 and table.column_names == ["ip", "ts"]
        assert q.member("iplog", [ip, "1.1.1.1"], ts - 1, ts + 1) == {ip: True, "1.1.1.1": False}
        assert q.visits("iplog", ip)["count"] >= 1
        assert q.distinct_ips("iplog", limit=5)["distinct"] > 1
        assert [ip, ts] in q.find_compat([ip], ts, ts, name="iplog")
        with pytest.raises(BadRequest):
            q.find("iplog", ["not-an-ip"])


def test_shards(server: str) -> None:
    from quarry.cluster.ops import Task
    from quarry.query.model import DistinctQuery

    with Client(server) as q:
        status = q.shards("iplog")
        assert status["backend"] == "in-process" and status["shards"]
        sid = status["shards"][0]["id"]
        assert q.wake_shard(sid)["state"] == "awake"
        assert q.sleep_shard(sid)["state"] == "asleep"
        version = q.dataset("iplog")["version"]
        got = q.shard_map(Task("iplog", version, (0,), DistinctQuery()))
        assert got["missing"] == [] and int(got["partial"].counts.sum()) > 0
        with pytest.raises(NotFound):
            q.wake_shard("iplog@nothing/0")


def test_stats(server: str) -> None:
    with Client(server) as q:
        out = q.stats("iplog", ["count", "top_k:ip:3"])
        assert out["results"]["count"] == 1000

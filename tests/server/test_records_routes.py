import ast
import csv
import random
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.dispatcher import chunk_files
from quarry.formats.textblocks import expand_sources
from quarry.query.model import MAX_IPS
from tests.conftest import make_client
from tests.support import FIXTURES

IPLOG = FIXTURES / "iplog"
CONFIGS = ["stable_metaindex2.json", "stable_metaindex.json", "stable_dispatcher3.json"]


def original_find(files: list[Path], ips: list[str], start: float,
                  end: float) -> list[list[object]]:
    """The original system's answer: map over chunk files in config order, filter, then a
    stable sort by time (its reduce step)."""
    rows = [(ip, float(ts)) for f in files for ip, ts in csv.reader(f.read_text().splitlines())]
    hits = [r for r in rows if r[0] in ips and start <= r[1] <= end]
    return [list(r) for r in sorted(hits, key=lambda r: r[1])]


@pytest.fixture
def iplog_client(engine: Engine) -> TestClient:
    files = chunk_files(IPLOG / "stable_metaindex2.json")
    ingest(engine.store, "iplog", expand_sources([str(f) for f in files]), chunk_rows=4096)
    return make_client(engine)


@pytest.mark.parametrize("config", CONFIGS)
def test_compat_route_matches_original_on_fixtures(engine: Engine, config: str) -> None:
    files = chunk_files(IPLOG / config)
    ingest(engine.store, "iplog", expand_sources([str(f) for f in files]), chunk_rows=3000)
    rows = [(ip, float(ts)) for f in files for ip, ts in csv.reader(f.read_text().splitlines())]
    rng = random.Random(config)
    with make_client(engine) as client:
        for _ in range(25):
            ips = [rng.choice(rows)[0] for _ in range(rng.randint(1, 20))] + ["1.2.3.4"]
            a, b = sorted(rng.choice(rows)[1] for _ in range(2))
            r = client.get(f"/find/[{','.join(ips)}]/{a}/{b}/")
            assert r.status_code == 200, r.text
            assert ast.literal_eval(r.text) == original_find(files, ips, a, b)
        # Inclusive at both ends, and whole-number bounds work as in the original.
        ip, ts = rows[10]
        r = client.get(f"/find/[{ip}]/{ts}/{ts}/")
        assert ast.literal_eval(r.text) == [[ip, ts]]
        assert client.get(f"/find/[{ip}]/0/{int(ts)}/").json() == []


def test_compat_route_bad_input(iplog_client: TestClient) -> None:
    c = iplog_client
    for url, words in [
        ("/find/[1.2.3]/1/2/", "not an IP"),
        ("/find/[1.2.3.4]/5/2/", "inverted"),
        ("/find/[1.2.3.4]/abc/2/", "start"),
        ("/find/1.2.3.4/1/2/", "[ip1,ip2]"),
        ("/find/[1.2.3.4]/nan/2/", "out of range"),
    ]:
        r = c.get(url)
        assert r.status_code == 400, (url, r.text)
        assert words in r.json()["detail"]
    r = c.post("/datasets/iplog/find", json={"ips": ["1.1.1.1"] * (MAX_IPS + 1)})
    assert r.status_code == 400 and "too many" in r.json()["detail"]
    r = c.post("/datasets/iplog/find/member", json={"ips": "1.1.1.1", "start": "x"})
    assert r.status_code == 400 and "start" in r.json()["detail"]


def test_find_pages_with_cursor_and_streams(iplog_client: TestClient) -> None:
    c = iplog_client
    all_rows = c.get("/find/[0.0.0.0]/0/9999999999/").json()
    assert all_rows == []
    page = c.get("/datasets/iplog/find/ips", params={"limit": 3}).json()
    ips = [ip for ip, _ in page["ips"]]
    assert page["distinct"] > 3 and page["next_offset"] == 3
    full = c.post("/datasets/iplog/find", json={"ips": ips, "limit": 1000}).json()
    got: list[dict[str, object]] = []
    cursor = None
    while True:
        body: dict[str, object] = {"ips": ips, "limit": 2}
        if cursor:
            body["cursor"] = cursor
        p = c.post("/datasets/iplog/find", json=body).json()
        got += p["records"]
        cursor = p["next_cursor"]
        if cursor is None:
            break
    assert got == full["records"] and len(got) == full["count"]
    r = c.get("/datasets/iplog/find", params={"ips": ",".join(ips), "format": "ndjson"})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert [orjson.loads(x) for x in r.text.splitlines()] == full["records"]
    ts = [x["ts"] for x in full["records"]]
    assert ts == sorted(ts)


def test_membership_visits(iplog_client: TestClient) -> None:
    c = iplog_client
    text = (IPLOG / "stable_dispatcher" / "stable_1k_0.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    ip, ts = rows[0][0], float(rows[0][1])
    r = c.post("/datasets/iplog/find/member",
               json={"ips": [ip, "9.9.9.9"], "start": ts, "end": ts + 1}).json()
    assert r["members"] == {ip: True, "9.9.9.9": False}
    files = chunk_files(IPLOG / "stable_metaindex2.json")
    later = bool(original_find(files, [ip], ts + 1, 1e10))
    r = c.get("/datasets/iplog/find/member", params={"ip": ip, "start": ts + 1}).json()
    assert r["members"] == {ip: later}
    v = c.get("/datasets/iplog/find/visits", params={"ip": ip, "bucket": 3600}).json()
    assert v["count"] >= 1 and ts in v["times"] and sum(n for _, n in v["buckets"]) == v["count"]
    assert c.get("/datasets/iplog/find/visits").status_code == 400
    assert c.get("/datasets/iplog/find/ips", params={"order": "x"}).status_code == 400
    assert c.get("/datasets/iplog/find/ips", params={"limit": 0}).status_code == 400
    assert c.post("/datasets/iplog/find", content=b"{").status_code == 400
    assert c.get("/datasets/nope/find", params={"ip": ip}).status_code == 404
    assert c.get("/datasets/iplog/find", params={"ip": ip, "cursor": "zz"}).status_code == 400


def test_compat_needs_one_records_dataset(client: TestClient) -> None:
    r = client.get("/find/[1.2.3.4]/1/2/")
    assert r.status_code == 404 and "records dataset" in r.json()["detail"]


@pytest.mark.parametrize(("method", "path", "args", "word"), [
    ("GET", "visits", {"ip": "1.1.1.1", "bucket": "99999999999999999999"}, "bucket"),
    ("GET", "visits", {"ip": "1.1.1.1", "bucket": "-5"}, "bucket"),
    ("GET", "visits", {"ip": "1.1.1.1", "bucket": "nan"}, "bucket"),
    ("GET", "visits", {"ip": "1.1.1.1", "limit": "99999999999999999999"}, "limit"),
    ("GET", "visits", {"ip": "1.1.1.1", "start": "nan"}, "start"),
    ("GET", "ips", {"offset": "99999999999999999999"}, "offset"),
    ("GET", "ips", {"offset": "-1"}, "offset"),
    ("GET", "ips", {"limit": "é"}, "limit"),
    ("POST", "", {"ips": ["1.1.1.1"], "start": [1]}, "start"),
    ("POST", "", {"ips": ["1.1.1.1"], "end": {"a": 1}}, "end"),
    ("POST", "", {"ips": ["1.1.1.1"], "cursor": 5}, "cursor"),
    ("POST", "", {"ips": ["1.1.1.1"], "version": 5}, "version"),
    ("POST", "", {"ips": ["1.1.1.1"], "format": 5}, "format"),
    ("POST", "", {"ips": ["1.1.1.1"], "limit": True}, "limit"),
    ("POST", "ips", {"version": ["a"]}, "version"),
    ("POST", "ips", {"order": ["a"]}, "order"),
    ("POST", "member", {"ips": ["1.1.1.1"], "start": {"x": 1}}, "start"),
    ("POST", "visits", {"ip": "1.1.1.1", "bucket": [1]}, "bucket"),
])
def test_find_routes_bad_values_are_400(iplog_client: TestClient, method: str, path: str,
                                        args: dict[str, object], word: str) -> None:
    url = "/datasets/iplog/find" + (f"/{path}" if path else "")
    r = (iplog_client.get(url, params=args) if method == "GET"
         else iplog_client.post(url, json=args))
    assert r.status_code == 400 and word in r.json()["detail"], r.text

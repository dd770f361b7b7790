from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient

from quarry.datasets.records_ingest import ingest
from quarry.formats.textblocks import expand_sources
from quarry.store import Store
from tests.support import FIXTURES

LOG = FIXTURES / "iplog" / "1k.csv"


def rows() -> list[tuple[str, float]]:
    out = []
    for line in LOG.read_text().splitlines():
        ip, ts = line.split(",")
        out.append((ip, float(ts)))
    return out


def test_stats_over_an_access_log_dataset(store: Store, client: TestClient) -> None:
    ingest(store, "ips", expand_sources([str(LOG)]), chunk_rows=100)
    data = rows()
    lo, hi = data[100][1], data[599][1]
    body = {"aggregates": ["count", "top_k:ip:3", "distinct_count:ip",
                           "distinct_count:ip:approx", "histogram:ts:86400", "min:ts"],
            "filters": [{"field": "ts", "op": "range", "value": [lo, hi]}]}
    r = client.post("/datasets/ips/stats", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    kept = [(ip, ts) for ip, ts in data if lo <= ts <= hi]
    res = out["results"]
    assert res["count"] == len(kept)
    c = Counter(ip for ip, _ in kept)
    # Ties are broken by value: addresses in numeric order.
    ordered = sorted(c.items(), key=lambda kv: (-kv[1], ipaddress.ip_address(kv[0])))
    assert [tuple(x) for x in res["top_k(ip,3)"]["top"]] == ordered[:3]
    cutoff = ordered[2][1]
    assert res["top_k(ip,3)"]["ties"]["more"] == sum(1 for _, n in ordered[3:] if n == cutoff)
    assert res["distinct_count(ip)"] == len(c)
    assert abs(res["distinct_count(ip,approx)"] - len(c)) <= max(3, len(c) * 0.03)
    days = Counter(int(ts // 86400 * 86400) for _, ts in kept)
    assert [tuple(x) for x in res["histogram(ts,86400)"]] == sorted(days.items())
    assert out["chunks_pruned"] >= 3  # time-sorted chunks outside the window are skipped
    assert out["rows_scanned"] < len(data)


def test_ip_filters_take_addresses_as_text(store: Store, client: TestClient) -> None:
    ingest(store, "ips", expand_sources([str(LOG)]), chunk_rows=100)
    data = rows()
    ip = data[0][0]
    body = {"aggregates": ["count"],
            "filters": [{"field": "ip", "op": "in", "value": [ip, "10.0.0.1"]}]}
    r = client.post("/datasets/ips/stats", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["results"]["count"] == sum(1 for x, _ in data if x == ip)
    body["filters"] = [{"field": "ip", "op": "eq", "value": "not-an-ip"}]
    assert client.post("/datasets/ips/stats", json=body).status_code == 400


def test_stats_errors(store: Store, client: TestClient, tmp_path: Path) -> None:
    ingest(store, "ips", expand_sources([str(LOG)]))
    assert client.post("/datasets/nope/stats", json={"aggregates": ["count"]}).status_code == 404
    r = client.post("/datasets/ips/stats", json={"aggregates": ["top_k:nofield"]})
    assert r.status_code == 400 and "no field 'nofield'" in r.json()["detail"]
    r = client.post("/datasets/ips/stats", content=b"{not json")
    assert r.status_code == 400 and "must be JSON" in r.json()["detail"]
    r = client.post("/datasets/ips/stats", json={"aggregates": ["mean:ip"]})
    assert r.status_code == 400
    (tmp_path / "t.txt").write_text("a\nb\n")
    from quarry.datasets.lines import put_lines

    put_lines(store, "text", tmp_path / "t.txt")
    r = client.post("/datasets/text/stats", json={"aggregates": ["count"]})
    assert r.status_code == 400 and "records" in r.json()["detail"]

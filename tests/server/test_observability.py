from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from quarry import logs
from quarry.datasets.lines import put_lines
from quarry.engine import Engine
from quarry.store import Store
from tests.conftest import make_client
from tests.support import FIXTURES, free_port, quarry_cmd, running

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_asgi_and_hot_requests(engine: Engine, store: Store) -> None:
    put_lines(store, "frank", FRANKENSTEIN)
    c = make_client(engine, default_dataset="frank")
    for _ in range(3):
        assert c.get("/datasets/frank").status_code == 200
    assert c.get("/datasets/nope").status_code == 404
    hot = c.app.hot_routes  # type: ignore[attr-defined]
    for n in (b"1", b"2", b"999999"):
        hot.respond(b"GET", b"/lines/" + n)
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = samples(r.text)
    key = ("quarry_http_requests_total",
           (("method", "GET"), ("route", "/datasets/{name:dataset}"), ("status", "200")))
    assert s[key] == 3
    assert s[("quarry_http_requests_total",
              (("method", "GET"), ("route", "/lines/{n}"), ("status", "200")))] == 2
    assert s[("quarry_http_requests_total",
              (("method", "GET"), ("route", "/lines/{n}"), ("status", "413")))] == 1
    assert s[("quarry_http_request_duration_seconds_count", (("route", "/lines/{n}"),))] == 3
    assert s[("quarry_dataset_rows", (("dataset", "frank"),))] > 7000
    assert s[("quarry_dataset_bytes", (("dataset", "frank"),))] == FRANKENSTEIN.stat().st_size


def test_request_id(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert len(r.headers["x-request-id"]) == 16
    r = client.get("/healthz", headers={"x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"


def test_json_logs_carry_request_id(engine: Engine) -> None:
    logs.configure("json", "info")
    stream = io.StringIO()
    handler = next(h for h in logging.getLogger("quarry").handlers if getattr(h, "_quarry", 0))
    handler.stream = stream  # type: ignore[attr-defined]
    try:
        make_client(engine).get("/datasets/missing", headers={"x-request-id": "rid-7"})
    finally:
        logs.configure("text", "warning")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(r["request_id"] == "rid-7" and r["status"] == 404 for r in records)


def test_closed_dataset_over_http(engine: Engine, store: Store) -> None:
    put_lines(store, "secret", FRANKENSTEIN)
    put_lines(store, "open", FRANKENSTEIN)
    c = make_client(engine, token="t0k", closed=("secret",))
    r = c.get("/datasets/secret/lines/2")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert c.get("/datasets/secret/lines/2",
                 headers={"authorization": "Bearer t0k"}).status_code == 200
    assert c.get("/datasets/open/lines/2").status_code == 200
    # The hot path leaves closed datasets to the ASGI route, which checks the token.
    hot = c.app.hot_routes  # type: ignore[attr-defined]
    assert hot.respond(b"GET", b"/datasets/secret/lines/2") is None
    assert hot.respond(b"GET", b"/datasets/open/lines/2") is not None



def test_a_closed_default_dataset_is_closed_under_lines_and_find(engine: Engine,
                                                                 store: Store) -> None:
    """/lines/<n> and /find/... read the default dataset without naming it in the path; the
    token is needed there too, not only under /datasets/<name>/."""
    put_lines(store, "secret", FRANKENSTEIN)
    c = make_client(engine, token="t0k", closed=("secret",), default_dataset="secret")
    auth = {"authorization": "Bearer t0k"}
    for url in ("/lines/2", "/lines/2?version=HEAD", "/find/1.2.3.4/0/1/"):
        r = c.get(url)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", url
    assert c.get("/lines/2", headers=auth).status_code == 200
    assert c.head("/lines/2").status_code == 401
    # Listings leave a closed dataset out without the token; its shards too.
    put_lines(store, "secret/sub", FRANKENSTEIN)
    assert [d["name"] for d in c.get("/datasets").json()] == []
    assert {d["name"] for d in c.get("/datasets", headers=auth).json()} == {"secret",
                                                                           "secret/sub"}
    assert c.get("/shards", params={"dataset": "secret"}).status_code == 401
    # A name under a closed one is closed on the hot path as in the app.
    hot = c.app.hot_routes  # type: ignore[attr-defined]
    assert hot.respond(b"GET", b"/datasets/secret/sub/lines/1") is None
    assert c.get("/datasets/secret/sub/lines/1").status_code == 401
    # An open default dataset stays open.
    put_lines(store, "open", FRANKENSTEIN)
    c = make_client(engine, token="t0k", closed=("secret",), default_dataset="open")
    assert c.get("/lines/2").status_code == 200

@pytest.mark.slow
def test_metrics_summed_over_workers(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", str(FRANKENSTEIN), "--data", str(tmp_path / "d"), "--port",
                      str(port), "--workers", "2")
    with running(args, f"{url}/healthz"):
        n = 200
        with httpx.Client(base_url=url) as c:
            for i in range(n):
                # New connections spread requests over both workers.
                assert httpx.get(f"{url}/lines/{i % 50 + 1}").status_code == 200
            import time

            time.sleep(1.2)  # hot-path tallies are folded in every second
            for i in range(4):
                httpx.get(f"{url}/lines/{i + 1}")
            deadline = time.monotonic() + 5
            while True:
                s = samples(c.get("/metrics").text)
                got = s.get(("quarry_http_requests_total", (("method", "GET"),
                            ("route", "/lines/{n}"), ("status", "200"))), 0)
                if got >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
                httpx.get(f"{url}/lines/1")
            assert got >= n


def test_events_of_closed_datasets_need_the_token(engine: Engine, store: Store) -> None:
    c = make_client(engine, token="t0k", closed=("secret",))
    auth = {"authorization": "Bearer t0k"}
    for name in ("secret", "open"):
        assert c.put(f"/datasets/{name}", content=b"x", headers=auth).status_code == 201
    anon = c.get("/events", params={"since": 0, "limit": 1}).text
    assert '"dataset":"open"' in anon and "secret" not in anon
    both = c.get("/events", params={"since": 0, "limit": 2}, headers=auth).text
    assert "secret" in both and '"dataset":"open"' in both


def test_writes_without_the_token_are_refused_and_change_nothing(
        engine: Engine, store: Store) -> None:
    c = make_client(engine, token="t0k")
    auth = {"authorization": "Bearer t0k"}
    assert c.put("/datasets/doc", content=b"v1", headers=auth).status_code == 201
    head = store.head("doc")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "t0k"}):
        r = c.put("/datasets/doc", content=b"v2", headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert c.put("/datasets/doc/aliases/prod", headers=headers).status_code == 401
        assert c.delete("/datasets/doc/aliases/prod", headers=headers).status_code == 401
        assert c.put("/datasets/new", content=b"x", headers=headers).status_code == 401
    assert store.head("doc") == head and store.aliases("doc") == {}
    assert "new" not in store.datasets()
    assert c.get("/datasets/doc/data").content == b"v1"  # reads stay open
    # Beyond loopback and without a token, every write is refused.
    public = make_client(engine, host="0.0.0.0")
    assert public.put("/datasets/doc", content=b"v3").status_code == 401
    assert store.head("doc") == head


def test_query_and_ingest_metrics(engine: Engine, store: Store) -> None:
    from quarry.datasets.records_ingest import ingest
    from quarry.formats.textblocks import expand_sources

    ingest(store, "ips", expand_sources([str(FIXTURES / "iplog" / "1k.csv")]))
    c = make_client(engine)
    assert c.put("/datasets/doc", content=b"12345").status_code == 201
    assert c.post("/datasets/ips/find/member", json={"ips": ["1.1.1.1"]}).status_code == 200
    assert c.post("/datasets/ips/stats", json={"aggregates": ["count"]}).status_code == 200
    s = samples(c.get("/metrics").text)
    assert s[("quarry_ingest_bytes_total", (("dataset", "doc"),))] == 5
    assert s[("quarry_queries_total",
              (("dataset", "ips"), ("key", "ip-index"), ("kind", "member")))] == 1
    assert s[("quarry_queries_total", (("dataset", "ips"), ("key", ""), ("kind", "stats")))] == 1


def test_console_files_are_counted_under_their_mount(engine: Engine) -> None:
    c = make_client(engine)
    assert c.get("/console/app.js").status_code == 200
    assert c.get("/no/such/route").status_code == 404
    s = samples(c.get("/metrics").text)
    assert s[("quarry_http_requests_total",
              (("method", "GET"), ("route", "/console/{path:path}"), ("status", "200")))] == 1
    assert s[("quarry_http_requests_total",
              (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1


def test_metrics_name_no_closed_dataset_without_the_token(engine: Engine, store: Store) -> None:
    put_lines(store, "secret/sub", FRANKENSTEIN)
    put_lines(store, "open", FRANKENSTEIN)
    c = make_client(engine, token="t0k", closed=("secret",))
    auth = {"authorization": "Bearer t0k"}
    assert c.put("/datasets/secret/x", content=b"x", headers=auth).status_code == 201
    anon = c.get("/metrics").text
    assert 'dataset="open"' in anon and "secret" not in anon
    assert 'dataset="secret/sub"' in c.get("/metrics", headers=auth).text
    assert c.get("/healthz").json()["datasets"] == 1
    assert c.get("/healthz", headers=auth).json()["datasets"] == 3


def test_non_ascii_authorization_is_a_401(engine: Engine, store: Store) -> None:
    put_lines(store, "secret", FRANKENSTEIN)
    put_lines(store, "open", FRANKENSTEIN)
    c = make_client(engine, token="t0k", closed=("secret",))
    bad = {"authorization": "Bearer t\u00f6k\u00ff".encode("latin-1")}
    for method, url in (("PUT", "/datasets/a"), ("GET", "/datasets/secret/lines/1")):
        r = c.request(method, url, headers=bad, content=b"x")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", url
    for url in ("/datasets", "/shards", "/metrics"):
        r = c.get(url, headers=bad)
        assert r.status_code == 200 and "secret" not in r.text, url
    r = c.get("/events", params={"since": 0, "limit": 1}, headers=bad)
    assert r.status_code == 200 and "secret" not in r.text


def test_what_else_could_tell_of_a_closed_dataset(engine: Engine, store: Store,
                                                  tmp_path: Path) -> None:
    """Found by a hostile review: the ways a closed dataset still showed without the token."""
    from quarry.datasets.records_ingest import ingest
    from quarry.datasets.table_ingest import ingest_table
    from quarry.formats.textblocks import expand_sources
    from quarry.index.keys import KeySpec
    from quarry.store.journal import Event

    logs = str(FIXTURES / "iplog" / "stable_1k.csv")
    ingest(store, "secret/logs", expand_sources([logs]))
    ingest(store, "open/logs", expand_sources([logs]))
    (tmp_path / "t.csv").write_text("user,n\na,1\nb,2\n")
    ingest_table(store, "secret/tbl", [tmp_path / "t.csv"], keys=[KeySpec.parse(["user"])])
    # A pipeline from a closed dataset failed into an open one; its stderr is closed data.
    store.publish(Event("open/derived", "failed", extra={"source": "secret/tbl",
                                                         "error": "exit 3: SUBSECRET"}))
    store.publish(Event("open/derived", "failed", extra={"source": "open/logs"}))
    c = make_client(engine, closed=("secret",), default_dataset="secret/logs", shards=2)
    auth = {"authorization": "Bearer t0k"}
    # The default dataset is read without naming it: a refusal does not name it either.
    r = c.get("/lines/1")
    assert r.status_code == 401 and "secret" not in r.text
    # Events naming a closed source are closed too.
    text = c.get("/events", params={"since": 0, "limit": 2}).text
    assert '"source":"open/logs"' in text and "SECRET" not in text.upper()
    # Shard memory: the total of the shards this caller may see.
    c2 = make_client(engine, token="t0k", closed=("secret",), shards=2)
    ids = {n: [s["id"] for s in c2.get("/shards", params={"dataset": n},
                                       headers=auth).json()["shards"]]
           for n in ("secret/logs", "open/logs")}
    for i in ids["secret/logs"] + ids["open/logs"]:
        assert c2.post(f"/shards/{i}/wake", headers=auth).status_code == 200
    full = c2.get("/shards", headers=auth).json()
    anon = c2.get("/shards").json()
    assert anon["memory_bytes"] == sum(s["memory_bytes"] for s in anon["shards"])
    assert 0 < anon["memory_bytes"] < full["memory_bytes"]
    # The key builder runs for every dataset; a caller hears only of those it may read.
    c3 = make_client(engine, closed=("secret",))
    report = c3.post("/datasets/open/logs/keys/build").json()["report"]
    assert not any(k.startswith("secret") for k in report)
    # The Bearer scheme is case-insensitive; of two Authorization headers, the first counts
    # everywhere (the middleware read the last, the routes the first).
    assert c2.get("/datasets/secret/logs", headers={"authorization": "bearer t0k"}
                  ).status_code == 200
    two = [(b"authorization", b"Bearer nope"), (b"authorization", b"Bearer t0k")]
    assert c2.get("/datasets/secret/logs", headers=two).status_code == 401

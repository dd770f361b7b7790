"""Hot swap: an alias moved under concurrent load. In-flight queries finish on the version they
started on, new ones see the new version, nothing fails, no answer mixes versions, and old
versions are released once drained."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from quarry import Client
from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.index.keys import KeySpec
from quarry.query import service
from quarry.store import Store
from tests.support import free_port, quarry_cmd, running

ROWS = 3000


def versions(store: Store, tmp_path: Path) -> dict[str, int]:
    """Two versions of ``hs`` whose every row says which generation it belongs to."""
    out = {}
    for gen in (1, 2):
        f = tmp_path / f"g{gen}.csv"
        f.write_text("k,gen\n" + "".join(f"{i % 50},{gen}\n" for i in range(ROWS)))
        res = ingest_table(store, "hs", [f], keys=[KeySpec.parse("k")], chunk_rows=500)
        out[res.version] = gen
    return out


def check(answers: list[tuple[str, list[int]]], gens: dict[str, int]) -> set[str]:
    seen = set()
    for version, rows in answers:
        assert set(rows) == {gens[version]}, "an answer mixed versions"
        seen.add(version)
    return seen


def test_alias_moves_under_load_in_process(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    gens = versions(store, tmp_path)
    v1, v2 = list(gens)
    store.set_alias("hs", "prod", v1)
    engine = Engine(store, refresh_interval=0)
    stop = threading.Event()
    failures: list[BaseException] = []
    answers: list[tuple[str, list[int]]] = []
    lock = threading.Lock()

    def load() -> None:
        while not stop.is_set():
            try:
                page = service.query(engine, "hs", {"version": "prod", "where": {"k": [1, 2, 3]},
                                                    "limit": 40, "fields": ["gen"]})
                got = page.table.column("gen").to_pylist()
                cursor = page.next_cursor
                while cursor:  # later pages stay on the first page's version
                    p = service.query(engine, "hs", {"cursor": cursor, "where": {"k": [1, 2, 3]},
                                                     "limit": 40, "fields": ["gen"]})
                    assert p.version == page.version
                    got += p.table.column("gen").to_pylist()
                    cursor = p.next_cursor
                assert len(got) == 3 * ROWS // 50
                version, pieces = service.stream(engine, "hs", {"version": "prod",
                                                                "where": {"k": 7}})
                streamed = [g for t in pieces for g in t.column("gen").to_pylist()]
                with lock:
                    answers.append((page.version, got))
                    answers.append((version, streamed))
            except BaseException as e:
                failures.append(e)
                return

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(30):
        store.set_alias("hs", "prod", v2 if i % 2 == 0 else v1)
        time.sleep(0.01)
    store.set_alias("hs", "prod", v2)
    time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    assert not failures, failures[0]
    assert check(answers, gens) == {v1, v2}
    # After draining, only the version the alias points at stays open.
    service.query(engine, "hs", {"version": "prod", "where": {"k": 1}})
    engine.release_drained()
    assert engine.open_versions() == [v2]
    # A pinned version keeps answering from the old data.
    pinned = service.query(engine, "hs", {"version": v1[:8], "where": {"k": 1}, "limit": 1})
    assert pinned.version == v1 and pinned.table.column("gen").to_pylist() == [1]


@pytest.mark.slow
def test_alias_moves_under_http_load(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    gens = versions(store, tmp_path)
    v1, v2 = list(gens)
    store.set_alias("hs", "prod", v1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Warnings only: the test reads neither pipe, and per-request log lines would fill them.
    args = quarry_cmd("serve", "--data", str(store.root), "--port", str(port), "--workers", "2",
                      "--log-level", "warning")
    with running(args, f"{base}/healthz"):
        stop = threading.Event()
        failures: list[str] = []
        answers: list[tuple[str, list[int]]] = []

        def load() -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                while not stop.is_set():
                    r = c.post("/datasets/hs/query", json={
                        "version": "prod", "where": {"k": {"in": [4, 5]}}, "fields": ["gen"],
                        "limit": 1000})
                    if r.status_code != 200:
                        failures.append(r.text)
                        return
                    j = r.json()
                    answers.append((j["version"], [x["gen"] for x in j["rows"]]))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        with Client(base) as admin:  # moved over HTTP (PUT /datasets/hs/aliases/prod)
            for i in range(20):
                admin.set_alias("hs", "prod", v2 if i % 2 == 0 else v1)
                time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[0]
    assert len(answers) > 20
    assert check(answers, gens) == {v1, v2}

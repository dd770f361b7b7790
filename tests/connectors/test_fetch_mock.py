"""The fixture pages end to end: a real mock API process, the connector, the records dataset."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from quarry.connectors.api_ingest import ingest_api, stats_api
from quarry.connectors.settings import ApiSettings
from quarry.engine import Engine
from quarry.errors import BadUpstream
from quarry.stats.dataset import dataset_stats
from quarry.stats.request import StatsRequest
from quarry.store import Store
from tests.support import FIXTURES, free_port, quarry_cmd, running

PAGES = FIXTURES / "foodstats"
FIRST, LAST = 658330693, 658332803


def oracle() -> list[dict[str, Any]]:
    """The items of the recorded pages 1–20 (end.json and test.json repeat their ids)."""
    items = [it for i in range(1, 21)
             for it in orjson.loads((PAGES / f"{i}.json").read_bytes())["response"]]
    assert len({it["id"] for it in items}) == len(items) == 2000
    return sorted(items, key=lambda it: it["id"])


@contextmanager
def mock(*extra: str, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with running(quarry_cmd("mock-api", "--pages", str(PAGES), "--port", str(port), *extra),
                 f"{url}/_mock/stats"):
        yield url


def mock_stats(url: str) -> dict[str, Any]:
    out: dict[str, Any] = httpx.get(f"{url}/_mock/stats").json()
    return out


def settings(url: str, **kw: Any) -> ApiSettings:
    base: dict[str, Any] = {"url": f"{url}/v1/foodipedia/foodstats", "rate_limit": 0,
                            "first_id": FIRST, "last_id": LAST, "pool": 3, "timeout": 5.0,
                            "backoff": 0.01}
    return ApiSettings(**{**base, **kw})


def stored_ids(store: Store, name: str) -> list[int]:
    view = Engine(store, refresh_interval=0).records(name)
    return [i for c in view.chunks for i in c.table.column("id").to_pylist()]


def top(items: list[dict[str, Any]], field: str, k: int) -> list[list[int]]:
    c = Counter(it[field] for it in items)
    return [[v, n] for v, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


@pytest.mark.parametrize("pool, page, first, last", [
    (3, 100, FIRST, LAST),  # range boundaries fall inside pages
    (7, 33, FIRST, LAST),
    (4, 100, 658331000, 658331999),  # a sub-span that starts and ends mid-page
    (1, 250, 0, LAST),
])
def test_each_item_once_whatever_the_ranges(store: Store, pool: int, page: int, first: int,
                                            last: int) -> None:
    want = [it for it in oracle() if first <= it["id"] <= last]
    with mock() as url:
        res = ingest_api(store, "food", settings(url, pool=pool, results_per_page=page,
                                                 first_id=first, last_id=last),
                         chunk_rows=700)
    assert res.items == len(want)
    assert stored_ids(store, "food") == [it["id"] for it in want]
    req = StatsRequest.parse({"aggregates": ["count", "top_k:food_id:5",
                                             "top_k:food__category_id:10"]})
    got = dataset_stats(Engine(store), "food", req)["results"]
    assert got["count"] == len(want)
    assert got["top_k(food_id,5)"]["top"] == top(want, "food_id", 5)
    assert got["top_k(food__category_id,10)"]["top"] == top(want, "food__category_id", 10)
    assert not (store.root / "checkpoints" / "food").exists() or not any(
        (store.root / "checkpoints" / "food").iterdir())


def test_injected_500_and_timeout_are_retried(store: Store) -> None:
    with mock("--faults", "500@2,timeout@4", "--stall", "3") as url:
        res = ingest_api(store, "food", settings(url, timeout=0.5))
        fired = mock_stats(url)["faults_fired"]
    assert fired == ["500@2", "timeout@4"]
    assert res.fetch.retries == 2
    assert stored_ids(store, "food") == [it["id"] for it in oracle()]


def test_bad_page_commits_nothing_then_the_fetch_resumes(store: Store) -> None:
    with mock("--faults", "garbage@30") as url:
        s = settings(url, pool=2, results_per_page=10)
        with pytest.raises(BadUpstream, match="not JSON"):
            ingest_api(store, "food", s, flush_rows=10)
        first_run = mock_stats(url)["requests"]
    assert store.head("food") is None
    cps = list((store.root / "checkpoints" / "food").glob("*/range-*.json"))
    assert len(cps) == 2
    # A healthy mock on the same address (the URL is part of the job's identity).
    with mock(port=httpx.URL(url).port) as url2:
        res = ingest_api(store, "food", s, flush_rows=10)
        second_run = mock_stats(url2)["requests"]
    assert res.fetch.resumed
    assert first_run + second_run < 2 * 210  # the first run's pages were not fetched again
    assert second_run < 210
    assert stored_ids(store, "food") == [it["id"] for it in oracle()]


def test_streaming_stats_equal_a_reference_count() -> None:
    items = oracle()
    req = StatsRequest.parse({"aggregates": ["count", "top_k:food_id:100",
                                             "top_k:food__category_id:10",
                                             "distinct_count:food_id"]})
    with mock() as url:
        out, report = stats_api(settings(url, pool=5, results_per_page=50), req)
    r = out["results"]
    assert r["count"] == 2000
    assert r["top_k(food_id,100)"]["top"] == top(items, "food_id", 100)
    assert r["top_k(food__category_id,10)"]["top"] == top(items, "food__category_id", 10)
    assert r["distinct_count(food_id)"] == len({it["food_id"] for it in items})
    assert report.requests >= 2000 // 50


@pytest.mark.slow
def test_killed_run_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with mock() as url:
        args = ["ingest", "api", "food", "--url", f"{url}/foodstats", "--first-id", str(FIRST),
                "--last-id", str(LAST), "--pool", "3", "--page-size", "10",
                "--flush-rows", "10", "--data", str(data)]
        proc = subprocess.Popen(quarry_cmd(*args, "--rate-limit", "25"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                cps = list((data / "checkpoints" / "food").glob("*/range-*.json"))
                if len(cps) == 3 and all(orjson.loads(p.read_bytes())["parts"] for p in cps):
                    break
                time.sleep(0.1)
            else:
                pytest.fail("no checkpoints within 30 s")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        killed_at = mock_stats(url)["requests"]
        assert killed_at < 210
        done = subprocess.run(quarry_cmd(*args, "--rate-limit", "0"), capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "resumed from checkpoints" in done.stdout
        assert mock_stats(url)["requests"] - killed_at < 210
    store = Store(data)
    assert stored_ids(store, "food") == [it["id"] for it in oracle()]


def test_streaming_stats_resume_after_a_bad_page(store: Store) -> None:
    items = oracle()
    req = StatsRequest.parse({"aggregates": ["count", "top_k:food_id:20",
                                             "distinct_count:food__category_id",
                                             "distinct_count:food_id:approx"]})
    with mock("--faults", "garbage@40") as url:
        s = settings(url, pool=3, results_per_page=10)
        with pytest.raises(BadUpstream):
            stats_api(s, req, store=store, flush_rows=10)
    with mock(port=httpx.URL(url).port) as url2:
        out, report = stats_api(s, req, store=store, flush_rows=10)
        second_run = mock_stats(url2)["requests"]
    assert report.resumed and second_run < 200
    r = out["results"]
    assert r["count"] == out["items"] == 2000
    assert r["top_k(food_id,20)"]["top"] == top(items, "food_id", 20)
    assert r["distinct_count(food__category_id)"] == len({it["food__category_id"]
                                                          for it in items})
    assert not list((store.root / "checkpoints").rglob("*.bin"))


def test_the_rate_limit_holds_as_the_server_sees_it(store: Store) -> None:
    with mock() as url:
        res = ingest_api(store, "food", settings(url, rate_limit=20, pool=3,
                                                 results_per_page=50))
        peak = mock_stats(url)["peak_per_second"]
    # 20 per second, plus at most 0.1 s of catch-up (2 slots) after late requests.
    assert res.fetch.requests >= 40 and peak <= 22
    assert res.fetch.rate <= 20 * 1.05

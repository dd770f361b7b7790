"""Statistics benchmark: top-k against DuckDB, and streaming stats against a rate-limited mock.

    python bench/stats.py                      # 50 M records, R = 200 requests/s
    python bench/stats.py --rows 5000000 --api-items 100000   # a quick run

1. Top-10 of ``food_id`` over N records stored as a Quarry records dataset (Arrow IPC chunks,
   memory-mapped), against DuckDB's ``GROUP BY food_id ORDER BY count(*) DESC LIMIT 10`` over
   the same chunks (as Arrow tables, zero copy) and over its own native table loaded from
   them; both engines use 2 threads. Extra memory is what the query allocates (numpy, traced,
   plus Arrow's pool), the memory-mapped column itself excluded.
2. ``quarry stats api`` against ``quarry mock-api --synthetic`` with a rate limit R: the
   sustained request rate (requests / wall time, and as counted by the mock), and the final
   statistics compared with a single-threaded reference count of the same pages.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, process, table, write_section
from quarry.connectors.api_ingest import stats_api
from quarry.connectors.settings import ApiSettings
from quarry.datasets.records import make_snapshot
from quarry.datasets.records_ingest import DEFAULT_CHUNK_ROWS, ChunkWriter
from quarry.engine import Engine
from quarry.stats.dataset import dataset_stats
from quarry.stats.request import StatsRequest
from quarry.store import Store

PY = sys.executable
MOCK_PORT = 9641
DISTINCT = 1_000_000


def make_dataset(store: Store, rows: int, seed: int = 5) -> None:
    """``rows`` API-like items (id, food_id skewed over 10^6 foods, category), chunk by chunk."""
    if store.head("food") is not None and store.snapshot(
            store.require_head("food")).meta.get("rows") == rows:
        return
    rng = np.random.default_rng(seed)
    writer = ChunkWriter(store)
    schema = None
    for start in range(0, rows, DEFAULT_CHUNK_ROWS):
        n = min(DEFAULT_CHUNK_ROWS, rows - start)
        food = (rng.zipf(1.15, n) % DISTINCT).astype(np.int64)
        t = pa.table({"id": np.arange(start, start + n, dtype=np.int64), "food_id": food,
                      "food__category_id": food * 7919 % 150})
        schema = t.schema
        writer.write(t)
    assert schema is not None
    store.commit(make_snapshot("food", "api", schema, writer.chunks, sort_key="id"))


def best_of(fn: Any, reps: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def top_k_bench(data: Path, rows: int, reps: int) -> tuple[list[list[str]], dict[str, Any]]:
    import duckdb

    store = Store(data)
    t0 = time.perf_counter()
    make_dataset(store, rows)
    print(f"dataset of {rows:,} rows ready in {time.perf_counter() - t0:.1f} s", flush=True)
    engine = Engine(store)
    req = StatsRequest.parse({"aggregates": ["top_k:food_id:10"]})
    view = engine.records("food")

    def quarry_top() -> list[list[int]]:
        out = dataset_stats(engine, "food", req)["results"]["top_k(food_id,10)"]
        return [list(x) for x in out["top"]]

    quarry_top()  # map the chunks once (page cache), as DuckDB gets its data loaded too
    q_s, q_top = best_of(quarry_top, reps)

    # Extra memory of one query, in a fresh process so that nothing else has touched Arrow's
    # pool: numpy allocations (traced) plus the pool's peak.
    import json
    import subprocess

    child = subprocess.run([PY, __file__, "--measure-memory", "--data", str(data)],
                           capture_output=True, text=True, check=True)
    extra = int(json.loads(child.stdout.strip().splitlines()[-1])["extra"])
    column = rows * 8

    con = duckdb.connect()
    con.execute("SET threads = 2")
    arrow_table = pa.concat_tables([c.table.select(["food_id"]) for c in view.chunks])
    con.register("items", arrow_table)
    sql = "SELECT food_id, count(*) AS n FROM {} GROUP BY food_id ORDER BY n DESC, food_id " \
          "LIMIT 10"

    def duck(src: str) -> Any:
        return lambda: [list(r) for r in con.execute(sql.format(src)).fetchall()]

    da_s, da_top = best_of(duck("items"), reps)
    con.execute("CREATE TABLE native AS SELECT food_id FROM items")
    dn_s, dn_top = best_of(duck("native"), reps)
    assert q_top == da_top == dn_top, (q_top, da_top, dn_top)
    ref = min(da_s, dn_s)
    rows_out = [
        ["Quarry `top_k` (records chunks, memory-mapped)", f"{q_s * 1000:.0f}",
         f"{ref / q_s:.1f}×"],
        ["DuckDB over the same Arrow chunks", f"{da_s * 1000:.0f}", f"{ref / da_s:.1f}×"],
        ["DuckDB native table", f"{dn_s * 1000:.0f}", f"{ref / dn_s:.1f}×"],
    ]
    facts = {"quarry_s": q_s, "duck_arrow_s": da_s, "duck_native_s": dn_s,
             "speedup": ref / q_s, "extra": extra, "column": column, "top": q_top}
    return rows_out, facts


def measure_memory(data: Path) -> None:
    engine = Engine(Store(data))
    req = StatsRequest.parse({"aggregates": ["top_k:food_id:10"]})
    view = engine.records("food")
    for c in view.chunks:
        c.table  # noqa: B018 - open the memory maps first: they are the data, not extra
    pool = pa.default_memory_pool()
    base = pool.bytes_allocated()
    tracemalloc.start()
    dataset_stats(engine, "food", req)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f'{{"extra": {traced_peak + max(0, pool.max_memory() - base)}}}')


def reference_count(url: str, page: int) -> tuple[int, Counter[int], Counter[int]]:
    """Single-threaded: walk every page in order, no rate limit, count with Counters."""
    foods: Counter[int] = Counter()
    cats: Counter[int] = Counter()
    n = 0
    offset: int | None = 0
    with httpx.Client(timeout=30) as client:
        while offset is not None:
            doc = client.get(url, params={"limit": page, "offset": offset}).json()
            for it in doc["response"]:
                foods[it["food_id"]] += 1
                cats[it["food__category_id"]] += 1
                n += 1
            offset = doc["meta"]["next_offset"]
    return n, foods, cats


def api_bench(items: int, rate: float, pool: int, page: int) -> tuple[list[list[str]],
                                                                       dict[str, Any]]:
    base = f"http://127.0.0.1:{MOCK_PORT}"
    args = [PY, "-m", "quarry", "mock-api", "--synthetic", str(items), "--seed", "3",
            "--port", str(MOCK_PORT)]
    with process(args, f"{base}/_mock/stats", log=OUT / "mock-api.log"):
        url = f"{base}/foodstats"
        before = httpx.get(f"{base}/_mock/stats").json()["requests"]
        settings = ApiSettings(url=url, rate_limit=rate, pool=pool, first_id=0,
                               last_id=items * 3 + 10, results_per_page=page)
        req = StatsRequest.parse({"aggregates": ["count", "top_k:food_id:100",
                                                 "top_k:food__category_id:10"]})
        t0 = time.monotonic()
        out, report = stats_api(settings, req)
        wall = time.monotonic() - t0
        seen = httpx.get(f"{base}/_mock/stats").json()
        served = seen["requests"] - before
        peak = seen["peak_per_second"]
        n, foods, cats = reference_count(url, page)
    res = out["results"]

    def ref_top(c: Counter[int], k: int) -> list[list[int]]:
        return [[v, m] for v, m in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]

    equal = (res["count"] == n and res["top_k(food_id,100)"]["top"] == ref_top(foods, 100)
             and res["top_k(food__category_id,10)"]["top"] == ref_top(cats, 10))
    sustained = report.requests / wall
    rows_out = [
        ["requests (client / served by the mock)", f"{report.requests} / {served}"],
        ["wall time", f"{wall:.1f} s"],
        ["sustained rate", f"{sustained:.1f} requests/s = {sustained / rate:.3f} R"],
        ["most requests in any one second, as the mock saw them", f"{peak} (R = {rate:g})"],
        ["items counted", f"{res['count']:,} (reference {n:,})"],
        ["statistics equal the single-threaded reference", "yes" if equal else "NO"],
    ]
    return rows_out, {"sustained": sustained, "equal": equal, "rate": rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--page", type=int, default=100)
    ap.add_argument("--api-items", type=int, default=600_000)
    ap.add_argument("--data", type=Path, default=OUT / "stats-data")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--measure-memory", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure_memory:
        measure_memory(a.data)
        return
    OUT.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()[0]
    top_rows, top = top_k_bench(a.data, a.rows, a.reps)
    print(table(["top-10 of food_id", "best of runs (ms)", "speed vs fastest DuckDB"],
                top_rows), flush=True)
    api_rows, api = api_bench(a.api_items, a.rate, a.pool, a.page)
    print(table(["against the mock API", ""], api_rows), flush=True)

    load_after = os.getloadavg()[0]
    mem_ratio = top["extra"] / top["column"]
    verdict = [
        f"- top-10 over {a.rows:,} records: **{top['speedup']:.1f}×** the fastest DuckDB "
        f"plan (target ≥ 5×); same top 10 from all three.",
        f"- extra memory of the query: {top['extra'] / 2**20:.0f} MiB = **{mem_ratio:.2f}×** "
        f"the column's {top['column'] / 2**20:.0f} MiB (target ≤ 2×).",
        f"- mock API at R = {a.rate:g} requests/s, {a.pool} workers, pages of {a.page}: "
        f"sustained **{api['sustained'] / api['rate']:.3f} R** (target ≥ 0.95 R); statistics "
        f"{'equal' if api['equal'] else 'DIFFER from'} a single-threaded reference count.",
    ]
    body = (table(["top-10 of food_id", "best of runs (ms)", "speed vs fastest DuckDB"],
                  top_rows) + "\n\n" + table(["against the mock API", ""], api_rows)
            + "\n\n" + "\n".join(verdict) + "\n\nLoad average (1 min) at the start and "
            f"the end of the run: {load_before:.1f}, {load_after:.1f} (2 cores, shared).\n")
    print("\n".join(verdict))
    if not a.no_write:
        cmd = "python bench/stats.py" + "".join(
            f" --{k.replace('_', '-')} {v}" for k, v in
            (("rows", a.rows), ("rate", a.rate), ("pool", a.pool), ("api_items", a.api_items))
            if v != ap.get_default(k))
        write_section("stats", "Statistics: top-k vs DuckDB, paged API vs its rate limit", cmd,
                      body)


if __name__ == "__main__":
    main()

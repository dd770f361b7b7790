"""Shards benchmark: one dataset, the same queries on each backend, ratios in the same run.

* scan-heavy: distinct IPs over everything with every shard asleep (each row read), 8 shards:
  a pool of 2 processes against in-process;
* selective: the records of 3 IPs in one minute (one shard after pruning): Ray, a remote server
  and a pool against in-process, extra latency in ms;
* faults: 30 s of load through Ray while one actor is killed every second;
* per-shard figures for docs/scale-out.md.

Usage: python bench/shards.py [--rows 8000000] [--kill-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, process, table, write_section
from quarry.cluster import Dispatcher, PoolBackend
from quarry.cluster.backends import InProcessBackend
from quarry.cluster.remote import RemoteBackend
from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.textblocks import expand_sources
from quarry.query.model import DistinctQuery, FindQuery, MembershipQuery, Window
from quarry.store import Store

T0 = 1_600_000_000
DAY = 86_400
SHARDS = 8
PORT = 9731  # benchmarks use ports 9700-9799


def make_data(root: Path, rows: int) -> Engine:
    store = Store(root / "store")
    if store.head("bench") is None:
        rng = np.random.default_rng(7)
        ips = rng.integers(1 << 24, 1 << 31, 50_000, dtype=np.uint32)[rng.zipf(1.3, rows) % 50_000]
        octets = [pc.cast(pa.array((ips >> s) & 255), pa.string()) for s in (24, 16, 8, 0)]
        text = pc.binary_join_element_wise(*octets, ".")
        ts = np.sort(T0 + rng.random(rows) * DAY)
        path = root / "logs.csv"
        pacsv.write_csv(pa.table({"ip": text, "ts": pa.array(np.round(ts, 3))}), path,
                        pacsv.WriteOptions(include_header=False, quoting_style="none"))
        ingest(store, "bench", expand_sources([str(path)]), chunk_rows=rows // 16)
        path.unlink()
    return Engine(store)


def timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8_000_000)
    ap.add_argument("--kill-seconds", type=int, default=30)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    root = OUT / f"shards-{args.rows}"
    root.mkdir(exist_ok=True)
    t = time.perf_counter()
    engine = make_data(root, args.rows)
    view = engine.records("bench")
    print(f"data ready in {time.perf_counter() - t:.1f}s: {view.rows:,} rows, "
          f"{len(view.chunks)} chunks")
    scan_q = DistinctQuery(Window(), 100)
    sample = view.chunks[5]
    sel_ips = tuple(sample.ip[i].tobytes() for i in (10, 20, 30))
    t_sel = int(sample.ts[20])
    sel_q = FindQuery(sel_ips, Window(t_sel - 30_000_000, t_sel + 30_000_000), 1000)

    def asleep(d: Dispatcher) -> Dispatcher:
        for s in d.layout(view):
            d.sleep(s.id)
        return d

    # Other processes share the 2 cores: runs of the backends are interleaved, so that load
    # from elsewhere falls on all of them alike.
    inproc = asleep(Dispatcher(engine, InProcessBackend(engine), shards=SHARDS))
    pool_be = PoolBackend(engine.store.root, 2)
    pool_be.start()
    pool = asleep(Dispatcher(engine, pool_be, shards=SHARDS))
    assert pool.run(view, scan_q).result.counts.tolist() == \
        inproc.run(view, scan_q).result.counts.tolist()
    scan_t: dict[str, list[float]] = {"in-process (reference)": [], "process pool, 2 workers": []}
    for _ in range(11):
        for name, d in zip(scan_t, (inproc, pool), strict=True):
            scan_t[name] += timed(lambda d=d: d.run(view, scan_q), 1)
    t_in = statistics.median(scan_t["in-process (reference)"])
    rows_out = [[k, f"{statistics.median(v) * 1000:,.0f}", f"{min(v) * 1000:,.0f}",
                 f"{t_in / statistics.median(v):.2f}"] for k, v in scan_t.items()]
    print(rows_out)
    scan_table = table(["scan-heavy: distinct IPs, all rows, 8 shards asleep", "median ms",
                        "best ms", "× in-process"], rows_out)

    # Selective query: the extra latency of each backend over in-process.
    awake = Dispatcher(engine, InProcessBackend(engine), shards=SHARDS)
    for s in awake.layout(view):
        awake.wake(s.id)
    assert awake.run(view, sel_q).shards == 1
    pool_awake = Dispatcher(engine, pool_be, shards=SHARDS)
    import ray

    from quarry.cluster.ray_backend import RayBackend

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rb = RayBackend(engine.store.root, SHARDS)
    rb.start()
    rdisp = Dispatcher(engine, rb, shards=SHARDS)
    for s in rdisp.layout(view):
        rdisp.wake(s.id)
    # The same actors reached only by Ray calls (no direct connections), for comparison.
    rb_calls = RayBackend(engine.store.root, SHARDS, direct=False)
    rb_calls.start()
    rcalls = Dispatcher(engine, rb_calls, shards=SHARDS)
    for s in rcalls.layout(view):
        rcalls.wake(s.id)
    url = f"http://127.0.0.1:{PORT}"
    n_sel = 400
    with process([sys.executable, "-m", "quarry", "serve", "--data", str(engine.store.root),
                  "--port", str(PORT)], f"{url}/healthz"):
        rem = Dispatcher(engine, RemoteBackend(((url,),)), shards=1)
        backends = {"in-process (reference)": awake, "process pool": pool_awake,
                    "Ray actors (direct connections, the default)": rdisp,
                    "Ray actors (Ray calls only)": rcalls, "remote server (HTTP)": rem}
        want = awake.run(view, sel_q).result.hits.ts.tolist()
        for d in backends.values():
            assert d.run(view, sel_q).result.hits.ts.tolist() == want
            timed(lambda d=d: d.run(view, sel_q), 20)
        lat: dict[str, list[float]] = {k: [] for k in backends}
        for _ in range(n_sel):
            for k, d in backends.items():
                lat[k] += timed(lambda d=d: d.run(view, sel_q), 1)
        rem.close()
    ref = statistics.median(lat["in-process (reference)"])
    sel_rows = [[k, f"{statistics.median(v) * 1000:.2f}",
                 f"{np.percentile(v, 99) * 1000:.2f}",
                 f"{(statistics.median(v) - ref) * 1000:+.2f}"] for k, v in lat.items()]
    print(sel_rows)
    sel_table = table(["selective: 3 IPs, 1 minute (1 shard)", "p50 ms", "p99 ms",
                       "extra p50 ms"], sel_rows)

    # Faults: load through Ray while an actor is killed every second.
    mem_q = MembershipQuery(sel_ips, Window())
    want_sel = rdisp.run(view, sel_q).result.hits.ts.tolist()
    want_mem = rdisp.run(view, mem_q).result.tolist()
    fails: list[str] = []
    lats: list[float] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                ok = (rdisp.run(view, sel_q).result.hits.ts.tolist() == want_sel
                      and rdisp.run(view, mem_q).result.tolist() == want_mem)
                if not ok:
                    fails.append("wrong answer")
            except Exception as e:
                fails.append(repr(e))
            lats.append(time.perf_counter() - t)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for th in threads:
        th.start()
    rng = random.Random(1)
    kills = 0
    for _ in range(args.kill_seconds):
        time.sleep(1.0)
        ray.kill(rb.actors[rng.randrange(SHARDS)][0], no_restart=False)
        kills += 1
    stop.set()
    for th in threads:
        th.join()
    fault_table = table(["queries", "failed", "actors killed", "p50 ms", "p99 ms", "max ms"], [[
        f"{len(lats):,}", str(len(fails)), str(kills), f"{statistics.median(lats) * 1000:.1f}",
        f"{np.percentile(lats, 99) * 1000:.1f}", f"{max(lats) * 1000:.0f}"]])
    print(fault_table, fails[:3])

    # Per-shard figures for the scale-out note.
    spec = awake.layout(view)[0]
    one = Dispatcher(engine, InProcessBackend(engine), shards=SHARDS)
    one.layout(view)
    one.sleep(spec.id)
    sub = Window(spec.ts_range[0], spec.ts_range[1])
    t_shard_scan = statistics.median(timed(lambda: one.run(view, DistinctQuery(sub, 10)), 3))
    disk = sum(i.data_size + i.index_size for i in spec.infos)
    per = table(["per shard", "value"], [
        ["rows", f"{spec.rows:,}"],
        ["bytes on disk per row (chunk + IP index)", f"{disk / spec.rows:.1f}"],
        ["bytes in memory per row when awake (index + times)",
         f"{spec.index_bytes / spec.rows:.1f}"],
        ["scan (asleep) distinct IPs, rows/s on one core", f"{spec.rows / t_shard_scan:,.0f}"],
        ["selective query through the index, p50 ms (in-process)", f"{ref * 1000:.2f}"],
    ])
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    body = "\n\n".join([
        f"Load average at the end (1/5/15 min, 2 cores shared with other work): {load}.",
        f"Data: {view.rows:,} `ip,ts` records over one day, {len(view.chunks)} chunks, "
        f"{SHARDS} shards; 50,000 distinct IPv4 addresses (Zipf). Ray: a local cluster "
        "(`num_cpus=2`), one actor per shard; queries reach an actor over a direct "
        "connection it opens, or by Ray calls only (a second set of actors).",
        scan_table, sel_table,
        f"### Ray actor killed every second for {args.kill_seconds} s (2 client threads)",
        fault_table, "### Per-shard figures (used by docs/scale-out.md)", per])
    write_section("shards", "Shards and backends (bench/shards.py)",
                  f"python bench/shards.py --rows {args.rows} --kill-seconds {args.kill_seconds}",
                  body)
    for d in (inproc, pool, pool_awake, awake, rdisp, rcalls, one):
        d.close()
    ray.shutdown()


if __name__ == "__main__":
    main()

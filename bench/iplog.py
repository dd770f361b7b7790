"""Access-log index benchmark: Quarry against DuckDB (in-memory table and Parquet), same run.

Synthetic data: N records over D days, IPs Zipf-distributed over ~M distinct addresses.
Measures ingest (ip,ts CSV and combined log format), time-window queries with 100 IPs,
all times of one IP, membership over HTTP (p50/p99), and index bytes per record; writes a
table to docs/benchmarks.md under its own heading, with the command that produced it.

    .venv/bin/python bench/iplog.py --records 50000000
"""

from __future__ import annotations

import argparse
import gc
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from quarry.datasets.records_ingest import ingest
from quarry.engine import Engine
from quarry.formats.ipaddr import format_ips
from quarry.formats.textblocks import expand_sources
from quarry.query import iplog
from quarry.query.model import FindQuery, VisitsQuery, ip_list, window
from quarry.store import Store

REPO = Path(__file__).resolve().parent.parent
HEADING = "## Access-log index (bench/iplog.py)"
START = 1_700_000_000.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def generate(n: int, distinct: int, days: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    addrs = np.zeros(0, dtype=np.uint32)
    while len(addrs) < distinct:  # unicast-looking IPv4 addresses, no duplicates
        more = rng.integers(1 << 24, 0xE0000000, int(distinct * 1.1), dtype=np.uint32)
        addrs = np.unique(np.concatenate([addrs, more]))
    addrs = rng.permutation(addrs)[:distinct]
    weights = 1.0 / np.arange(1, distinct + 1, dtype=np.float64) ** 1.05
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(n))
    ips = addrs[np.minimum(ranks, distinct - 1)]
    ts_ms = np.sort(rng.integers(0, days * 86400 * 1000, n))  # ms resolution, in time order
    ts = (int(START) * 1000 + ts_ms) / 1000.0  # one rounding: exact 3-decimal values
    be = ips.astype(">u4").view(np.uint8).reshape(-1, 4)
    packed = np.zeros((n, 16), dtype=np.uint8)
    packed[:, 10:12] = 0xFF
    packed[:, 12:] = be
    return pa.table({"ip": format_ips(packed), "ts": pa.array(ts, pa.float64())})


def write_combined(table: pa.Table, path: Path) -> None:
    """Combined-format lines for the same records (their ips and times)."""
    ts = table.column("ts").to_numpy()
    when = pa.array(ts.astype(np.int64).astype("datetime64[s]"))
    stamp = pc.strftime(when, format="%d/%b/%Y:%H:%M:%S +0000")
    lines = pc.binary_join_element_wise(
        table.column("ip").combine_chunks(), pa.scalar(" - - ["), stamp,
        pa.scalar('] "GET /index.html?q=1 HTTP/1.1" 200 5120 "https://example.org/a" '
                  '"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/119.0"\n'), "")
    with open(path, "w") as f:
        for start in range(0, len(lines), 500_000):
            f.write("".join(lines[start:start + 500_000].to_pylist()))


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``repeat`` runs (after one warm-up), and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000_000)
    ap.add_argument("--distinct", type=int, default=5_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--log-lines", type=int, default=2_000_000,
                    help="combined-format lines for the log ingest measurement")
    ap.add_argument("--queries", type=int, default=20, help="different queries per kind")
    ap.add_argument("--http-requests", type=int, default=2000)
    ap.add_argument("--port", type=int, default=9440)
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "iplog")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args()
    if not 9400 <= args.port <= 9499:
        ap.error("benchmarks use ports 9400-9499")
    import duckdb

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    rows: dict[str, str] = {}
    notes: list[str] = []

    log(f"generating {args.records:,} records")
    table = generate(args.records, args.distinct, args.days, args.seed)
    csv_path = args.work / "iplog.csv"
    opts = pcsv.WriteOptions(include_header=False, quoting_style="none")
    pcsv.write_csv(table, csv_path, write_options=opts)
    n_distinct = len(pc.unique(table.column("ip")))
    log(f"{n_distinct:,} distinct IPs; CSV {csv_path.stat().st_size / 1e9:.2f} GB")

    # -- ingest ------------------------------------------------------------------------------
    store = Store(args.work / "data")
    t = time.perf_counter()
    rep = ingest(store, "iplog", expand_sources([str(csv_path)]))
    t_csv = time.perf_counter() - t
    assert rep.rows == args.records and rep.rejected == 0, (rep.rows, rep.rejected)
    rows["ingest ip,ts CSV"] = f"{rep.rows / t_csv / 1e6:.2f} M records/s (target ≥ 1 M/s)"
    log(f"ingested CSV in {t_csv:.1f}s")
    n_log = min(args.log_lines, args.records)
    log_path = args.work / "access.log"
    write_combined(table.slice(0, n_log), log_path)
    t = time.perf_counter()
    rep2 = ingest(store, "weblog", expand_sources([str(log_path)]))
    t_log = time.perf_counter() - t
    assert rep2.rows == n_log and rep2.rejected == 0, (rep2.rows, rep2.rejected)
    rows["ingest combined log"] = (f"{rep2.rows / t_log / 1e3:.0f} k lines/s "
                                   "(target ≥ 300 k/s)")
    log_path.unlink()

    snap = store.snapshot(store.require_head("iplog"))
    chunks = snap.meta["chunks"]
    index_bytes = sum(c["index_size"] for c in chunks)
    data_bytes = sum(c["data_size"] for c in chunks)
    rows["index memory"] = (f"{index_bytes / args.records:.1f} B/record "
                            "(target ≤ 16); data "
                            f"{data_bytes / args.records:.1f} B/record, {len(chunks)} chunks")

    # -- references --------------------------------------------------------------------------
    log("loading DuckDB")
    parquet = args.work / "iplog.parquet"
    pq.write_table(table, parquet)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.register("src", table)
    con.execute("CREATE TABLE mem AS SELECT * FROM src")
    con.unregister("src")
    con.execute(f"CREATE VIEW pq AS SELECT * FROM read_parquet('{parquet}')")

    engine = Engine(store)
    view = engine.records("iplog")
    # A running server has its mapped chunks and indexes paged in (awake shards); DuckDB's
    # in-memory table is in memory too. Touch every page once so both start warm.
    view.warm()
    for c in view.chunks:
        c.warm()
    rng = np.random.default_rng(args.seed + 1)
    ts_all = table.column("ts").to_numpy()
    ip_col = table.column("ip")

    def pick(span: float) -> tuple[list[str], float, float]:
        s = START + float(rng.uniform(0, args.days * 86400 - span))
        e = s + span
        lo, hi = np.searchsorted(ts_all, [s, e])
        inside = rng.integers(lo, max(lo + 1, hi), 50)  # 50 visitors of the window
        anyone = rng.integers(0, args.records, 50)  # 50 visitors of the month
        ips = [ip_col[int(i)].as_py() for i in np.concatenate([inside, anyone])]
        return ips, s, e

    def compare(label: str, span: float) -> None:
        qs = [pick(span) for _ in range(args.queries)]
        state = {"i": 0}

        def nxt() -> tuple[list[str], float, float]:
            state["i"] = (state["i"] + 1) % len(qs)
            return qs[state["i"]]

        def quarry() -> pa.Table:
            ips, s, e = nxt()
            page = iplog.find_page(view, FindQuery(ip_list(ips), window(s, e), 1_000_000))
            return page.hits.to_arrow()

        def duck(tbl: str) -> Callable[[], pa.Table]:
            def run() -> pa.Table:
                ips, s, e = nxt()
                return con.sql(f"SELECT ip, ts FROM {tbl} WHERE ts BETWEEN ? AND ? AND "
                               "ip IN (SELECT unnest(?)) ORDER BY ts",
                               params=[s, e, ips]).to_arrow_table()
            return run

        def rows_of(t: pa.Table) -> list[tuple[str, float]]:
            return sorted(zip(t.column("ip").to_pylist(), t.column("ts").to_pylist(),
                              strict=True))

        # Each engine runs the same sequence of queries; the last results must agree.
        state["i"] = 0
        tq, rq = timed(quarry, len(qs))
        state["i"] = 0
        tm, rm = timed(duck("mem"), len(qs))
        state["i"] = 0
        tp, rp = timed(duck("pq"), len(qs))
        assert rows_of(rq) == rows_of(rm) == rows_of(rp), label
        rows[label] = (f"Quarry {tq * 1e3:.2f} ms, DuckDB memory {tm * 1e3:.1f} ms "
                       f"(**{tm / tq:.0f}x**, target ≥ 5x), DuckDB Parquet {tp * 1e3:.1f} ms "
                       f"(**{tp / tq:.0f}x**, target ≥ 10x); last query {rq.num_rows} records")

    log("queries")
    compare("1 h window, 100 IPs", 3600.0)
    compare("1 day window, 100 IPs", 86400.0)

    one_ips = [ip_col[int(i)].as_py() for i in rng.integers(0, args.records, args.queries)]
    state = {"i": 0}

    def one() -> str:
        state["i"] = (state["i"] + 1) % len(one_ips)
        return one_ips[state["i"]]

    def q_visits() -> np.ndarray:
        v = iplog.visits(view, VisitsQuery(ip_list([one()])[0], limit=1_000_000))
        return v.times_us / 1e6

    def d_visits(tbl: str) -> Callable[[], np.ndarray]:
        return lambda: con.execute(f"SELECT ts FROM {tbl} WHERE ip = ? ORDER BY ts",
                                   [one()]).fetchnumpy()["ts"]

    state["i"] = 0
    tq, vq = timed(q_visits, len(one_ips))
    state["i"] = 0
    tm, vm = timed(d_visits("mem"), len(one_ips))
    state["i"] = 0
    tp, _ = timed(d_visits("pq"), min(5, len(one_ips)))  # a full scan each: seconds
    assert np.array_equal(vq, vm)
    rows["all times of one IP"] = (f"Quarry {tq * 1e3:.2f} ms, DuckDB memory {tm * 1e3:.1f} ms "
                                   f"({tm / tq:.0f}x), DuckDB Parquet {tp * 1e3:.1f} ms "
                                   f"(**{tp / tq:.0f}x**, target ≥ 100x)")
    con.close()
    gc.collect()

    # -- membership over HTTP ------------------------------------------------------------------
    log("membership over HTTP")
    proc = subprocess.Popen([sys.executable, "-m", "quarry", "serve", "--data",
                             str(args.work / "data"), "--port", str(args.port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait(args.port)
        bodies = []
        for _ in range(50):
            s = START + float(rng.uniform(0, (args.days - 1) * 86400))
            bodies.append({"ips": _sample_ips(view, rng, 100), "start": s, "end": s + 86400})
        gets = [f"/datasets/iplog/find/member/[{','.join(b['ips'])}]/{b['start']!r}/"
                f"{b['end']!r}/" for b in bodies]
        posts = [orjson.dumps(b) for b in bodies]
        conn = http.client.HTTPConnection("127.0.0.1", args.port)

        def get(i: int) -> None:
            conn.request("GET", gets[i % len(gets)])
            r = conn.getresponse()
            assert r.status == 200, r.read()
            r.read()

        def post(i: int) -> None:
            conn.request("POST", "/datasets/iplog/find/member", body=posts[i % len(posts)],
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200, r.read()
            r.read()

        for label, fn in (("GET /datasets/iplog/find/member/[ips]/start/end/", get),
                          ("POST /datasets/iplog/find/member (JSON)", post)):
            p50, p99 = _latency(fn, args.http_requests)
            rows[f"membership, 100 IPs, 1 day: {label}"] = (
                f"p50 {p50:.2f} ms, **p99 {p99:.2f} ms** (target p99 ≤ 2 ms)")
        conn.close()
    finally:
        proc.terminate()
        proc.wait(10)

    # -- report --------------------------------------------------------------------------------
    cmd = "python bench/iplog.py " + " ".join(sys.argv[1:])
    notes.append(f"{args.records:,} records over {args.days} days, {n_distinct:,} distinct IPs "
                 f"(Zipf s=1.05 over {args.distinct:,}); {os.cpu_count()} cores; DuckDB "
                 f"{duckdb.__version__} with 2 threads, ip VARCHAR and ts DOUBLE as in the CSV; "
                 "medians over the queries; both timed in process through their Python APIs, "
                 "answers as Arrow tables / numpy arrays on both sides. HTTP: a quarry server "
                 "process and one stdlib http.client connection, sequential requests.")
    section = [HEADING, "", f"Command: `{cmd}`", "", *notes, "",
               "| measure | result |", "| --- | --- |",
               *[f"| {k} | {v} |" for k, v in rows.items()], ""]
    text = "\n".join(section)
    print(text)
    _write_section(args.out, text)


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _latency(fn: Callable[[int], None], n: int) -> tuple[float, float]:
    """p50 and p99 in ms of ``n`` sequential requests on one keep-alive connection."""
    for i in range(100):  # warm-up
        fn(i)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return lat[n // 2] * 1e3, lat[min(n - 1, int(n * 0.99))] * 1e3


def _sample_ips(view: Any, rng: np.random.Generator, k: int) -> list[str]:
    chunk = view.chunks[int(rng.integers(0, len(view.chunks)))]
    rows = rng.integers(0, len(chunk.ts), k)
    out: list[str] = format_ips(chunk.ip[rows]).to_pylist()
    return out


def _write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of the file, leaving the others alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()

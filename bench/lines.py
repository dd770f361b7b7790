"""Line server benchmark: index build vs a numpy scan, serving vs nginx and the SQLite design.

    python bench/lines.py            # 2 GB file, as the issue asks
    python bench/lines.py --size-gb 0.2 --duration 5   # a quick run

Every figure is a ratio against a reference measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    OUT,
    ROOT,
    WrkResult,
    nginx_static,
    process,
    table,
    write_section,
    wrk,
)
from quarry.datasets.lines import put_lines
from quarry.index.line_index import SCAN_BLOCK, build_line_index_from_file
from quarry.store import Store

LUA = ROOT / "bench" / "random_lines.lua"
PY = sys.executable


def make_file(path: Path, size: int, seed: int = 7) -> int:
    """Random lines of 20-200 bytes (plus newline) up to ``size`` bytes; returns line count."""
    rng = np.random.default_rng(seed)
    lines = 0
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(500_000, max(1, (size - written) // 111))
            lengths = rng.integers(20, 201, n)
            ends = np.cumsum(lengths + 1) - 1
            buf = rng.integers(97, 123, int(ends[-1]) + 1, dtype=np.uint8)
            buf[ends] = 10
            f.write(buf.tobytes())
            written += len(buf)
            lines += n
    return lines


def numpy_scan(path: Path) -> int:
    """The reference: a plain chunked numpy newline scan, same block size."""
    buf = bytearray(SCAN_BLOCK)
    total = 0
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            total += len(np.flatnonzero(np.frombuffer(buf, np.uint8, n) == 10))
    return total


def quarry_index(path: Path, mode: str = "dense") -> int:
    with open(path, "rb") as f, tempfile.TemporaryFile() as sink:
        info = build_line_index_from_file(f, sink.write, mode=mode,  # type: ignore[arg-type]
                                          size_hint=path.stat().st_size)
    return info.lines


def best_time(fn, *args, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_probe(path: Path) -> None:
    """Child-process side of ``rss_growth_of_index_build``: prints peak RSS growth in KiB."""
    # A child inherits its parent's high-water mark through fork; reset it (Linux >= 4.0),
    # then measure from the current resident size.
    Path("/proc/self/clear_refs").write_text("5")
    before = _vm("VmRSS")
    quarry_index(path)
    print(_vm("VmHWM") - before)


def rss_growth_of_index_build(path: Path) -> float:
    """Peak RSS growth (MB) of an index build, measured in a fresh process."""
    out = subprocess.run([PY, __file__, "--rss-probe", str(path)], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def copy_and_sync(src: Path, dst: Path) -> None:
    """Reference for a copying put: `cp` of the file, then fsync, as the store does."""
    subprocess.run(["cp", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    dst.unlink()


def build_sqlite(path: Path, db: Path) -> float:
    t = time.perf_counter()
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE lines (n INTEGER PRIMARY KEY, text TEXT)")
    with open(path, "rb") as f:
        conn.executemany("INSERT INTO lines VALUES (?, ?)",
                         ((i, line.rstrip(b"\n").decode()) for i, line in enumerate(f, 1)))
    conn.commit()
    conn.close()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds per target")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--rss-probe", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_probe:
        rss_probe(args.rss_probe)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * (1 << 30))
    path = OUT / f"lines-{args.size_gb:g}g.txt"
    if not path.exists() or abs(path.stat().st_size - size) > 1 << 20:
        print(f"generating {path} ({size >> 20} MB)...", flush=True)
        make_file(path, size)
    size = path.stat().st_size

    print("index build (warm cache)...", flush=True)
    numpy_scan(path)  # warm the page cache
    t_ref = best_time(numpy_scan, path)
    t_dense = best_time(quarry_index, path)
    t_sparse = best_time(quarry_index, path, "sparse")
    rss = rss_growth_of_index_build(path)

    data = OUT / "store"
    shutil.rmtree(data, ignore_errors=True)
    store = Store(data)
    t = time.perf_counter()
    dense = put_lines(store, "big", path)
    t_put = time.perf_counter() - t
    t = time.perf_counter()
    sparse = put_lines(store, "big-sparse", path, link=True, mode="sparse")
    t_link = time.perf_counter() - t
    t_cp = best_time(copy_and_sync, path, OUT / "cp-test.txt", repeat=2)
    nlines = int(dense.snapshot.meta["lines"])
    dense_bpl = dense.snapshot.part("line-index").size / nlines
    sparse_bpl = sparse.snapshot.part("line-index").size / nlines

    db = OUT / "lines.sqlite"
    print("building the SQLite baseline...", flush=True)
    t_sqlite = build_sqlite(path, db)

    mb = size / (1 << 20)
    build_rows = [
        ["numpy chunked newline scan (reference)", f"{mb / t_ref:,.0f}", "1.00", ""],
        ["quarry line index, dense", f"{mb / t_dense:,.0f}", f"{t_ref / t_dense:.2f}",
         f"RSS growth {rss:.0f} MB; {dense_bpl:.2f} B/line"],
        ["quarry line index, sparse", f"{mb / t_sparse:,.0f}", f"{t_ref / t_sparse:.2f}",
         f"{sparse_bpl:.3f} B/line"],
        ["cp + fsync of the file (reference for a copying put)", f"{mb / t_cp:,.0f}",
         f"{t_ref / t_cp:.2f}", ""],
        ["quarry put (copy + SHA-256 + index + fsync)", f"{mb / t_put:,.0f}",
         f"{t_ref / t_put:.2f}", f"{t_cp / t_put:.2f}× cp + fsync"],
        ["quarry put --link --index sparse (SHA-256 + index)", f"{mb / t_link:,.0f}",
         f"{t_ref / t_link:.2f}", ""],
        ["SQLite design (insert every line)", f"{mb / t_sqlite:,.0f}", f"{t_ref / t_sqlite:.2f}",
         ""],
    ]

    with open(path, "rb") as f:
        avg_line = f.read(1 << 20).split(b"\n")[:1000]
    body_line = avg_line[len(avg_line) // 2] if avg_line else b"x" * 110
    body_line = (body_line * 2)[:110]
    env = {"LINES": str(nlines)}
    results: list[WrkResult] = []
    qport, nport, sport = 9201, 9202, 9203
    quarry_url = f"http://127.0.0.1:{qport}"
    serve = [PY, "-m", "quarry", "serve", "--data", str(data), "--default", "big",
             "--port", str(qport), "--workers", str(args.workers)]
    # Without access logs, as nginx runs here (access_log off); the cost of Quarry's access
    # log (its default, --log-level info) is measured in a run of its own below.
    print("serving: quarry, nginx, SQLite design...", flush=True)
    with process([*serve, "--log-level", "warning"], f"{quarry_url}/healthz",
                 log=OUT / "quarry-serve.log"):
        wrk("warm", quarry_url, script=LUA, env=env, duration=2)
        results.append(wrk("quarry GET /lines/<random n> (dense)", quarry_url, script=LUA,
                           env=env, duration=args.duration))
        wrk("warm", quarry_url, script=LUA, duration=2,
            env={**env, "PATH_PREFIX": "/datasets/big-sparse/lines/"})
        results.append(wrk("quarry GET /datasets/big-sparse/lines/<random n> (sparse)",
                           quarry_url, script=LUA, duration=args.duration,
                           env={**env, "PATH_PREFIX": "/datasets/big-sparse/lines/"}))
    with process(serve, f"{quarry_url}/healthz", log=OUT / "quarry-serve-access.log"):
        wrk("warm", quarry_url, script=LUA, env=env, duration=2)
        logged = wrk("quarry GET /lines/<random n> (dense), access log on (--log-level info, "
                     "to a file)", quarry_url, script=LUA, env=env, duration=args.duration)
    with nginx_static(body_line + b"\n", nport, workers=args.workers) as nurl:
        nbase = nurl.rsplit("/", 1)[0]
        wrk("warm", nurl, duration=2)
        # The reference: nginx serving its static file at one URL, without a script.
        nginx = wrk("nginx static file of one line (reference)", nurl, duration=args.duration)
        # Also with the very script Quarry gets (random /lines/<n>, one file behind them):
        # wrk's Lua request builder costs client CPU on the same two cores.
        nginx_lua = wrk("nginx, same file at random /lines/<n> (same wrk script)", nbase,
                        script=LUA, env=env, duration=args.duration)
    sqlite_cmd = [PY, "-m", "uvicorn", "bench.sqlite_lines_app:app", "--port", str(sport),
                  "--workers", str(args.workers), "--http", "httptools", "--loop", "uvloop",
                  "--no-access-log", "--log-level", "warning"]
    surl = f"http://127.0.0.1:{sport}"
    with process(sqlite_cmd, f"{surl}/healthz", env={"SQLITE_LINES_DB": str(db),
                                                       "PYTHONPATH": str(ROOT)}):
        wrk("warm", surl, script=LUA, env=env, duration=2)
        sqlite_res = wrk("SQLite design, same framework", surl, script=LUA, env=env,
                         duration=args.duration)

    serve_rows = []
    for r in [nginx, nginx_lua, *results, logged, sqlite_res]:
        serve_rows.append([r.name, f"{r.rps:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
                           str(r.errors), f"{r.rps / nginx.rps:.2f}",
                           f"{r.rps / nginx_lua.rps:.2f}", f"{r.rps / sqlite_res.rps:.1f}"])
    body = (
        f"File: {mb:,.0f} MB, {nlines:,} random lines of 20-200 bytes; {args.workers} server "
        f"workers; `wrk -t2 -c64 -d{args.duration}s` (random line numbers via "
        "bench/random_lines.lua). Quarry and nginx without access logs but the row that says "
        "so; Quarry's answers carry Date, x-request-id, ETag and Cache-Control."
        "\n\n### Index build (MB/s, best of 3, warm cache)\n\n"
        + table(["what", "MB/s", "× numpy scan", "notes"], build_rows)
        + "\n\n### Serving\n\n"
        + table(["target", "req/s", "p50 ms", "p99 ms", "errors", "× nginx",
                 "× nginx, same script", "× SQLite"], serve_rows)
        + "\n"
    )
    print(body)
    if not args.no_write:
        cmd = "python bench/lines.py" + (f" --size-gb {args.size_gb:g}" if args.size_gb != 2
                                         else "")
        write_section("lines", "Line server (bench/lines.py)", cmd, body)


if __name__ == "__main__":
    main()

"""Snapshot service benchmark: Quarry against the original design (git, one file per resource).

Measured in one run on the same disk, printed as ratios:
- PUT of 1 KB documents over HTTP vs ``git add`` + ``git commit`` of a file per PUT
  (durable: Quarry's default fsyncs vs git with ``core.fsync=all``; and both without fsync);
- GET of an old version (HTTP, the ZeroMQ endpoint, the Python API) vs ``git show <sha>:<path>``;
- PUT of a 1 GiB document over HTTP (and through the Python API) vs ``cp`` of the same file;
- event latency from the PUT's reply to a ZeroMQ subscriber's receipt (p50/p99).

    .venv/bin/python bench/snapshots.py [--small 200] [--big-mb 1024] [--write docs/benchmarks.md]

Uses ports 9300-9399 and bench/out/ (removed afterwards).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import zmq

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
HEADING = "## Snapshots: versions, events (bench/snapshots.py)"


def quarry(*args: str) -> list[str]:
    return [sys.executable, "-m", "quarry", *args]


@contextmanager
def quarry_up(folder: Path, port: int, pub: int, rep: int, fsync: bool) -> Iterator[str]:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "quarry.yaml"
    cfg.write_text(f"data: {folder / 'data'}\nhttp: {{port: {port}}}\n"
                   f"events: {{pub: 'tcp://127.0.0.1:{pub}'}}\n"
                   f"compat: {{rep: 'tcp://127.0.0.1:{rep}'}}\n")
    env = {**os.environ, "QUARRY_FSYNC": "1" if fsync else "0"}
    proc = subprocess.Popen(quarry("up", "--config", str(cfg)), env=env,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def timed(n: int, op: Callable[[int], object]) -> float:
    """Seconds per operation."""
    t0 = time.perf_counter()
    for i in range(n):
        op(i)
    return (time.perf_counter() - t0) / n


def doc(i: int) -> bytes:
    return (b"%08d " % i) * 114 + b"\n"  # ~1 KB, different each time


def git_repo(folder: Path, fsync: bool) -> Path:
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    for k, v in (("user.email", "bench@example.com"), ("user.name", "bench"),
                 ("core.fsync", "all" if fsync else "none"), ("gc.auto", "0")):
        subprocess.run(["git", "-C", str(folder), "config", k, v], check=True)
    return folder


def git_put(repo: Path, i: int) -> None:
    (repo / "resource").write_bytes(doc(i))
    subprocess.run(["git", "-C", str(repo), "add", "resource"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", f"put {i}"], check=True)


def bench_small_puts(n: int, fsync: bool, ports: tuple[int, int, int]) -> dict[str, float]:
    folder = OUT / f"small-{int(fsync)}"
    repo = git_repo(OUT / f"git-{int(fsync)}", fsync)
    git = timed(max(20, n // 4), lambda i: git_put(repo, i))
    with quarry_up(folder, *ports, fsync=fsync) as base, httpx.Client(base_url=base) as c:
        def put(i: int) -> None:
            r = c.put("/datasets/docs/small", content=doc(i))
            assert r.status_code == 201, r.text
        ours = timed(n, put)
    return {"git": git, "quarry": ours}


def bench_gets(n: int, ports: tuple[int, int, int]) -> dict[str, float]:
    """GET version 10 of 200 (durable store from the small-PUT run, re-served)."""
    folder = OUT / "small-1"
    repo = OUT / "git-1"
    shas = subprocess.run(["git", "-C", str(repo), "rev-list", "--reverse", "HEAD"],
                          capture_output=True, check=True, text=True).stdout.split()
    sha = shas[min(10, len(shas) - 1)]
    git = timed(max(50, n // 5), lambda i: subprocess.run(
        ["git", "-C", str(repo), "show", f"{sha}:resource"], capture_output=True, check=True))
    out: dict[str, float] = {"git": git}
    with quarry_up(folder, *ports, fsync=True) as base, httpx.Client(base_url=base) as c:
        hist = c.get("/datasets/docs/small/versions").json()["versions"]
        old = hist[-11]["version"]
        expect = c.get("/datasets/docs/small/data", params={"version": old}).content

        def http_get(i: int) -> None:
            r = c.get("/datasets/docs/small/data", params={"version": old[:12]})
            assert r.content == expect

        out["http"] = timed(n, http_get)
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        with ctx.socket(zmq.REQ) as s:
            s.connect(f"tcp://127.0.0.1:{ports[2]}")
            msg = f"=====GET docs small\n\t{old[:12]}".encode()

            def rep_get(i: int) -> None:
                s.send(msg)
                assert s.recv().startswith(b"=====docs small")

            out["zmq"] = timed(n, rep_get)
        ctx.term()
    from quarry.engine import Engine

    engine = Engine(folder / "data")
    out["api"] = timed(n, lambda i: engine.data("docs/small", old[:12])[2].read_all())
    return out


def bench_big_put(mb: int, ports: tuple[int, int, int]) -> dict[str, float]:
    src = OUT / "big.bin"
    block = os.urandom(64 << 20)
    with open(src, "wb") as f:
        for _ in range(max(1, mb // 64)):
            f.write(block)
    size = src.stat().st_size
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(OUT / "big.copy")], check=True)
    cp = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(["sync"], check=True)
    cp_sync = cp + time.perf_counter() - t0
    (OUT / "big.copy").unlink()
    subprocess.run(["sync"], check=True)
    out = {"bytes": float(size), "cp": cp, "cp+sync": cp_sync}
    with quarry_up(OUT / "big", *ports, fsync=True) as base:
        def body() -> Iterator[bytes]:
            with open(src, "rb") as f:
                while b := f.read(1 << 20):
                    yield b

        t0 = time.perf_counter()
        r = httpx.put(f"{base}/datasets/big/doc", content=body(),
                      headers={"content-length": str(size)}, timeout=600)
        out["http"] = time.perf_counter() - t0
        assert r.status_code == 201, r.text
    from quarry.datasets.kinds import WriteOptions, get_kind
    from quarry.store import Store

    store = Store(OUT / "big" / "data")
    t0 = time.perf_counter()
    w = get_kind("document").writer(store, "big/api", WriteOptions(size_hint=size))
    with open(src, "rb") as f:
        while b := f.read(8 << 20):
            w.write(b)
    w.commit()
    out["api"] = time.perf_counter() - t0
    src.unlink()
    return out


def bench_latency(n: int, ports: tuple[int, int, int]) -> list[float]:
    with quarry_up(OUT / "latency", *ports, fsync=True) as base, \
            httpx.Client(base_url=base) as c:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        received: dict[str, float] = {}
        done = threading.Event()

        def listen() -> None:
            import orjson

            with ctx.socket(zmq.SUB) as sub:
                sub.setsockopt(zmq.SUBSCRIBE, b"lat/x ")
                sub.setsockopt(zmq.RCVTIMEO, 200)
                sub.connect(f"tcp://127.0.0.1:{ports[1]}")
                ready.set()
                while not done.is_set():
                    try:
                        _, body = sub.recv_multipart()
                    except zmq.Again:
                        continue
                    received[orjson.loads(body)["version"]] = time.perf_counter()

        ready = threading.Event()
        t = threading.Thread(target=listen)
        t.start()
        ready.wait()
        time.sleep(0.5)
        replies: dict[str, float] = {}
        for i in range(n):
            r = c.put("/datasets/lat/x", content=doc(i))
            replies[r.json()["version"]] = time.perf_counter()
            time.sleep(0.002)
        time.sleep(0.5)
        done.set()
        t.join()
        ctx.term()
    # An event may arrive before the reply is read: that is no latency at all.
    return sorted(max(0.0, received[v] - replies[v]) for v in replies if v in received) + [
        float("inf")] * sum(1 for v in replies if v not in received)


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--big-mb", type=int, default=1024)
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--write", type=Path, default=None, help="update this markdown file")
    args = ap.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    try:
        durable = bench_small_puts(args.small, True, (9301, 9302, 9303))
        relaxed = bench_small_puts(args.small, False, (9311, 9312, 9313))
        gets = bench_gets(args.small * 5, (9321, 9322, 9323))
        big = bench_big_put(args.big_mb, (9331, 9332, 9333))
        lat = bench_latency(args.events, (9341, 9342, 9343))
    finally:
        shutil.rmtree(OUT, ignore_errors=True)

    ms = 1000.0
    mib = big["bytes"] / (1 << 20)
    rows = [
        ("PUT 1 KB document, durable (fsync) vs git core.fsync=all",
         f"{durable['quarry'] * ms:.2f} ms", f"{durable['git'] * ms:.2f} ms",
         durable["git"] / durable["quarry"], "≥ 10×"),
        ("PUT 1 KB document, no fsync (QUARRY_FSYNC=0) vs git default",
         f"{relaxed['quarry'] * ms:.2f} ms", f"{relaxed['git'] * ms:.2f} ms",
         relaxed["git"] / relaxed["quarry"], "≥ 10×"),
        ("GET old version over HTTP vs git show",
         f"{gets['http'] * ms:.3f} ms", f"{gets['git'] * ms:.2f} ms",
         gets["git"] / gets["http"], "≥ 20×"),
        ("GET old version over ZeroMQ REP vs git show",
         f"{gets['zmq'] * ms:.3f} ms", f"{gets['git'] * ms:.2f} ms",
         gets["git"] / gets["zmq"], "≥ 20×"),
        ("GET old version, Python API vs git show",
         f"{gets['api'] * ms:.3f} ms", f"{gets['git'] * ms:.2f} ms",
         gets["git"] / gets["api"], "≥ 20×"),
        (f"PUT {mib:.0f} MiB document over HTTP vs cp",
         f"{mib / big['http']:.0f} MiB/s", f"{mib / big['cp']:.0f} MiB/s",
         big["cp"] / big["http"], "≥ 0.5×"),
        (f"PUT {mib:.0f} MiB document over HTTP vs cp + sync",
         f"{mib / big['http']:.0f} MiB/s", f"{mib / big['cp+sync']:.0f} MiB/s",
         big["cp+sync"] / big["http"], "(fsync'ed both)"),
        (f"PUT {mib:.0f} MiB document, Python API vs cp",
         f"{mib / big['api']:.0f} MiB/s", f"{mib / big['cp']:.0f} MiB/s",
         big["cp"] / big["api"], "≥ 0.5×"),
    ]
    table = ["| measure | Quarry | reference | ratio | target |",
             "|---|---|---|---|---|"]
    for name, a, b, ratio, target in rows:
        table.append(f"| {name} | {a} | {b} | {ratio:.1f}× | {target} |")
    table.append(f"| event latency, PUT reply → ZeroMQ subscriber ({len(lat)} events) | "
                 f"p50 {pct(lat, 50) * ms:.2f} ms, p99 {pct(lat, 99) * ms:.2f} ms, "
                 f"max {lat[-1] * ms:.2f} ms | | | p99 ≤ 10 ms |")
    text = "\n".join(table)
    print(text)
    if args.write:
        cmd = "python bench/snapshots.py " + " ".join(sys.argv[1:])
        write_section(args.write, text, cmd)


def write_section(path: Path, table: str, cmd: str) -> None:
    """Replace this benchmark's section of ``path`` (other sections belong to others)."""
    when = time.strftime("%Y-%m-%d", time.gmtime())
    section = (f"{HEADING}\n\nCommand: `{cmd.strip()}` ({when}, {os.cpu_count()} cores, "
               "shared machine; git and Quarry measured in the same run, same disk).\n\n"
               f"{table}\n")
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(HEADING)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        end = old.find("\n## ", start + len(HEADING))
        new = old[:start] + section + (old[end + 1:] if end >= 0 else "")
    path.write_text(new)


if __name__ == "__main__":
    main()

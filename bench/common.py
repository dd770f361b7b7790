"""Shared benchmark plumbing: wrk and nginx runners, process helpers, the results file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"
OUT = ROOT / "bench" / "out"


@dataclass(frozen=True)
class WrkResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]


def wrk(name: str, url: str, *, script: Path | None = None, env: dict[str, str] | None = None,
        threads: int = 2, connections: int = 64, duration: int = 10) -> WrkResult:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk nginx")
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "95.50%" in the thread stats must not pass for the 50th percentile.
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in m.groups())
    return WrkResult(name, rps, p50, p99, errors, total)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(url)


@contextmanager
def process(args: list[str], health_url: str, env: dict[str, str] | None = None,
            log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    sink = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=sink, stderr=sink,
                            start_new_session=True)
    try:
        wait_http(health_url)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log:
            sink.close()  # type: ignore[union-attr]


@contextmanager
def nginx_static(body: bytes, port: int, workers: int = 2) -> Iterator[str]:
    """nginx serving one static file (also at every /lines/<n>); yields its URL."""
    if shutil.which("nginx") is None:
        sys.exit("nginx is not installed: apt-get install -y wrk nginx")
    with tempfile.TemporaryDirectory(prefix="quarry-nginx-") as d:
        root = Path(d)
        os.chmod(root, 0o755)
        (root / "line.txt").write_bytes(body)
        os.chmod(root / "line.txt", 0o644)
        conf = root / "nginx.conf"
        conf.write_text(
            f"worker_processes {workers}; daemon off; pid {root}/nginx.pid;\n"
            f"error_log {root}/error.log;\n"
            "events { worker_connections 4096; }\n"
            "http { access_log off; "
            f"client_body_temp_path {root}/cb; proxy_temp_path {root}/px; "
            f"fastcgi_temp_path {root}/fc; uwsgi_temp_path {root}/uw; scgi_temp_path {root}/sc; "
            f"server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }}\n"
            # Any /lines/<n> is the one static file, so nginx can take the very wrk script
            # (random line numbers) the line server gets: same client work on both sides.
            "location /lines/ { rewrite ^ /line.txt break; } } }\n")
        url = f"http://127.0.0.1:{port}/line.txt"
        with process(["nginx", "-c", str(conf), "-e", str(root / "error.log")], url):
            yield url


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_section(key: str, title: str, command: str, body: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, leaving the others alone."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    text = RESULTS.read_text() if RESULTS.exists() else (
        "# Benchmarks\n\nEvery figure is a ratio against a reference measured in the same run, "
        "on the same machine (2 cores, shared). Each section names the command that made it.\n")
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (f"{start}\n## {title}\n\nCommand: `{command}` ({stamp})\n\n{body}\n{end}")
    # The end marker after this start (a stray one earlier in the file once duplicated half
    # of it).
    at = text.find(start)
    if at >= 0 and end in text[at:]:
        text = text[:at] + section + text[text.index(end, at) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def _disk_writes() -> int:
    """Sectors written so far, all block devices together (/proc/diskstats)."""
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 9:
                total += int(fields[9])
    return total


def settle(quiet: float = 1.0, limit: float = 60.0) -> float:
    """Flush dirty data and wait until the disks have written nothing for ``quiet`` seconds
    (at most ``limit``); returns the seconds waited. Deleting a previous run's thousands of
    files makes this ``discard``-mounted disk trim for a while, and a benchmark started
    meanwhile measured 2-4x slower small PUTs."""
    start = time.perf_counter()
    subprocess.run(["sync"], check=False)
    last, since = _disk_writes(), time.perf_counter()
    while time.perf_counter() - start < limit:
        time.sleep(0.25)
        now = _disk_writes()
        if now != last:
            last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            break
    return time.perf_counter() - start


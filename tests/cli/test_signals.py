"""SIGTERM stops `quarry serve` (one worker, several, with a shard pool) and `quarry up`
cleanly: exit 0, and no process of theirs left behind (uvicorn used to re-raise the signal
after its graceful stop, so the server died of it: exit 143, and a shard pool's forkserver
and resource tracker outlived it)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.support import FIXTURES, free_port, quarry_cmd, running

pytestmark = pytest.mark.slow


def _stop_and_check(proc: subprocess.Popen[bytes], settle: float = 1.0) -> None:
    time.sleep(settle)  # workers and shard pools started
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, (proc.stderr.read() if proc.stderr else b"").decode()[-2000:]
    _, alive = psutil.wait_procs(family, timeout=5)
    # The group too: a process that was reparented (an orphan) keeps its process group.
    group = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == proc.pid]
    assert not alive and not group, [(p.pid, _cmdline(p)) for p in [*alive, *group]]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:120]
    except psutil.Error:
        return "?"


@pytest.mark.parametrize("extra", [[], ["--workers", "2"], ["--shard-workers", "2"]],
                         ids=["one-worker", "two-workers", "shard-pool"])
def test_sigterm_stops_serve_cleanly(tmp_path: Path, extra: list[str]) -> None:
    port = free_port()
    data = tmp_path / "d"
    if "--shard-workers" in extra:
        subprocess.run(quarry_cmd("ingest", "logs", "iplog", str(FIXTURES / "iplog" / "1k.csv"),
                                  "--data", str(data)), check=True, capture_output=True)
    args = quarry_cmd("serve", "--demo", "--data", str(data), "--port", str(port), *extra)
    with running(args, f"http://127.0.0.1:{port}/healthz") as proc:
        if "--shard-workers" in extra:
            import httpx

            r = httpx.get(f"http://127.0.0.1:{port}/shards", params={"dataset": "iplog"})
            assert r.status_code == 200  # the pool (forkserver, resource tracker) is up
        _stop_and_check(proc)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_up_cleanly(tmp_path: Path, workers: int) -> None:
    ports = {k: free_port() for k in ("http", "pub", "rep")}
    cfg = tmp_path / "quarry.yaml"
    cfg.write_text(f"data: {tmp_path / 'd'}\n"
                   f"http: {{host: 127.0.0.1, port: {ports['http']}, workers: {workers}}}\n"
                   f"events: {{pub: 'tcp://127.0.0.1:{ports['pub']}'}}\n"
                   f"compat: {{rep: 'tcp://127.0.0.1:{ports['rep']}'}}\n")
    with running(quarry_cmd("up", "--config", str(cfg)),
                 f"http://127.0.0.1:{ports['http']}/healthz") as proc:
        _stop_and_check(proc)

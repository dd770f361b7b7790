"""Temp files of killed writers: fsck reports them, put and serve remove them, and a live
writer's (in another process) is never touched. Real processes, killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quarry.cli import app
from tests.support import FIXTURES, free_port, quarry_cmd

pytestmark = pytest.mark.slow
runner = CliRunner()
BLOCK = b"x" * 1023 + b"\n"
MB = 9  # put reads standard input 8 MB at a time: more than that reaches its temp file


def start_put(data: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A `quarry put NAME -` that has written MB megabytes into a temp file and waits for
    more; returns the process and its temp file."""
    before = set((data / "tmp").iterdir()) if (data / "tmp").exists() else set()
    proc = subprocess.Popen(quarry_cmd("put", name, "-", "--data", str(data)),
                            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    proc.stdin.write(BLOCK * 1024 * MB)
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = set((data / "tmp").iterdir()) - before if (data / "tmp").exists() else set()
        big = [f for f in new if f.stat().st_size >= 8 << 20]
        if big:
            return proc, big[0]
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError("the writer wrote no temp file")


def kill(proc: subprocess.Popen[bytes], temp: Path) -> list[Path]:
    """SIGKILL a writer; returns the temp files it left (those named with its token)."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.stdin is not None
    proc.stdin.close()
    token = "-".join(temp.name.split("-")[:2]) + "-"
    return sorted(f for f in temp.parent.iterdir() if f.name.startswith(token))


def test_stale_temp_files_are_reported_then_removed_but_never_a_live_writers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "d"
    small = FIXTURES / "lines" / "frankenstein.txt"
    assert runner.invoke(app, ["put", "small", str(small), "--data", str(data)]).exit_code == 0
    stale = kill(*start_put(data, "killed"))
    size = sum(f.stat().st_size for f in stale)
    r = runner.invoke(app, ["fsck", "--json", "--data", str(data)])
    assert r.exit_code == 0, r.output  # wasted space, not damage
    report = json.loads(r.stdout)
    assert report["stale_temp_files"] == report["temp_files"] == len(stale)
    assert report["stale_temp_bytes"] == size >= 8 << 20
    r = runner.invoke(app, ["fsck", "--data", str(data)])
    assert f"{len(stale)} stale temp file(s) of dead writers, {size / 2**20:.1f} MB" in r.stdout
    # Another put (here in another process) removes them on start.
    live, busy = start_put(data, "live")
    try:
        assert not any(f.exists() for f in stale)
        stale = kill(*start_put(data, "killed"))
        r = runner.invoke(app, ["fsck", "--json", "--data", str(data)])
        report = json.loads(r.stdout)
        assert report["stale_temp_files"] == len(stale) < report["temp_files"]
        r = runner.invoke(app, ["put", "small", str(small), "--data", str(data)])
        assert r.exit_code == 0
        size = report["stale_temp_bytes"]
        assert (f"removed {len(stale)} stale temp file(s) of dead writers ({size:,} bytes)"
                in r.stderr)
        assert not any(f.exists() for f in stale)
        assert busy.exists()  # the live writer's, in another process: left alone
        assert live.stdin is not None
        live.stdin.write(b"the end\n")
        live.stdin.close()
        assert live.wait(60) == 0
    finally:
        if live.poll() is None:
            live.kill()
            live.wait(10)
    r = runner.invoke(app, ["info", "live", "--json", "--data", str(data)])
    assert r.exit_code == 0 and json.loads(r.stdout)["size"] == (MB << 20) + 8
    # serve removes them on start too.
    stale = kill(*start_put(data, "killed"))
    monkeypatch.setattr("quarry.server.runner.run", lambda settings: None)
    r = runner.invoke(app, ["serve", "--port", str(free_port()), "--data", str(data)])
    assert r.exit_code == 0 and f"removed {len(stale)} stale temp file(s)" in r.stderr
    assert os.listdir(data / "tmp") == []
    r = runner.invoke(app, ["fsck", "--json", "--data", str(data)])
    assert json.loads(r.stdout)["stale_temp_files"] == 0

"""Helpers for tests that start real processes: free ports, a server that is waited for."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quarry_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "quarry", *args]


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def running(args: list[str], health_url: str, env: dict[str, str] | None = None,
            timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process, wait until ``health_url`` answers, and always stop it afterwards."""
    full_env = {**os.environ, **(env or {})}
    # Output goes to files, not pipes: a server that logs every request would fill an unread
    # pipe and hang. proc.stdout / proc.stderr read the files from their start.
    fd_out, out_path = tempfile.mkstemp(prefix="quarry-test-out-")
    fd_err, err_path = tempfile.mkstemp(prefix="quarry-test-err-")
    try:
        proc = subprocess.Popen(args, env=full_env, stdout=fd_out, stderr=fd_err,
                                start_new_session=True)
    finally:
        os.close(fd_out)
        os.close(fd_err)
    proc.stdout = open(out_path, "rb")  # noqa: SIM115 - closed below
    proc.stderr = open(err_path, "rb")  # noqa: SIM115 - closed below
    try:
        wait_http(health_url, timeout, proc)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        for path in (out_path, err_path):
            os.unlink(path)


def json_lines(text: str) -> list[Any]:
    """What a `--json` command prints for a list: one compact JSON document a line."""
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]

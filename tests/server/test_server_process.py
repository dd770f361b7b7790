"""The real server: a separate process, real sockets, several workers."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.index.test_line_index import oracle_lines
from tests.support import FIXTURES, free_port, quarry_cmd, running

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"
EXPECTED = oracle_lines(FRANKENSTEIN.read_bytes())

pytestmark = pytest.mark.slow


def _raw_exchange(port: int, payload: bytes, expect_responses: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        buf = b""
        while buf.count(b"HTTP/1.1 ") < expect_responses or not _complete(buf, expect_responses):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


def _complete(buf: bytes, n: int) -> bool:
    # Each response carries content-length; count complete ones.
    done = 0
    rest = buf
    while rest:
        head, sep, body = rest.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if len(body) < length:
            return False
        done += 1
        rest = body[length:]
    return done >= n


def test_serve_file_over_sockets(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", str(FRANKENSTEIN), "--data", str(tmp_path / "d"),
                      "--port", str(port), "--workers", "2")
    with running(args, f"{url}/healthz"):
        with httpx.Client(base_url=url) as c:
            for n in (1, 2, 100, len(EXPECTED)):
                r = c.get(f"/lines/{n}")
                assert r.status_code == 200 and r.content == EXPECTED[n - 1]
            assert c.get(f"/lines/{len(EXPECTED) + 1}").status_code == 413
            assert c.get("/lines/abc").json()["error"] == "bad request"
            assert c.get("/datasets/frankenstein/lines/3").content == EXPECTED[2]
            assert c.get("/docs").status_code == 200
        # Pipelined requests on one connection, mixing hot and ASGI routes: answered in order.
        payload = (b"GET /lines/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /lines/3 HTTP/1.1\r\nHost: x\r\n\r\n")
        out = _raw_exchange(port, payload, 3)
        bodies = [part.partition(b"\r\n\r\n")[2] for part in out.split(b"HTTP/1.1 ")[1:]]
        assert bodies[0].startswith(EXPECTED[1])
        assert b'"status":"ok"' in bodies[1]
        assert bodies[2].startswith(EXPECTED[2])
        # HTTP/1.0 without keep-alive: answered, then closed.
        out = _raw_exchange(port, b"GET /lines/2 HTTP/1.0\r\n\r\n", 1)
        assert out.endswith(EXPECTED[1])
        # Garbage is refused, not crashed on; the server still answers afterwards.
        out = _raw_exchange(port, b"NOT HTTP AT ALL\r\n\r\n", 1)
        assert b"400" in out.split(b"\r\n")[0]
        assert httpx.get(f"{url}/lines/1").content == EXPECTED[0]


def test_new_versions_are_picked_up_while_serving(tmp_path: Path) -> None:
    import subprocess

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = str(tmp_path / "d")
    f = tmp_path / "v.txt"
    f.write_bytes(b"version one\n")
    args = quarry_cmd("serve", str(f), "--data", data, "--port", str(port))
    with running(args, f"{url}/healthz"):
        assert httpx.get(f"{url}/lines/1").content == b"version one"
        f.write_bytes(b"version two\n")
        subprocess.run(quarry_cmd("put", "v", str(f), "--data", data), check=True,
                       capture_output=True)
        import time

        deadline = time.monotonic() + 5
        while httpx.get(f"{url}/lines/1").content != b"version two":
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_requests_one_packet_at_a_time_take_the_fast_path_or_the_parser(
        tmp_path: Path) -> None:
    """The protocol answers a lone plain GET without the parser; every other shape (split
    packets, a body, Connection: close, an ASGI route in between) must still be right."""
    import time

    port = free_port()
    args = quarry_cmd("serve", str(FRANKENSTEIN), "--data", str(tmp_path / "d"),
                      "--port", str(port))
    with running(args, f"http://127.0.0.1:{port}/healthz"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:

            def ask(*packets: bytes) -> bytes:
                for p in packets:
                    s.sendall(p)
                    time.sleep(0.02)  # separate packets, as a slow client sends them
                buf = b""
                while not _complete(buf, 1):
                    chunk = s.recv(65536)
                    assert chunk, "the server closed the connection"
                    buf += chunk
                return buf

            for n in (1, 5, 7):
                out = ask(b"GET /lines/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
                assert out.startswith(b"HTTP/1.1 200") and out.endswith(EXPECTED[n - 1])
            out = ask(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b'"status":"ok"' in out
            out = ask(b"GET /lines/2 HTTP/1.1\r\nHo", b"st: x\r\n\r\n")  # split request
            assert out.endswith(EXPECTED[1])
            # A body announced in the headers and sent in the next packet belongs to this
            # request: it must not be read as the next one.
            out = ask(b"GET /lines/3 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
                      b"hello")
            assert out.endswith(EXPECTED[2])
            out = ask(b"GET /lines/4 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert out.endswith(EXPECTED[3])
            out = ask(b"GET /lines/99999999 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 413")
            out = ask(b"GET /lines/6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert out.endswith(EXPECTED[5])
            assert s.recv(10) == b""  # closed as asked
        # An idle keep-alive connection is closed after the keep-alive timeout (5 s), even
        # when all its requests took the fast path.
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            s.sendall(b"GET /lines/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while not _complete(buf, 1):
                buf += s.recv(65536)
            t0 = time.monotonic()
            assert s.recv(10) == b""
            assert 3 < time.monotonic() - t0 < 12

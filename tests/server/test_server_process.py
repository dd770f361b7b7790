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


def _ask(s: socket.socket, *packets: bytes) -> bytes:
    """Send ``packets`` one by one (as a slow client does) and read one whole response."""
    import time

    for p in packets:
        s.sendall(p)
        time.sleep(0.02)
    buf = b""
    while not _complete(buf, 1):
        chunk = s.recv(65536)
        assert chunk, "the server closed the connection"
        buf += chunk
    return buf


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
                return _ask(s, *packets)

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


def _one_response(s: socket.socket, *packets: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = _ask(s, *packets).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _hot(headers: dict[bytes, bytes]) -> bool:
    """Whether an answer came from the hot path: raw_response writes content-type first,
    uvicorn writes its Date first on the ASGI app's answers (both carry x-request-id)."""
    assert b"date" in headers and b"x-request-id" in headers
    return next(iter(headers)) == b"content-type"


def _put(name: str, body: bytes, extra: bytes = b"") -> bytes:
    return (b"PUT /datasets/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s"
            % (name.encode(), len(body), extra, body))


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_small_puts_take_the_hot_path_and_answer_as_the_asgi_route(
        tmp_path: Path, token: str | None) -> None:
    """A plain small PUT is committed inside the protocol; any other shape goes to the ASGI
    route. Both give the same answers."""
    import json

    port = free_port()
    args = quarry_cmd("serve", "--data", str(tmp_path / "d"), "--port", str(port))
    env = {"QUARRY_FSYNC": "0"}  # commits are then quick: the hot path takes small PUTs
    if token:
        env["QUARRY_TOKEN"] = token
    auth = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
    with running(args, f"http://127.0.0.1:{port}/healthz", env=env), \
            socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        st, h, body = _one_response(s, _put("docs/a", b"one", auth + b"X-Quarry-Message: m1\r\n"))
        assert st == 201 and _hot(h), (st, h, body)
        hot = json.loads(body)
        assert hot["status"] == "created" and hot["parent"] is None
        assert h[b"etag"] == b'"%s"' % hot["version"].encode()
        assert h[b"location"] == b"/datasets/docs/a/data?version=%s" % hot["version"].encode()
        # The same data again makes no new version.
        st, h, body = _one_response(s, _put("docs/a", b"one", auth))
        assert st == 200 and json.loads(body)["status"] == "unchanged"
        # Headers in one packet, the body in two more.
        st, h, body = _one_response(s, _put("docs/a", b"", auth).replace(
            b"Content-Length: 0", b"Content-Length: 5"), b"tw", b"o..")
        assert st == 201 and _hot(h)
        two = json.loads(body)["version"]
        # A query string goes to the ASGI route, which answers alike.
        st, h, body = _one_response(s, _put("docs/a?message=m3", b"three", auth))
        assert st == 201 and not _hot(h)
        assert set(json.loads(body)) == set(hot) and json.loads(body)["parent"] == two
        # If-Match too (here: a conflict).
        st, h, body = _one_response(s, _put("docs/a", b"four", auth + b"If-Match: %s\r\n"
                                            % two.encode()))
        assert st == 412 and not _hot(h)
        # Bad input from the hot path: a JSON error naming the problem.
        st, h, body = _one_response(s, _put("docs/-bad", b"x", auth))
        assert st == 400 and b"invalid dataset name" in json.loads(body)["detail"].encode()
        # A path below a dataset is no dataset: the ASGI app's 405 of a read-only route.
        st, h, body = _one_response(s, _put("docs/find", b"x", auth))
        assert st == 405 and h[b"allow"] == b"GET, HEAD, POST"
        if token:  # no token: refused by the ASGI route, and nothing is written
            st, h, body = _one_response(s, _put("docs/b", b"nope"))
            assert st == 401
        # A PUT and a GET in one packet are answered in order.
        s.sendall(_put("docs/c", b"pipelined", auth)
                  + b"GET /datasets/docs/c/data HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while not _complete(buf, 2):
            buf += s.recv(65536)
        assert buf.startswith(b"HTTP/1.1 201") and buf.endswith(b"pipelined")
    # What was written survives, with its message and history.
    with running(args, f"http://127.0.0.1:{port}/healthz", env=env), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        hist = c.get("/datasets/docs/a/versions").json()["versions"]
        assert [v["message"] for v in hist] == ["m3", "", "m1"]
        assert c.get("/datasets/docs/a/data").content == b"three"
        assert c.get(f"/datasets/docs/a/data?version={two}").content == b"two.."
        assert c.get("/datasets/docs/b").status_code == 404
        metrics = c.get("/metrics").text
        assert 'route="/datasets/{name:dataset}"' in metrics


def test_durable_small_puts_answer_in_order_and_lose_nothing(tmp_path: Path) -> None:
    """With fsync on, hot PUT answers wait for the disk, several PUTs sharing one wait: a
    pipelined PUT, PUT, GET are still answered in order, and concurrent writers on one
    dataset all get their versions recorded."""
    import json
    import threading

    port = free_port()
    args = quarry_cmd("serve", "--data", str(tmp_path / "d"), "--port", str(port))
    with running(args, f"http://127.0.0.1:{port}/healthz", env={"QUARRY_FSYNC": "1"}):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            for i in range(3):  # the first is measured by the ASGI route; then hot
                st, h, _ = _one_response(s, _put("docs/p", b"warm %d" % i))
                assert st == 201
            if not _hot(h):
                pytest.skip("this disk's sync is too slow for PUTs on the event loop")
            s.sendall(_put("docs/p", b"first") + _put("docs/p", b"second")
                      + b"GET /datasets/docs/p/data HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while not _complete(buf, 3):
                buf += s.recv(65536)
            answers = buf.split(b"HTTP/1.1 ")[1:]
            assert [a[:3] for a in answers] == [b"201", b"201", b"200"]
            assert answers[2].endswith(b"second")
            v1 = json.loads(answers[0].partition(b"\r\n\r\n")[2])["version"]
            v2 = json.loads(answers[1].partition(b"\r\n\r\n")[2])
            assert v2["parent"] == v1

        versions: list[str] = []
        errors: list[BaseException] = []

        def writer(k: int) -> None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                    for i in range(15):
                        st, _, body = _one_response(c, _put("docs/many", b"w%d-%d" % (k, i)))
                        assert st == 201, body
                        versions.append(json.loads(body)["version"])
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            hist = c.get("/datasets/docs/many/versions", params={"limit": 1000}).json()
        assert sorted(v["version"] for v in hist["versions"]) == sorted(versions)
        assert len(versions) == 90

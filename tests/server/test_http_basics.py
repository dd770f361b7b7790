"""What every answer carries, hot path included: Date, x-request-id, an access-log line, a
count in the metrics; and conditional GETs through a real server."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from quarry import logs
from quarry.datasets.lines import put_lines
from quarry.engine import Engine
from quarry.store import Store
from tests.conftest import make_client
from tests.support import FIXTURES, free_port, quarry_cmd, running

FRANKENSTEIN = FIXTURES / "lines" / "frankenstein.txt"


def _ask(s: socket.socket, request: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    s.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (x.partition(b":") for x in lines[1:])]
    size = int(dict(headers).get(b"content-length", b"0"))
    while len(body) < size:
        body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_every_answer_carries_date_and_request_id(tmp_path: Path) -> None:
    port = free_port()
    args = quarry_cmd("serve", str(FRANKENSTEIN), "--name", "frank", "--data",
                      str(tmp_path / "d"), "--port", str(port))
    get = b"GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n"
    with running(args, f"http://127.0.0.1:{port}/healthz"), \
            socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        # The hot path without the parser, the hot path through it (a split packet, two
        # If-None-Match), and the ASGI app.
        for url, extra in [(b"/lines/2", b""), (b"/datasets/frank/lines/2", b""),
                           (b"/lines/3", b"Connection: keep-alive\r\n"),
                           (b"/datasets/frank", b""), (b"/nowhere", b"")]:
            status, headers, _ = _ask(s, get % (url, extra))
            h = dict(headers)
            assert b"date" in h and b"GMT" in h[b"date"], (url, headers)
            assert len(h[b"x-request-id"]) == 16, (url, headers)
            assert [k for k, _ in headers].count(b"date") == 1, (url, headers)
            status, headers, _ = _ask(s, get % (url, extra + b"X-Request-ID: mine-1\r\n"))
            assert dict(headers)[b"x-request-id"] == b"mine-1", url
        # Conditional GETs, on both of the hot path's ways in.
        status, headers, _ = _ask(s, get % (b"/lines/2", b""))
        etag = dict(headers)[b"etag"]
        assert dict(headers)[b"cache-control"] == b"no-cache"
        status, headers, body = _ask(s, get % (b"/lines/2", b"If-None-Match: %s\r\n" % etag))
        assert (status, body) == (304, b"")
        assert dict(headers)[b"etag"] == etag and b"content-length" not in dict(headers)
        status, headers, body = _ask(s, get % (b"/lines/2", b"If-None-Match: \"x\"\r\n"
                                               b"If-None-Match: %s\r\n" % etag))
        assert (status, body) == (304, b"")
        version = etag.strip(b'"')
        status, headers, body = _ask(s, get % (b"/datasets/frank/data?version=" + version,
                                               b"If-None-Match: %s\r\n" % etag))
        assert status == 304
        assert dict(headers)[b"cache-control"] == b"public, max-age=31536000, immutable"
        # The connection is still good after a bodiless 304.
        status, _, body = _ask(s, get % (b"/lines/2", b""))
        assert status == 200 and body.startswith(b"Project Gutenberg")


def _capture() -> tuple[io.StringIO, logging.Handler]:
    logs.configure("json", "info")
    stream = io.StringIO()
    handler = next(h for h in logging.getLogger("quarry").handlers if getattr(h, "_quarry", 0))
    handler.stream = stream  # type: ignore[attr-defined]
    return stream, handler


def test_hot_answers_are_logged_like_asgi_ones(engine: Engine, store: Store) -> None:
    put_lines(store, "frank", FRANKENSTEIN)
    c = make_client(engine, default_dataset="frank")
    hot = c.app.hot_routes  # type: ignore[attr-defined]
    stream, _ = _capture()
    try:
        for url in ("/lines/2", "/datasets/frank/lines/99999999"):
            hot.respond(b"GET", url.encode(), b"rid-hot")
            c.get(url, headers={"x-request-id": "rid-hot"})
    finally:
        logs.configure("text", "warning")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 4, records
    for record in records:
        record.pop("time")
        record["message"] = record["message"].rsplit(" ", 1)[0]  # without its duration
    assert records[0] == records[1] == {
        "level": "info", "logger": "quarry.http", "message": "GET /lines/2 200",
        "route": "/lines/{n}", "status": 200, "request_id": "rid-hot"}
    assert records[2] == records[3]
    assert records[2]["status"] == 413


def test_hot_log_lines_are_batched_and_flushed_soon(engine: Engine, store: Store) -> None:
    from quarry.server.accesslog import AccessLog

    put_lines(store, "frank", FRANKENSTEIN)
    hot = make_client(engine, default_dataset="frank").app.hot_routes  # type: ignore[attr-defined]
    hot.access_log = AccessLog(batch=3, delay=0.1)
    writes: list[str] = []
    stream, _ = _capture()
    stream.write = lambda text: writes.append(text) or len(text)  # type: ignore[method-assign]

    async def serve() -> None:
        for n in range(4):
            hot.respond(b"GET", b"/lines/%d" % (n + 1))
        assert len(writes) == 1 and writes[0].count("\n") == 3  # a batch, in one write
        await asyncio.sleep(0.3)  # the fourth, by the timer
        assert len(writes) == 2 and "/lines/4" in writes[1]

    try:
        asyncio.run(serve())
    finally:
        logs.configure("text", "warning")


def test_hot_counts_reach_the_metrics_without_a_scrape(engine: Engine, store: Store) -> None:
    """A worker that stops getting requests still folds its last hot counts in (a scrape
    of another worker sums every worker's values, but flushes only its own)."""
    put_lines(store, "frank", FRANKENSTEIN)
    c = make_client(engine, default_dataset="frank")
    hot = c.app.hot_routes  # type: ignore[attr-defined]
    metrics = c.app.metrics  # type: ignore[attr-defined]
    hot.tally.FLUSH_EVERY = 0.1

    def served() -> float:
        from prometheus_client import generate_latest

        for fam in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
            for s in fam.samples:
                if (s.name == "quarry_http_requests_total"
                        and s.labels.get("route") == "/lines/{n}"):
                    return s.value
        return 0.0

    async def serve() -> None:
        hot.respond(b"GET", b"/lines/1")
        await asyncio.sleep(0.2)
        hot.respond(b"GET", b"/lines/2")  # after FLUSH_EVERY: folded in at once
        hot.respond(b"GET", b"/lines/3")
        await asyncio.sleep(0.3)

    asyncio.run(serve())
    assert served() == 3

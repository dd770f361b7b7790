"""The hot route: ``GET /lines/<n>`` answered inside the HTTP protocol, with no ASGI round trip.

Profiling showed the ASGI machinery (scope dict, task, two ``send`` awaits) costing several
times the line lookup itself; answering in the protocol callback gets the route within reach
of nginx serving a static file. Anything unusual (query string, escapes, other methods, huge
lines) returns None and takes the ordinary ASGI route, which gives the same answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from quarry.access import AccessPolicy
from quarry.datasets.kinds import WriteOptions, read_data
from quarry.datasets.lines import parse_line_number
from quarry.engine import Engine
from quarry.errors import NotFound, QuarryError
from quarry.logs import LOGGER, fields
from quarry.server.hot_records import CompatDataset, HotRecords
from quarry.server.metrics import Metrics
from quarry.server.names import has_sub_route
from quarry.server.puts import MAX_MESSAGE, commits_inline, put_small
from quarry.server.responses import JSON, TEXT, error_body, raw_response
from quarry.store import CommitResult

log = logging.getLogger(LOGGER + ".http")

HOT_MAX_LINE = 256 << 10
HOT_PUT_MAX = 64 << 10  # bodies the hot path takes whole; bigger ones stream through ASGI
PUT_ROUTE = "/datasets/{name:dataset}"  # the ASGI route's label
BODY_CACHE = 256  # small version bodies kept in memory
_LINES = b"/lines/"
_DATASETS = b"/datasets/"
_DATA = b"/data"
_DATA_Q = b"/data?"


def _internal_error(e: Exception, url: bytes) -> bytes:
    """A 500 with a JSON body, as the ASGI app answers an unexpected error; logged."""
    log.error("PUT %s failed: %r", url.decode("ascii"), e, exc_info=e)
    return raw_response(500, JSON, error_body(QuarryError(f"internal error: {type(e).__name__}")))


class HotRoutes:
    def __init__(self, engine: Engine, default_dataset: str | None, index_base: int,
                 policy: AccessPolicy, metrics: Metrics | None = None,
                 hot_records: bool = True) -> None:
        self.engine = engine
        self.metrics = metrics
        # The hot path reads no headers: it declines whatever the policy closes, and the
        # ASGI app, which checks the token, answers that. PUTs it takes are checked here.
        self.policy = policy
        self.default_dataset = default_dataset
        self.index_base = index_base
        self.tally = metrics.hot if metrics is not None else None
        self.default_closed = (default_dataset is not None
                               and policy.closing(default_dataset) is not None)
        self.compat = CompatDataset(engine, default_dataset)
        # Records are answered here only when shards run in this process (the hot path calls
        # the executors directly); other backends go through the dispatcher in the ASGI app.
        self.records = HotRecords(engine, self.compat) if hot_records else None
        self._bodies: dict[str, bytes] = {}
        self._answers: dict[str, bytes] = {}  # whole answers of small versions, by id

    def respond(self, method: bytes, url: bytes) -> bytes | None:
        if method != b"GET" or b"%" in url:
            return None
        if url.startswith(_LINES):  # the busiest route first
            if b"?" in url or self.default_closed:
                return None
            start = time.perf_counter()
            resp = self._answer(self.default_dataset, url[7:])
            if resp is not None and self.tally is not None:
                self.tally.add("/lines/{n}", int(resp[9:12]), time.perf_counter() - start)
            return resp
        if url.startswith(_DATASETS) and (url.endswith(_DATA) or _DATA_Q in url):
            start = time.perf_counter()
            resp = self._data(url)
            if resp is not None and self.tally is not None:
                self.tally.add("/datasets/{name:path}/data", int(resp[9:12]),
                               time.perf_counter() - start)
            return resp
        if b"?" in url:
            return None
        if b"/find/" in url:  # "find" is a reserved segment: never part of a dataset name
            if self.policy.closed or self.records is None:
                return None  # the ASGI route checks closed datasets' tokens, or shards run
            start = time.perf_counter()
            resp = self.records.respond(url)
            if resp is not None and self.tally is not None:
                self.tally.add("/find/{ips}/{start}/{end}/", int(resp[9:12]),
                               time.perf_counter() - start)
            return resp
        start = time.perf_counter()
        if not url.startswith(_DATASETS):
            return None
        rest = url[10:]
        cut = rest.rfind(_LINES)
        if cut <= 0:
            return None
        name = rest[:cut].decode("ascii", "replace")
        if self.policy.closing(name) is not None:
            return None
        resp = self._answer(name, rest[cut + 7 :])
        if resp is not None and self.tally is not None:
            self.tally.add("/datasets/{name:path}/lines/{n}", int(resp[9:12]),
                           time.perf_counter() - start)
        return resp

    # -- PUT of a small version ------------------------------------------------------------

    def takes_put(self, url: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether ``PUT url`` is answered here, decided when its headers are in (its body is
        then read here, not by the ASGI app): a plain PUT of a small new version that the
        access policy allows and whose commit may run on the event loop. Query strings,
        ``If-Match``, aliases and chunked or big bodies go to the ASGI route."""
        if (not url.startswith(_DATASETS) or len(url) == len(_DATASETS)
                or b"?" in url
                or b"%" in url or b"/aliases/" in url or not url.isascii()
                or has_sub_route(url[len(_DATASETS):].decode("ascii"))):
            return False  # (a path below a dataset: the ASGI app answers its 405)
        size = None
        for key, value in headers:
            if key == b"content-length":
                if not value.isdigit():
                    return False
                size = int(value)
            elif key in (b"transfer-encoding", b"if-match", b"expect"):
                return False
        if size is None or size > HOT_PUT_MAX or not commits_inline(self.engine.store, size):
            return False
        auth = next((v for k, v in headers if k == b"authorization"), None)
        return self.policy.check("PUT", url.decode("ascii"), auth) is None

    def put(self, url: bytes, headers: list[tuple[bytes, bytes]],
            body: bytes) -> tuple[bytes, Callable[[], None]]:
        """The answer to a PUT that ``takes_put`` accepted (always a response, given once
        its commit is on disk), and its bookkeeping (log line, metrics), to call once the
        answer is on its way."""
        start = time.perf_counter()
        name = url[len(_DATASETS):].decode("ascii")
        h = dict(headers)
        ctype = h.get(b"content-type")
        opts = WriteOptions(
            message=h.get(b"x-quarry-message", b"").decode("latin-1")[:MAX_MESSAGE],
            size_hint=len(body), content_type=ctype.decode("latin-1") if ctype else None,
            params={"index": "auto"})
        durable: Callable[[], None] | None = None
        try:
            status, doc, extra, durable = put_small(self.engine.store, name, body, opts,
                                                    self._ingested)
            lines = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode("latin-1"))
                             for k, v in extra.items())
            resp = raw_response(status, JSON, orjson.dumps(doc), lines)
        except QuarryError as e:
            status, resp = e.status, raw_response(e.status, JSON, error_body(e))
        except Exception as e:  # answered as the ASGI app would: a 500 with a JSON body
            status, resp = 500, _internal_error(e, url)
        # The answer was made while the disk synced the commit; it goes once that is done.
        try:
            if durable is not None:
                durable()
        except Exception as e:
            status, resp = 500, _internal_error(e, url)

        def done() -> None:
            seconds = time.perf_counter() - start
            if self.metrics is not None:
                self.metrics.request(PUT_ROUTE, "PUT", status, seconds)
            log.info("PUT %s %d %.1fms", url.decode("ascii"), status, seconds * 1000,
                     extra=fields(route=PUT_ROUTE, status=status))

        return resp, done

    def _ingested(self, res: CommitResult) -> None:
        if self.metrics is not None:
            self.metrics.ingested.labels(res.snapshot.dataset).inc(res.snapshot.size)

    def _answer(self, name: str | None, raw: bytes) -> bytes | None:
        if not raw or b"/" in raw:
            # An empty number or one with more segments (/lines/1/x) is no route at all: the
            # ASGI app answers it (404, or its trailing-slash redirect), not a 400 here.
            return None
        try:
            if name is None:
                raise NotFound("no default dataset: serve a file, or name one with --default, "
                               "or use /datasets/<name>/lines/<n>")
            n = int(raw) if raw.isdigit() and len(raw) < 19 else -1
            if n >= self.index_base:
                i = n - self.index_base  # the usual case, without a decode
            else:  # the checks and their error messages
                i = parse_line_number(raw.decode("ascii", "replace"), self.index_base)
            line = self.engine.head_lines(name).line(i, self.index_base)
        except QuarryError as e:
            return raw_response(e.status, JSON, error_body(e))
        if len(line) > HOT_MAX_LINE:
            return None  # streamed by the ASGI route instead of copied whole
        return raw_response(200, TEXT, line)

    def _data(self, url: bytes) -> bytes | None:
        """``/datasets/<name>/data[?version=<v>]``: a small version's whole data (the
        snapshot service's GET), same answer as the ASGI route in routes/versions.py."""
        path, _, query = url.partition(b"?")
        if not path.endswith(_DATA):
            return None
        version: str | None = None
        if query:
            key, eq, value = query.partition(b"=")
            if key != b"version" or not eq or b"&" in value or b"+" in value:
                return None
            version = value.decode("ascii", "replace") or None
        name = path[len(_DATASETS) : -len(_DATA)].decode("ascii", "replace")
        if self.policy.closing(name) is not None:
            return None  # the ASGI route checks closed datasets' tokens
        try:
            vid = self.engine.resolve(name, version)
            # A version never changes, so neither does the whole answer for it.
            resp = self._answers.get(vid)
            if resp is not None:
                return resp
            snap = self.engine.store.snapshot(vid)
            data = read_data(self.engine.store, snap)
        except QuarryError as e:
            return raw_response(e.status, JSON, error_body(e))
        if data.path is None or snap.link is not None or snap.size > HOT_MAX_LINE:
            return None
        body = self._body(snap.sha256, data.path)
        media = data.media_type
        if media.startswith("text/") and "charset" not in media:
            media += "; charset=utf-8"  # as Starlette does
        extra = b'etag: "%s"\r\nx-quarry-version: %s\r\n' % (vid.encode(), vid.encode())
        resp = raw_response(200, media.encode("latin-1"), body, extra)
        if len(self._answers) >= BODY_CACHE:
            self._answers.pop(next(iter(self._answers)))
        self._answers[vid] = resp
        return resp

    def _body(self, sha: str, path: Path) -> bytes:
        # Stored blobs never change, so small ones are kept by content hash.
        body = self._bodies.get(sha)
        if body is None:
            body = path.read_bytes()
            if len(self._bodies) >= BODY_CACHE:
                self._bodies.pop(next(iter(self._bodies)))
            self._bodies[sha] = body
        return body

"""The hot routes: ``GET /lines/<n>`` and the like answered inside the HTTP protocol, with no
ASGI round trip.

Profiling showed the ASGI machinery (scope dict, task, two ``send`` awaits) costing several
times the line lookup itself; answering in the protocol callback gets the route within reach
of nginx serving a static file. The answers themselves are answers.py's, which the ASGI
routes give too; this adds what ObservedApp adds to theirs (request id, metrics, access log)
and uvicorn's Date. Anything unusual (other query strings, escapes, other methods, huge
lines) returns None and takes the ordinary ASGI route.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import orjson

from quarry.access import AccessPolicy
from quarry.datasets.kinds import WriteOptions
from quarry.engine import Engine
from quarry.errors import QuarryError
from quarry.logs import LOGGER
from quarry.server import answers
from quarry.server.accesslog import AccessLog
from quarry.server.answers import Answer
from quarry.server.hot_records import CompatDataset, HotRecords
from quarry.server.metrics import Metrics
from quarry.server.names import has_sub_route
from quarry.server.puts import MAX_MESSAGE, commits_inline, put_small
from quarry.server.responses import JSON, error_body, raw_response
from quarry.server.stamps import IDS, MAX_REQUEST_ID, HttpDate, request_id_of
from quarry.store import CommitResult

log = logging.getLogger(LOGGER + ".http")

HOT_MAX_LINE = 256 << 10
HOT_PUT_MAX = 64 << 10  # bodies the hot path takes whole; bigger ones stream through ASGI
PUT_ROUTE = "/datasets/{name:dataset}"  # the ASGI route's label
BODY_CACHE = 256  # small version bodies kept in memory
_LINES = b"/lines/"
_DATASETS = b"/datasets/"
_DATA = b"/data"


def _internal_error(e: Exception, url: bytes, stamp: bytes) -> bytes:
    """A 500 with a JSON body, as the ASGI app answers an unexpected error; logged."""
    log.error("PUT %s failed: %r", url.decode("ascii"), e, exc_info=e)
    return raw_response(500, JSON, error_body(QuarryError(f"internal error: {type(e).__name__}")),
                        stamp)


class HotRoutes:
    def __init__(self, engine: Engine, default_dataset: str | None, index_base: int,
                 policy: AccessPolicy, metrics: Metrics | None = None,
                 hot_records: bool = True) -> None:
        self.engine = engine
        self.metrics = metrics
        # The hot path reads no credentials: it declines whatever the policy closes, and
        # the ASGI app, which checks the token, answers that. PUTs it takes are checked here.
        self.policy = policy
        self.default_dataset = default_dataset
        self.index_base = index_base
        self.tally = metrics.hot if metrics is not None else None
        self.access_log = AccessLog()
        self.date = HttpDate()
        self.ids = IDS
        self.default_closed = (default_dataset is not None
                               and policy.closing(default_dataset) is not None)
        self.compat = CompatDataset(engine, default_dataset)
        # Records are answered here only when shards run in this process (the hot path calls
        # the executors directly); other backends go through the dispatcher in the ASGI app.
        self.records = HotRecords(engine, self.compat) if hot_records else None
        self._bodies: dict[str, bytes] = {}

    def respond(self, method: bytes, url: bytes, request_id: bytes | None = None,
                if_none_match: bytes | None = None) -> bytes | None:
        """The whole answer to ``method url``, or None for the ASGI app to answer it.
        ``request_id``: the request's ``x-request-id``; ``if_none_match``: its
        ``If-None-Match`` (every one, joined with commas)."""
        if method != b"GET" or b"%" in url:
            return None
        start = time.perf_counter()
        if (url.startswith(_LINES) and if_none_match is None and b"?" not in url
                and not self.default_closed):
            # The busiest route, in short.
            route, answer = "/lines/{n}", self._line(self.default_dataset, url[7:], None, None)
            if answer is None:
                return None
        else:
            found = self._route(url, if_none_match)
            if found is None:
                return None
            route, answer = found
        rid = request_id[:MAX_REQUEST_ID] if request_id else self.ids.new()
        resp = answer.raw(self.date.line(), rid)
        seconds = time.perf_counter() - start
        if self.tally is not None:
            self.tally.add(route, answer.status, seconds)
        self.access_log.add("GET", url, answer.status, seconds, route, rid)
        return resp

    def _route(self, url: bytes, if_none_match: bytes | None) -> tuple[str, Answer] | None:
        inm = None if if_none_match is None else if_none_match.decode("latin-1")
        if url.startswith(_LINES):  # the busiest route first
            if self.default_closed:
                return None
            path, _, query = url.partition(b"?")
            version = _version_query(query)
            if version is False:
                return None
            answer = self._line(self.default_dataset, path[7:], version, inm)
            return None if answer is None else ("/lines/{n}", answer)
        path, _, query = url.partition(b"?")
        if b"/find/" in path:  # "find" is a reserved segment: never part of a dataset name
            if query or self.policy.closed or self.records is None:
                return None  # the ASGI route checks closed datasets' tokens, or shards run
            return self.records.respond(url)
        if not url.startswith(_DATASETS):
            return None
        version = _version_query(query)
        if version is False:
            return None
        # The line route first, as the ASGI app matches it (/datasets/a/lines/data is line
        # "data" of a, not the data of "a/lines").
        rest = path[len(_DATASETS):]
        cut = rest.rfind(_LINES)
        if cut > 0 and b"/" not in rest[cut + 7 :]:
            name = rest[:cut].decode("ascii", "replace")
            if self.policy.closing(name) is not None:
                return None
            answer = self._line(name, rest[cut + 7 :], version, inm)
            return None if answer is None else ("/datasets/{name:path}/lines/{n}", answer)
        if path.endswith(_DATA):
            answer = self._data(path[len(_DATASETS):-len(_DATA)], version, inm)
            return None if answer is None else ("/datasets/{name:path}/data", answer)
        return None

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
        auth = None  # the first Authorization header, as the ASGI side reads it
        for key, value in headers:
            if key == b"content-length":
                if not value.isdigit():
                    return False
                size = int(value)
            elif key in (b"transfer-encoding", b"if-match", b"expect"):
                return False
            elif key == b"authorization" and auth is None:
                auth = value
        if size is None or size > HOT_PUT_MAX or not commits_inline(self.engine.store, size):
            return False
        return self.policy.check("PUT", url.decode("ascii"), auth) is None

    def put(self, url: bytes, headers: list[tuple[bytes, bytes]],
            body: bytes) -> tuple[bytes, Callable[[], None]]:
        """The answer to a PUT that ``takes_put`` accepted (always a response, given once
        its commit is on disk), and its bookkeeping (log line, metrics), to call once the
        answer is on its way."""
        start = time.perf_counter()
        name = url[len(_DATASETS):].decode("ascii")
        h: dict[bytes, bytes] = {}
        for k, v in headers:
            h.setdefault(k, v)  # the first of each, as Starlette's headers.get reads it
        ctype = h.get(b"content-type")
        opts = WriteOptions(
            message=h.get(b"x-quarry-message", b"").decode("latin-1")[:MAX_MESSAGE],
            size_hint=len(body), content_type=ctype.decode("latin-1") if ctype else None,
            params={"index": "auto"})
        rid = request_id_of(h.get(b"x-request-id"))
        stamp = b"%sx-request-id: %s\r\n" % (self.date.line(), rid)
        durable: Callable[[], None] | None = None
        try:
            status, doc, extra, durable = put_small(self.engine.store, name, body, opts,
                                                    self._ingested)
            lines = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode("latin-1"))
                             for k, v in extra.items())
            resp = raw_response(status, JSON, orjson.dumps(doc), lines + stamp)
        except QuarryError as e:
            status, resp = e.status, raw_response(e.status, JSON, error_body(e), stamp)
        except Exception as e:  # answered as the ASGI app would: a 500 with a JSON body
            status, resp = 500, _internal_error(e, url, stamp)
        # The answer was made while the disk synced the commit; it goes once that is done.
        try:
            if durable is not None:
                durable()
        except Exception as e:
            status, resp = 500, _internal_error(e, url, stamp)

        def done() -> None:
            seconds = time.perf_counter() - start
            if self.metrics is not None:
                self.metrics.request(PUT_ROUTE, "PUT", status, seconds)
            self.access_log.add("PUT", url, status, seconds, PUT_ROUTE, rid)

        return resp, done

    def _ingested(self, res: CommitResult) -> None:
        if self.metrics is not None:
            self.metrics.ingested.labels(res.snapshot.dataset).inc(res.snapshot.size)

    def _line(self, name: str | None, raw: bytes, version: str | None,
              if_none_match: str | None) -> Answer | None:
        if not raw or b"/" in raw:
            # An empty number or one with more segments (/lines/1/x) is no route at all: the
            # ASGI app answers it (404, or its trailing-slash redirect), not a 400 here.
            return None
        try:
            answer = answers.line(self.engine, name, raw.decode("ascii", "replace"), version,
                                  self.index_base, if_none_match)
        except QuarryError as e:
            return Answer(e.status, JSON, error_body(e))
        if len(answer.body) > HOT_MAX_LINE:
            return None  # streamed by the ASGI route instead of copied whole
        return answer

    def _data(self, raw_name: bytes, version: str | None,
              if_none_match: str | None) -> Answer | None:
        """``/datasets/<name>/data[?version=<v>]``: a small version's whole data (the
        snapshot service's GET), the answer routes/versions.py gives."""
        name = raw_name.decode("ascii", "replace")
        if self.policy.closing(name) is not None:
            return None  # the ASGI route checks closed datasets' tokens
        try:
            found = answers.data_version(self.engine, name, version, if_none_match)
        except QuarryError as e:
            return Answer(e.status, JSON, error_body(e))
        if found.not_modified is not None:
            return found.not_modified
        snap, data = found.snap, found.data
        if data.path is None or snap.link is not None or snap.size > HOT_MAX_LINE:
            return None
        return found.answer(self._body(snap.sha256, data.path))

    def _body(self, sha: str, path: Path) -> bytes:
        # Stored blobs never change, so small ones are kept by content hash.
        body = self._bodies.get(sha)
        if body is None:
            body = path.read_bytes()
            if len(self._bodies) >= BODY_CACHE:
                self._bodies.pop(next(iter(self._bodies)))
            self._bodies[sha] = body
        return body


def _version_query(query: bytes) -> str | Literal[False] | None:
    """The version a query string names (``version=<v>``); None without one; False for any
    other query string, which the ASGI route answers."""
    if not query:
        return None
    key, eq, value = query.partition(b"=")
    if key != b"version" or not eq or b"&" in value or b"+" in value or not value.isascii():
        return False
    return value.decode("ascii") or None

"""The hot route: ``GET /lines/<n>`` answered inside the HTTP protocol, with no ASGI round trip.

Profiling showed the ASGI machinery (scope dict, task, two ``send`` awaits) costing several
times the line lookup itself; answering in the protocol callback gets the route within reach
of nginx serving a static file. Anything unusual (query string, escapes, other methods, huge
lines) returns None and takes the ordinary ASGI route, which gives the same answers.
"""

from __future__ import annotations

import time

from quarry.datasets.lines import parse_line_number
from quarry.engine import Engine
from quarry.errors import NotFound, QuarryError
from quarry.server.hot_records import CompatDataset, HotRecords
from quarry.server.metrics import Metrics
from quarry.server.responses import JSON, TEXT, error_body, raw_response

HOT_MAX_LINE = 256 << 10
_LINES = b"/lines/"
_DATASETS = b"/datasets/"


class HotRoutes:
    def __init__(self, engine: Engine, default_dataset: str | None, index_base: int,
                 metrics: Metrics | None = None, closed: tuple[str, ...] = (),
                 hot_records: bool = True) -> None:
        self.engine = engine
        self.default_dataset = default_dataset
        self.index_base = index_base
        self.tally = metrics.hot if metrics is not None else None
        # Closed datasets need a token check, which the ASGI route does.
        self.closed = frozenset(closed)
        self.compat = CompatDataset(engine, default_dataset)
        # Records are answered here only when shards run in this process (the hot path calls
        # the executors directly); other backends go through the dispatcher in the ASGI app,
        # and so do servers with closed datasets.
        self.records = HotRecords(engine, self.compat) if hot_records and not closed else None

    def respond(self, method: bytes, url: bytes) -> bytes | None:
        if method != b"GET" or b"?" in url or b"%" in url:
            return None
        start = time.perf_counter()
        if b"/find/" in url:  # "find" is a reserved segment: never part of a dataset name
            if self.records is None:
                return None
            resp = self.records.respond(url)
            if resp is not None and self.tally is not None:
                self.tally.add("/find/...", int(resp[9:12]), time.perf_counter() - start)
            return resp
        if url.startswith(_LINES):
            raw = url[7:]
            name = self.default_dataset
            route = "/lines/{n}"
        elif url.startswith(_DATASETS):
            rest = url[10:]
            cut = rest.rfind(_LINES)
            if cut <= 0:
                return None
            name = rest[:cut].decode("ascii", "replace")
            raw = rest[cut + 7 :]
            route = "/datasets/{name:path}/lines/{n}"
        else:
            return None
        if name in self.closed:
            return None
        resp = self._answer(name, raw)
        if resp is not None and self.tally is not None:
            self.tally.add(route, int(resp[9:12]), time.perf_counter() - start)
        return resp

    def _answer(self, name: str | None, raw: bytes) -> bytes | None:
        try:
            if name is None:
                raise NotFound("no default dataset: serve a file, or name one with --default, "
                               "or use /datasets/<name>/lines/<n>")
            i = parse_line_number(raw.decode("ascii", "replace"), self.index_base)
            line = self.engine.lines(name).line(i)
        except QuarryError as e:
            return raw_response(e.status, JSON, error_body(e))
        if len(line) > HOT_MAX_LINE:
            return None  # streamed by the ASGI route instead of copied whole
        return raw_response(200, TEXT, line)

"""The hot route: ``GET /lines/<n>`` answered inside the HTTP protocol, with no ASGI round trip.

Profiling showed the ASGI machinery (scope dict, task, two ``send`` awaits) costing several
times the line lookup itself; answering in the protocol callback gets the route within reach
of nginx serving a static file. Anything unusual (query string, escapes, other methods, huge
lines) returns None and takes the ordinary ASGI route, which gives the same answers.
"""

from __future__ import annotations

from quarry.datasets.lines import parse_line_number
from quarry.engine import Engine
from quarry.errors import NotFound, QuarryError
from quarry.server.hot_records import CompatDataset, HotRecords
from quarry.server.responses import JSON, TEXT, error_body, raw_response

HOT_MAX_LINE = 256 << 10
_LINES = b"/lines/"
_DATASETS = b"/datasets/"


class HotRoutes:
    def __init__(self, engine: Engine, default_dataset: str | None, index_base: int) -> None:
        self.engine = engine
        self.default_dataset = default_dataset
        self.index_base = index_base
        self.compat = CompatDataset(engine, default_dataset)
        self.records = HotRecords(engine, self.compat)

    def respond(self, method: bytes, url: bytes) -> bytes | None:
        if method != b"GET" or b"?" in url or b"%" in url:
            return None
        if b"/find/" in url:  # "find" is a reserved segment: never part of a dataset name
            return self.records.respond(url)
        if url.startswith(_LINES):
            raw = url[7:]
            name = self.default_dataset
        elif url.startswith(_DATASETS):
            rest = url[10:]
            cut = rest.rfind(_LINES)
            if cut <= 0:
                return None
            name = rest[:cut].decode("ascii", "replace")
            raw = rest[cut + 7 :]
        else:
            return None
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

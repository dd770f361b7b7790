"""Hot routes for records: the original ``/find/[ips]/<start>/<end>/`` and membership by GET,
answered inside the HTTP protocol like ``/lines/<n>`` (see hotpath.py).

The ASGI round trip costs more than a membership lookup itself; the hot path gives the same
bodies as the ASGI routes, and returns None (the ASGI route answers) for anything unusual:
percent-escapes, query strings, answers too large to build in the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import orjson

from quarry.datasets.records import KIND, RecordsView
from quarry.engine import Engine
from quarry.errors import NotFound, QuarryError
from quarry.query import iplog
from quarry.query.model import (
    FindQuery,
    MembershipQuery,
    ip_bytes,
    ip_list,
    parse_compat_ips,
    window,
)
from quarry.server.answers import Answer
from quarry.server.responses import JSON, error_body

_FIND = b"/find/"
_DATASETS = b"/datasets/"
_MEMBER = b"member/"
# Larger answers go to the ASGI route, which runs in a worker thread.
HOT_MAX_RECORDS = 10_000
Membership = Callable[[RecordsView, MembershipQuery], np.ndarray]


class CompatDataset:
    """Which dataset ``/find/...`` serves: the default one, or the only records dataset;
    looked up again at most every ``refresh`` seconds (a scan of the refs)."""

    def __init__(self, engine: Engine, default: str | None, refresh: float = 2.0) -> None:
        self.engine = engine
        self.default = default
        self.refresh = refresh
        self._at = -1e9
        self._names: list[str] = []

    def name(self) -> str:
        if self.default is not None:
            return self.default
        now = time.monotonic()
        if now - self._at > self.refresh:
            # A dataset with a damaged HEAD or manifest is left out, not an error for all.
            self._names = [n for n, snap in self.engine.store.heads()[0].items()
                           if snap.kind == KIND]
            self._at = now
        if len(self._names) != 1:
            raise NotFound("/find/... needs one records dataset: serve with --default NAME, or "
                           "use /datasets/<name>/find/[ip1,ip2]/<start>/<end>/"
                           # (no count: it would count closed datasets too)
                           + ("" if self._names else " (there are none)"))
        return self._names[0]


def _split(rest: bytes) -> tuple[bytes, bytes, bytes] | None:
    """``[ips]/<start>/<end>/`` (trailing slash optional) into its three parts."""
    parts = rest.rstrip(b"/").rsplit(b"/", 2)
    if len(parts) != 3 or not parts[0].startswith(b"["):
        return None
    return parts[0], parts[1], parts[2]


class HotRecords:
    def __init__(self, engine: Engine, compat: CompatDataset) -> None:
        self.engine = engine
        self.compat = compat

    def respond(self, url: bytes) -> tuple[str, Answer] | None:
        """The answer and the label of the ASGI route that would give it, or None."""
        slash = "/" if url.endswith(b"/") else ""
        if url.startswith(_FIND):
            route = "/find/{ips}/{start}/{end}" + slash
        elif not url.startswith(_DATASETS):
            return None
        elif url[url.find(_FIND) + len(_FIND):].startswith(_MEMBER):
            route = "/datasets/{name:path}/find/member/{ips}/{start}/{end}" + slash
        else:
            route = "/datasets/{name:path}/find/{ips}/{start}/{end}" + slash
        try:
            answer = self._answer(url)
        except QuarryError as e:
            answer = Answer(e.status, JSON, error_body(e))
        return None if answer is None else (route, answer)

    def _answer(self, url: bytes) -> Answer | None:
        if url.startswith(_FIND):
            parts = _split(url[len(_FIND):])
            return None if parts is None else self._find(self.compat.name(), *parts)
        cut = url.find(_FIND)
        if cut <= len(_DATASETS):
            return None
        name = url[len(_DATASETS):cut].decode("ascii", "replace")
        rest = url[cut + len(_FIND):]
        if rest.startswith(_MEMBER):
            parts = _split(rest[len(_MEMBER):])
            return None if parts is None else self._member(name, *parts)
        parts = _split(rest)
        return None if parts is None else self._find(name, *parts)

    def _find(self, name: str, ips: bytes, start: bytes, end: bytes) -> Answer | None:
        view = self.engine.records(name)
        q = FindQuery(ip_list(parse_compat_ips(ips.decode("ascii", "replace"))),
                      window(start.decode("ascii", "replace"), end.decode("ascii", "replace")),
                      limit=HOT_MAX_RECORDS)
        page = iplog.find_page(view, q)
        if page.next_cursor is not None:
            return None
        pairs = list(zip(page.hits.ip_list(), page.hits.seconds().tolist(), strict=True))
        return Answer(200, JSON, orjson.dumps(pairs))

    def _member(self, name: str, ips: bytes, start: bytes, end: bytes) -> Answer:
        view = self.engine.records(name)
        raw = parse_compat_ips(ips.decode("ascii", "replace"))
        body = member_body(view, raw, start.decode("ascii", "replace"),
                           end.decode("ascii", "replace"))
        return Answer(200, JSON, orjson.dumps(body))


def member_body(view: RecordsView, raw: list[str], start: object, end: object,
                membership: Membership = iplog.membership) -> dict[str, object]:
    """The membership answer, shared by the hot path and the ASGI routes (which pass the
    dispatcher's ``membership``)."""
    packed = ip_bytes(raw)
    ips = tuple(dict.fromkeys(packed))
    w = window(start, end)  # type: ignore[arg-type]
    found = membership(view, MembershipQuery(ips, w))
    by_ip = dict(zip(ips, found.tolist(), strict=True))
    members = {r: by_ip[p] for r, p in zip(raw, packed, strict=True)}
    return {"version": view.version,
            "window": {"start": None if w.start_us is None else w.start_us / 1e6,
                       "end": None if w.end_us is None else w.end_us / 1e6},
            "members": members}

"""A development mock of the paged stats API (``quarry mock-api``), with fault injection.

Any path answers ``GET ?limit=<n>&offset=<id>`` with a page from a ``PageSource``. Faults are
injected by request number (1-based, counted over all requests): ``500@3`` answers the 3rd
request with a 500, ``timeout@5`` holds the 5th for ``stall`` seconds before answering (past
the client's timeout), ``garbage@7`` answers the 7th with a body that is not a page.
``GET /_mock/stats`` tells how many requests were served, the most in any one second (to check
a client's rate limit from the server's side) and which faults fired.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from quarry.connectors.mockpages import PageSource
from quarry.errors import BadRequest

FAULT = re.compile(r"(500|timeout|garbage)@([1-9][0-9]*)")
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class Fault:
    kind: str
    request: int


def parse_faults(spec: str) -> tuple[Fault, ...]:
    out = []
    for raw in filter(None, (x.strip() for x in spec.split(","))):
        m = FAULT.fullmatch(raw)
        if not m:
            raise BadRequest(f"bad fault {raw!r}: use 500@N, timeout@N or garbage@N "
                             "(N: the request's number, from 1)")
        out.append(Fault(m.group(1), int(m.group(2))))
    return tuple(out)


def _int(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name} must be an integer between {lo} and {hi}, got {raw[:40]!r}")
    return int(raw)


def create_mock_app(source: PageSource, faults: tuple[Fault, ...] = (),
                    stall: float = 30.0) -> Starlette:
    by_number = {f.request: f.kind for f in faults}
    started = time.monotonic()
    state = {"requests": 0, "peak": 0}
    fired: list[str] = []
    window: deque[float] = deque()  # arrival times within the last second

    async def page(request: Request) -> Response:
        state["requests"] += 1
        now = time.monotonic()
        window.append(now)
        while window[0] <= now - 1.0:
            window.popleft()
        state["peak"] = max(state["peak"], len(window))
        n = state["requests"]
        q = request.query_params
        try:
            limit = _int(q.get("limit"), "limit", 100, 1, MAX_LIMIT)
            offset = _int(q.get("offset"), "offset", 0, 0, 1 << 62)
        except BadRequest as e:
            return JSONResponse(e.to_json(), status_code=400)
        fault = by_number.get(n)
        if fault is not None:
            fired.append(f"{fault}@{n}")
            if fault == "500":
                return JSONResponse({"error": "injected fault"}, status_code=500)
            if fault == "garbage":
                return Response(b"<html>not a page</html>", media_type="text/html")
            await asyncio.sleep(stall)
        return Response(source.page(offset, limit), media_type="application/json")

    async def stats(request: Request) -> Response:
        elapsed = time.monotonic() - started
        return JSONResponse({"requests": state["requests"], "faults_fired": fired,
                             "peak_per_second": state["peak"],
                             "items": len(source), "source": source.description,
                             "uptime": elapsed})

    return Starlette(routes=[Route("/_mock/stats", stats),
                             Route("/{path:path}", page)])

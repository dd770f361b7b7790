"""IP/time queries over records datasets: JSON, NDJSON streams, cursor pages, and the
original access-log index's route ``/find/[ip1,ip2]/<start>/<end>/``.

Installed before ``datasets``: its ``/datasets/{name}`` is a catch-all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Path, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from quarry.cluster.dispatcher import Answer, Dispatcher
from quarry.datasets.records import RecordsView
from quarry.engine import Engine
from quarry.errors import BadRequest, PayloadTooLarge, ShardUnavailable
from quarry.formats.ipaddr import format_ips
from quarry.query import iplog
from quarry.query.model import (
    DEFAULT_LIMIT,
    MAX_BUCKET,
    MAX_COUNT,
    MAX_IPS,
    MAX_LIMIT,
    MAX_SECONDS,
    Cursor,
    DistinctQuery,
    FindQuery,
    MembershipQuery,
    VisitsQuery,
    Window,
    check_limit,
    ip_list,
    parse_compat_ips,
    window,
)
from quarry.server.hot_records import CompatDataset, member_body
from quarry.server.openapi import VERSION_SCHEMA
from quarry.server.responses import error_responses, ok_response
from quarry.server.settings import ServeSettings

JSON = "application/json"
NDJSON = "application/x-ndjson"
# The compat route answers in one piece; beyond this many records it refuses (413) and
# points at the paged route instead of building a response that could exhaust memory.
COMPAT_MAX_RECORDS = 1_000_000
MAX_BODY = 4 << 20
NDJSON_PIECE = 65536  # records per streamed piece


# The OpenAPI description of the parameters the find routes read by hand (_params): the
# same fields as query parameters (GET) or a JSON object body (POST).
_IP = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
       "description": "An IPv4 or IPv6 address"}
# Blank entries of a query list (ips=a,b,) are skipped.
_IP_OR_BLANK = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"},
                                            {"pattern": r"^\s*$"}]}
_TIME = {"description": "POSIX seconds, or an ISO 8601 time (UTC unless zoned); the window "
                        "is inclusive, start at most end",
         "anyOf": [{"type": "number", "minimum": -MAX_SECONDS, "maximum": MAX_SECONDS},
                   {"type": "string", "format": "date-time"},
                   {"type": "string", "maxLength": 0, "description": "no bound"}]}
_FIELDS: dict[str, dict[str, Any]] = {
    "ips": {"type": "array", "items": _IP, "maxItems": MAX_IPS,
            "description": "The addresses (query: ip=a&ip=b, or ips=a,b)"},
    "ip": _IP,
    "start": _TIME,
    "end": _TIME,
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    "offset": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
    "bucket": {"type": "integer", "minimum": 0, "maximum": MAX_BUCKET,
               "description": "Count visits in buckets of this many seconds (0: none)"},
    "order": {"type": "string", "enum": ["count", "ip"]},
    "cursor": {"type": "string", "description": "next_cursor of the previous page"},
    "version": VERSION_SCHEMA,
    "format": {"type": "string", "description": "ndjson: stream the records"},
}
# What each field of a JSON body may be (null: as if absent), checked in one place before any
# route reads it; the values are checked further where they are parsed (_int, window...).
_TIME_TYPES = ((str, int, float), "POSIX seconds or an ISO 8601 time")
_INT_TYPES = ((int, float, str), "an integer")
_BODY_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "ips": ((list, str), "a list of IP addresses"), "ip": ((str,), "an IP address as text"),
    "start": _TIME_TYPES, "end": _TIME_TYPES, "limit": _INT_TYPES, "offset": _INT_TYPES,
    "bucket": _INT_TYPES, "order": ((str,), "count or ip"), "cursor": ((str,), "text"),
    "version": ((str,), "text"), "format": ((str,), "text"),
    "stream": ((bool, str), "true or false"),
}


def _json_name(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "text",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


_NDJSON_OK = ok_response("The records (NDJSON when streamed)", JSON, NDJSON)


def _described(fields: tuple[str, ...], required: str | None) -> dict[str, Any]:
    """``openapi_extra`` of a GET (query parameters) and a POST (JSON body) of these fields;
    ``required``: the field without which the route answers 400."""
    params = []
    for f in fields:
        name, schema = f, _FIELDS[f]
        if f == "ips":  # repeated: ip=a&ip=b
            name, schema = "ip", {**schema, "items": _IP_OR_BLANK}
        params.append({"name": name, "in": "query", "required": f == required,
                       "schema": schema, "style": "form", "explode": True})
    body = {"type": "object", "properties": {f: _FIELDS[f] for f in fields},
            **({"required": [required]} if required else {})}
    return {"get": {"parameters": params},
            "post": {"requestBody": {"required": required is not None,
                                     "content": {JSON: {"schema": body}}}}}


_MEMBER = _described(("ips", "start", "end", "version"), "ips")
_FIND_VISITS = _described(("ip", "start", "end", "limit", "bucket", "version"), "ip")
_FIND_IPS = _described(("start", "end", "limit", "offset", "order", "version"), None)
_FIND = _described(("ips", "start", "end", "limit", "cursor", "version", "format"), "ips")


def _json(body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON,
                    headers=headers)


async def _params(request: Request) -> dict[str, Any]:
    """Query parameters, overlaid with a JSON object body for POST."""
    params: dict[str, Any] = {}
    for k, v in request.query_params.multi_items():
        if k in ("ip", "ips"):
            params.setdefault("ips", []).extend(x for x in v.split(",") if x.strip())
        else:
            params[k] = v
    if request.method == "POST":
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise PayloadTooLarge(f"request body over {MAX_BODY} bytes")
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise BadRequest(f"request body is not valid JSON: {e}") from None
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            for key, value in body.items():
                want = _BODY_TYPES.get(key)
                if want is not None and value is not None and (
                        not isinstance(value, want[0]) or (isinstance(value, bool) and
                        bool not in want[0])):
                    raise BadRequest(f"{key} must be {want[1]}, got {_json_name(value)}")
            params.update(body)
    return params


def _int(params: dict[str, Any], key: str, default: int) -> int:
    raw = params.get(key, default)
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        return int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{key} must be an integer, got {str(raw)[:40]!r}") from None


def _ips(params: dict[str, Any]) -> list[str]:
    raw = params.get("ips")
    if raw is None:
        raise BadRequest("give the IP addresses: ip=a&ip=b, ips=a,b or a JSON \"ips\" list")
    if isinstance(raw, str):
        raw = [x for x in raw.split(",") if x.strip()]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise BadRequest("ips must be a list of strings")
    return raw


def _window(params: dict[str, Any]) -> Window:
    return window(params.get("start"), params.get("end"))


def _window_json(w: Window) -> dict[str, float | None]:
    return {"start": None if w.start_us is None else w.start_us / 1e6,
            "end": None if w.end_us is None else w.end_us / 1e6}


def _partial(a: Answer[Any], body: dict[str, Any]) -> dict[str, Any]:
    """Flag an answer some shards could not contribute to (the ``partial`` policy)."""
    if a.partial:
        body["partial"] = True
        body["missing"] = list(a.missing)
    return body


def _headers(a: Answer[Any]) -> dict[str, str]:
    h = {"x-quarry-version": a.version}
    if a.partial:
        h["x-quarry-partial"] = "true"
    return h


def _records(hits: iplog.Hits) -> list[dict[str, Any]]:
    return [{"ip": i, "ts": t} for i, t in zip(hits.ip_list(),
                                                 hits.seconds().tolist(), strict=True)]


def _ndjson(batches: Iterator[iplog.Hits], limit: int | None) -> Iterator[bytes]:
    left = limit
    for hits in batches:
        if left is not None:
            hits = hits.slice(left)
            left -= len(hits)
        for start in range(0, len(hits), NDJSON_PIECE):
            part = hits.slice(NDJSON_PIECE, start)
            yield b"".join(orjson.dumps(r) + b"\n" for r in _records(part))
        if left is not None and left <= 0:
            return


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    metrics = api.state.metrics
    dispatcher: Dispatcher = api.state.dispatcher
    # The hot path's: the access check of /find/... asks it which dataset that is, so
    # the route must get the same answer.
    compat_dataset: CompatDataset = api.state.compat

    def membership(view: RecordsView, q: MembershipQuery) -> np.ndarray:
        answer = dispatcher.run(view, q)
        if answer.partial:
            # The compat shape has no room for a flag: a partial answer would be a silent lie.
            raise ShardUnavailable("no answer from " + "; ".join(answer.missing))
        found: np.ndarray = answer.result
        return found

    def compat(dataset: str, ips: str, start: str, end: str) -> Response:
        view = engine.records(dataset)
        q = FindQuery(ip_list(parse_compat_ips(ips)), window(start, end),
                      limit=COMPAT_MAX_RECORDS)
        answer = dispatcher.run(view, q)
        page: iplog.FindPage = answer.result
        if page.next_cursor is not None:
            raise PayloadTooLarge(f"more than {COMPAT_MAX_RECORDS} records match; page through "
                                  f"them with /datasets/{dataset}/find?cursor=...")
        pairs = list(zip(page.hits.ip_list(), page.hits.seconds().tolist(),
                         strict=True))
        return _json(pairs, _headers(answer))

    compat_ips = Path(json_schema_extra={
        "pattern": r"^\s*\[.*\]\s*$",
        "description": "[ip1,ip2,...]: IPv4 or IPv6 addresses (quotes and spaces tolerated)"})
    # (One Path per parameter: FastAPI takes a shared one for a single parameter.)
    time_doc = "POSIX seconds, or an ISO 8601 time (UTC unless zoned)"
    compat_start, compat_end = Path(description=time_doc), Path(description=time_doc)

    # Each compat route also without its trailing slash: the catch-all /datasets/{name}
    # would otherwise take it before any slash redirect.
    @api.get("/find/{ips}/{start}/{end}", include_in_schema=False)
    @api.get("/find/{ips}/{start}/{end}/", tags=["records"],
             summary="The original access-log index route: [[ip, ts], ...] sorted by time",
             responses=error_responses({
                 401: "The dataset is closed (`--closed`) and no valid token was sent",
                 404: "No default dataset and not exactly one records dataset",
                 413: f"More than {COMPAT_MAX_RECORDS} records match"}))
    async def find_compat(ips: str = compat_ips, start: str = compat_start,
                          end: str = compat_end) -> Response:
        return await run_in_threadpool(compat, compat_dataset.name(), ips, start, end)

    @api.get("/datasets/{name:path}/find/member/{ips}/{start}/{end}", include_in_schema=False)
    @api.get("/datasets/{name:path}/find/member/{ips}/{start}/{end}/", tags=["records"],
             summary="Membership in the original route's shape: {ip: true/false}")
    async def member_compat(name: str, ips: str = compat_ips, start: str = compat_start,
                            end: str = compat_end) -> Response:
        return _json(await run_in_threadpool(
            member_body, engine.records(name), parse_compat_ips(ips), start, end, membership))

    @api.get("/datasets/{name:path}/find/{ips}/{start}/{end}", include_in_schema=False)
    @api.get("/datasets/{name:path}/find/{ips}/{start}/{end}/", tags=["records"],
             summary="The original route on a named dataset",
             responses=error_responses({413: f"More than {COMPAT_MAX_RECORDS} records match"}))
    async def find_compat_named(name: str, ips: str = compat_ips, start: str = compat_start,
                                end: str = compat_end) -> Response:
        return await run_in_threadpool(compat, name, ips, start, end)

    # One operation id per method, so the OpenAPI description stays valid.
    @api.get("/datasets/{name:path}/find/member", tags=["records"],
             summary="For each IP: did it visit within the window?",
             operation_id="member_get", openapi_extra=_MEMBER["get"])
    @api.post("/datasets/{name:path}/find/member", tags=["records"],
             summary="For each IP: did it visit within the window?",
             operation_id="member_post", openapi_extra=_MEMBER["post"])
    async def member(name: str, request: Request) -> Response:
        p = await _params(request)
        raw = _ips(p)
        view = engine.records(name, p.get("version"))
        metrics.query(name, "member", "ip-index")
        answers: list[Answer[Any]] = []

        def run(v: RecordsView, q: MembershipQuery) -> np.ndarray:
            answers.append(dispatcher.run(v, q))
            found: np.ndarray = answers[-1].result
            return found

        # Answered under the addresses as the client wrote them (duplicates collapse).
        body = await run_in_threadpool(member_body, view, raw, p.get("start"), p.get("end"), run)
        return _json(_partial(answers[0], body), _headers(answers[0]))

    def visits(name: str, p: dict[str, Any]) -> Response:
        raw = p.get("ip")
        if raw is None and isinstance(p.get("ips"), list) and len(p["ips"]) == 1:
            raw = p["ips"][0]
        if not isinstance(raw, str):
            raise BadRequest("give one IP address: ip=a")
        view = engine.records(name, p.get("version"))
        metrics.query(name, "visits", "ip-index")
        bucket = _int(p, "bucket", 0) or None
        if bucket is not None and not 1 <= bucket <= MAX_BUCKET:
            raise BadRequest(f"bucket must be a number of seconds from 1 to {MAX_BUCKET} "
                             f"(0: no buckets), got {bucket}")
        w = _window(p)
        q = VisitsQuery(ip_list([raw])[0], w, check_limit(_int(p, "limit", DEFAULT_LIMIT)),
                        bucket)
        answer = dispatcher.run(view, q)
        v: iplog.Visits = answer.result
        body: dict[str, Any] = {
            "version": view.version, "ip": raw, "window": _window_json(w), "count": v.count,
            "first": None if v.first_us is None else v.first_us / 1e6,
            "last": None if v.last_us is None else v.last_us / 1e6,
            "times": (v.times_us / 1e6).tolist(), "truncated": v.count > len(v.times_us),
        }
        if v.buckets is not None:
            body["buckets"] = [[int(s), int(c)] for s, c in zip(*v.buckets, strict=True)]
        return _json(_partial(answer, body), _headers(answer))

    # One operation id per method, so the OpenAPI description stays valid.
    @api.get("/datasets/{name:path}/find/visits", tags=["records"],
             summary="All visit times of one IP, with counts",
             operation_id="find_visits_get", openapi_extra=_FIND_VISITS["get"])
    @api.post("/datasets/{name:path}/find/visits", tags=["records"],
             summary="All visit times of one IP, with counts",
             operation_id="find_visits_post", openapi_extra=_FIND_VISITS["post"])
    async def find_visits(name: str, request: Request) -> Response:
        p = await _params(request)
        if "ips" in p and "ip" not in p:
            p["ip"] = p["ips"][0] if isinstance(p["ips"], list) and p["ips"] else None
        return await run_in_threadpool(visits, name, p)

    def distinct(name: str, p: dict[str, Any]) -> Response:
        view = engine.records(name, p.get("version"))
        metrics.query(name, "distinct_ips", "ip-index")
        order = p.get("order", "count")
        if order not in ("count", "ip"):
            raise BadRequest("order must be count or ip")
        offset = _int(p, "offset", 0)
        if not 0 <= offset <= MAX_COUNT:
            raise BadRequest(f"offset must be from 0 to {MAX_COUNT}, got {offset}")
        w = _window(p)
        limit = check_limit(_int(p, "limit", DEFAULT_LIMIT))
        answer = dispatcher.run(view, DistinctQuery(w, limit, offset, order))
        d: iplog.Distinct = answer.result
        nxt = offset + len(d.counts)
        return _json(_partial(answer, {
            "version": view.version, "window": _window_json(w),
            "distinct": d.distinct, "records": d.rows,
            "ips": [[i, c] for i, c in zip(format_ips(d.ips).to_pylist(),
                                           d.counts.tolist(), strict=True)],
            "next_offset": nxt if nxt < d.distinct else None}), _headers(answer))

    # One operation id per method, so the OpenAPI description stays valid.
    @api.get("/datasets/{name:path}/find/ips", tags=["records"],
             summary="Distinct IPs within a window with their record counts",
             operation_id="find_ips_get", openapi_extra=_FIND_IPS["get"])
    @api.post("/datasets/{name:path}/find/ips", tags=["records"],
             summary="Distinct IPs within a window with their record counts",
             operation_id="find_ips_post", openapi_extra=_FIND_IPS["post"])
    async def find_ips(name: str, request: Request) -> Response:
        return await run_in_threadpool(distinct, name, await _params(request))

    def records_page(name: str, p: dict[str, Any], stream: bool) -> Response:
        cursor = Cursor.decode(p["cursor"]) if p.get("cursor") else None
        version = p.get("version") or (cursor.version if cursor else None)
        view = engine.records(name, version)
        metrics.query(name, "find", "ip-index")
        limit = _int(p, "limit", DEFAULT_LIMIT)
        q = FindQuery(ip_list(_ips(p)), _window(p), 1, cursor)
        headers = {"x-quarry-version": view.version}
        if stream:
            if "limit" in p:
                check_limit(limit)
            # Streamed page by page through the dispatcher; a stream cannot be flagged as
            # partial, so a missing shard ends it early rather than leaving a silent gap.
            return StreamingResponse(
                _ndjson(dispatcher.iter_find(view, q, NDJSON_PIECE),
                        limit if "limit" in p else None),
                media_type=NDJSON, headers=headers)
        q = FindQuery(q.ips, q.window, check_limit(limit), cursor)
        answer = dispatcher.run(view, q)
        page: iplog.FindPage = answer.result
        return _json(_partial(answer, {
            "version": view.version, "window": _window_json(q.window),
            "count": len(page.hits), "records": _records(page.hits),
            "next_cursor": page.next_cursor}), _headers(answer))

    # One operation id per method, so the OpenAPI description stays valid.
    @api.get("/datasets/{name:path}/find", tags=["records"],
             summary="Records of a set of IPs within a window, sorted by time",
             operation_id="find_get", openapi_extra=_FIND["get"], responses=_NDJSON_OK)
    @api.post("/datasets/{name:path}/find", tags=["records"],
             summary="Records of a set of IPs within a window, sorted by time",
             operation_id="find_post", openapi_extra=_FIND["post"], responses=_NDJSON_OK)
    async def find(name: str, request: Request) -> Response:
        p = await _params(request)
        stream = (p.get("format") == "ndjson" or p.get("stream") in (True, "true", "1")
                  or NDJSON in request.headers.get("accept", ""))
        return await run_in_threadpool(records_page, name, p, stream)

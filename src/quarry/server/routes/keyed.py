"""Filtered queries, explain, keys and keyed joins over records datasets.

The server process owns one key builder (started and stopped with the app); ``keys/build``
runs it at once. Installed before ``datasets``: its ``/datasets/{name}`` is a catch-all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from quarry.access import AccessPolicy
from quarry.engine import Engine
from quarry.errors import BadRequest, PayloadTooLarge
from quarry.index.keys import KeySpec
from quarry.keybuilder import KeyBuilder
from quarry.query import service
from quarry.query.executor import to_records
from quarry.query.join import probes_from_rows, read_probes
from quarry.server.middleware import WRITES, caller_of
from quarry.server.responses import ok_response
from quarry.server.settings import ServeSettings

JSON = "application/json"
NDJSON = "application/x-ndjson"
ARROW = "application/vnd.apache.arrow.stream"
MAX_BODY = 64 << 20


def _body_of(schema: dict[str, Any], required: bool = False,
             others: dict[str, Any] | None = None) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a JSON body (and maybe other media types)."""
    return {"requestBody": {"required": required,
                            "content": {JSON: {"schema": schema}, **(others or {})}}}


# Checked by the query service (fields, operators, values); the description says only that
# the body is an object.
_QUERY = _body_of({"type": "object", "description": "where, fields, limit, cursor, explain, "
                                                    "stream, version"})
_KEY = _body_of({"type": "object", "required": ["fields"], "properties": {
    "fields": {"anyOf": [{"type": "array", "items": {"type": "string"}, "minItems": 1},
                         {"type": "string", "minLength": 1}]},
    "build": {"type": "boolean", "description": "build it now (default true)"}}},
    required=True)
_JOIN = _body_of({"type": "object", "required": ["rows"],
                  "properties": {"rows": {"type": "array", "items": {"type": "object"},
                                          "description": "The probe rows"}},
                  "description": "rows, and on, how, where, fields, explain, version"},
                 others={"text/csv": {"schema": {"type": "string"}},
                         ARROW: {"schema": {"type": "string", "format": "binary"}}})
_ROWS_OR_NDJSON = ok_response("The rows (NDJSON when streamed)", JSON, NDJSON)
_ROWS_OR_ARROW = ok_response("The joined rows (an Arrow stream when asked for)", JSON, ARROW)


def _json(body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON,
                    headers=headers)


async def _body(request: Request) -> bytes:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise PayloadTooLarge(f"request body over {MAX_BODY} bytes")
    return raw


def _object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _ndjson(pieces: Iterator[pa.Table]) -> Iterator[bytes]:
    for t in pieces:
        yield b"".join(orjson.dumps(r) + b"\n" for r in to_records(t))


def _arrow(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    return bytes(sink.getvalue())


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    metrics = api.state.metrics
    if settings.key_budget is not None:
        engine.key_budget = settings.key_budget
    builder = KeyBuilder(engine, interval=settings.key_interval or 5.0)
    api.state.key_builder = builder
    if settings.key_interval > 0:
        api.router.on_startup.append(builder.start)
        api.router.on_shutdown.append(builder.stop)

    def run_query(name: str, body: dict[str, Any], stream: bool) -> Response:
        if stream:
            version, pieces = service.stream(engine, name, body)
            return StreamingResponse(_ndjson(pieces), media_type=NDJSON,
                                     headers={"x-quarry-version": version})
        page = service.query(engine, name, body)
        metrics.query(name, "query", page.stats.key or "")
        out: dict[str, Any] = {"version": page.version, "count": page.table.num_rows,
                               "rows": to_records(page.table), "next_cursor": page.next_cursor}
        if body.get("explain"):
            out["explain"] = page.stats.to_json()
        return _json(out, {"x-quarry-version": page.version})

    @api.post("/datasets/{name:path}/query", tags=["keyed"],
              summary="Rows matching a JSON filter: =, IN, ranges, prefix, NOT, substring, "
                      "regex; projection, limit, cursor paging, NDJSON streaming",
              openapi_extra=_QUERY, responses=_ROWS_OR_NDJSON)
    async def query(name: str, request: Request) -> Response:
        body = _object(await _body(request))
        stream = bool(body.pop("stream", False)) or NDJSON in request.headers.get("accept", "")
        return await run_in_threadpool(run_query, name, body, stream)

    @api.post("/datasets/{name:path}/explain", tags=["keyed"],
              summary="The plan of a query: chosen key, score, chunks pruned, rows examined",
              openapi_extra=_QUERY)
    async def explain(name: str, request: Request) -> Response:
        body = _object(await _body(request))
        return _json(await run_in_threadpool(service.explain, engine, name, body))

    def keys_body(name: str) -> dict[str, Any]:
        records = engine.snapshot(name)[1].kind == "records"
        return service.keys_report(engine, name, builder.suggestions(name) if records else [],
                                   builder.accepted.get(name))

    @api.get("/datasets/{name:path}/keys", tags=["keyed"],
             summary="Declared, built and suggested keys with use counts and sizes")
    async def keys(name: str) -> Response:
        return _json(await run_in_threadpool(keys_body, name))

    @api.post("/datasets/{name:path}/keys", tags=["keyed"],
              summary="Accept a key (a suggestion or any fields): kept and built from now on",
              openapi_extra={**_KEY, **WRITES})
    async def accept_key(name: str, request: Request) -> Response:
        body = _object(await _body(request))
        fields = body.get("fields")
        if not (isinstance(fields, list | str) and fields):
            raise BadRequest('give the key\'s fields: {"fields": ["a", "b"]}')
        accepted = await run_in_threadpool(builder.accept, name, KeySpec.parse(fields))
        if body.get("build", True):
            await run_in_threadpool(builder.run_once)
        return _json({"accepted": [list(s.fields) for s in accepted], **keys_body(name)})

    @api.post("/datasets/{name:path}/keys/build", tags=["keyed"], openapi_extra=WRITES,
              summary="Run the key builder now: build, swap in and drop keys")
    async def build_keys(name: str, request: Request) -> Response:
        report = await run_in_threadpool(builder.run_once)
        # The builder runs for every dataset; the caller hears of those it may read.
        policy: AccessPolicy = request.app.state.policy
        caller = caller_of(request)
        report = {k: v for k, v in report.items() if policy.may_read(caller, k)}
        return _json({"report": report, **(await run_in_threadpool(keys_body, name))})

    def run_join(name: str, raw: bytes, content_type: str,
                 params: dict[str, Any], accept: str) -> Response:
        if content_type.split(";")[0].strip() in ("", JSON):
            body = _object(raw)
            probes = probes_from_rows(body.pop("rows", None))
            params = {**params, **body}
        else:
            probes = read_probes(raw, content_type)
        version, table, stats = service.join(engine, name, probes, params)
        headers = {"x-quarry-version": version}
        if ARROW in accept:
            return Response(_arrow(table), media_type=ARROW, headers=headers)
        out: dict[str, Any] = {"version": version, "count": table.num_rows,
                               "rows": to_records(table)}
        if params.get("explain"):
            out["explain"] = stats.to_json()
        return _json(out, headers)

    @api.post("/datasets/{name:path}/join", tags=["keyed"],
              summary="Keyed join / batch lookup of probe rows (JSON, CSV or Arrow): inner, "
                      "left outer or left only, with a residual filter",
              openapi_extra=_JOIN, responses=_ROWS_OR_ARROW)
    async def join(name: str, request: Request) -> Response:
        raw = await _body(request)
        params: dict[str, Any] = dict(request.query_params)
        if "where" in params:
            params["where"] = _object(params["where"].encode())
        return await run_in_threadpool(run_join, name, raw,
                                       request.headers.get("content-type", JSON), params,
                                       request.headers.get("accept", ""))

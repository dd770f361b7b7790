"""Statistics over a records dataset: ``POST /datasets/<name>/stats``.

Installed before ``datasets``: its ``/datasets/{name}`` is a catch-all.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from quarry.cluster.backends import InProcessBackend
from quarry.cluster.dispatcher import Dispatcher
from quarry.engine import Engine
from quarry.errors import BadRequest, PayloadTooLarge
from quarry.server.openapi import VERSION_SCHEMA
from quarry.server.settings import ServeSettings
from quarry.stats.dataset import dataset_stats
from quarry.stats.execute import bound_where
from quarry.stats.request import StatsRequest

MAX_BODY = 1 << 20


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    # Other backends run requests as map/merge over shards (quarry.cluster.stats_op).
    dispatcher: Dispatcher = api.state.dispatcher

    @api.post("/datasets/{name:path}/stats", tags=["stats"], response_class=Response,
              summary="Statistics (count, top_k, group_count, histogram, distinct_count, "
                      "min, max, mean) over the rows of a records dataset matching a where",
              responses={200: {"description": "The statistics",
                               "content": {"application/json": {"schema": {"type": "object"}}}}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {
                      "type": "object", "required": ["aggregates"],
                      "properties": {"aggregates": {"type": "array", "minItems": 1,
                                                    "maxItems": 32},
                                     "where": {"type": "object"},
                                     "filters": {"type": "array"},
                                     "version": VERSION_SCHEMA}}}}}})
    async def stats(name: str, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise PayloadTooLarge(f"a stats request is at most {MAX_BODY} bytes")
        try:
            doc: Any = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"the body must be JSON: {e}") from None
        req = StatsRequest.parse(doc)
        version = doc.get("version") if isinstance(doc, dict) else None
        if version is not None and not isinstance(version, str):
            raise BadRequest("version must be text")
        # Scanning is blocking numpy/Arrow work: keep it off the event loop.
        out, headers = await run_in_threadpool(run, name, req, version)
        api.state.metrics.query(name, "stats", "")
        return Response(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json", headers=headers)

    def run(name: str, req: StatsRequest,
            version: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        if isinstance(dispatcher.backend, InProcessBackend):
            # In this process the scan already runs chunks on threads; no shards needed.
            return dataset_stats(engine, name, req, version), {}
        t0 = time.perf_counter()
        view = engine.records(name, version)
        if view.chunks:
            # A bad tree is the caller's 400 here, not a failure of every shard.
            bound_where(req, view.chunks[0].table.schema)
        answer = dispatcher.run(view, req)
        out = {"dataset": name, "version": view.version, "rows": view.rows, **answer.result,
               "seconds": round(time.perf_counter() - t0, 6)}
        headers = {}
        if answer.partial:
            out.update(partial=True, missing=list(answer.missing))
            headers["x-quarry-partial"] = "true"
        return out, headers

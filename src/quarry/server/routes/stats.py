"""Statistics over a records dataset: ``POST /datasets/<name>/stats``.

Installed before ``datasets``: its ``/datasets/{name}`` is a catch-all.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from quarry.engine import Engine
from quarry.errors import BadRequest, PayloadTooLarge
from quarry.server.settings import ServeSettings
from quarry.stats.dataset import dataset_stats
from quarry.stats.request import StatsRequest

MAX_BODY = 1 << 20


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    @api.post("/datasets/{name:path}/stats", tags=["stats"], response_class=Response,
              summary="Statistics (count, top_k, group_count, histogram, distinct_count, "
                      "min, max, mean) over a records dataset, with filters")
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
        out = await run_in_threadpool(dataset_stats, engine, name, req, version)
        return Response(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json")

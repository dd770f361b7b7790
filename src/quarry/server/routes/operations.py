"""Operations: health check and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

import quarry
from quarry.engine import Engine
from quarry.server.settings import ServeSettings


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    @api.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": quarry.__version__,
                "datasets": len(engine.store.datasets())}

    @api.get("/metrics", tags=["operations"], response_class=Response,
             summary="Prometheus metrics (text exposition format)")
    def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

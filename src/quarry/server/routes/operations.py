"""Operations: health check, Prometheus metrics and the web console."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

import quarry
from quarry.access import AccessPolicy
from quarry.console import CONSOLE_DIR
from quarry.engine import Engine
from quarry.server.middleware import caller_of
from quarry.server.settings import ServeSettings


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    @api.get("/healthz", tags=["operations"])
    def healthz(request: Request) -> dict[str, Any]:
        policy: AccessPolicy = request.app.state.policy
        seen = policy.visible(caller_of(request), engine.store.datasets())
        return {"status": "ok", "version": quarry.__version__, "datasets": len(seen)}

    @api.get("/metrics", tags=["operations"], response_class=Response,
             summary="Prometheus metrics (text exposition format); closed datasets' series "
                     "only with the token",
             responses={200: {"description": "The metrics",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics(request: Request) -> Response:
        policy: AccessPolicy = request.app.state.policy
        caller = caller_of(request)
        body = request.app.state.metrics.exposition(lambda name: policy.may_read(caller, name))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @api.get("/", include_in_schema=False)
    def console_root() -> Response:
        return RedirectResponse("/console/")

    # The console is static files shipped in the package: no build step, nothing fetched from
    # the internet at run time.
    api.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")

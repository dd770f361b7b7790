"""The ASGI application: management API (FastAPI, OpenAPI at /docs) and every line route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

import quarry
from quarry.datasets.lines import parse_line_number
from quarry.engine import Engine
from quarry.errors import BadRequest, NotFound, QuarryError
from quarry.server.hotpath import HotRoutes
from quarry.server.responses import error_body
from quarry.server.settings import ServeSettings

TEXT_TYPE = "text/plain; charset=utf-8"


class QuarryApp:
    """The ASGI callable: the FastAPI app plus the hot routes the protocol answers directly."""

    def __init__(self, api: FastAPI, engine: Engine, hot_routes: HotRoutes) -> None:
        self.app = api
        self.engine = engine
        self.hot_routes = hot_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _error(err: QuarryError) -> Response:
    return Response(error_body(err), status_code=err.status, media_type="application/json")


def _stream_line(line: bytes, piece: int = 1 << 20) -> Iterator[bytes]:
    for i in range(0, len(line), piece):
        yield line[i : i + piece]


def create_app(engine: Engine, settings: ServeSettings) -> QuarryApp:
    api = FastAPI(title="Quarry", version=quarry.__version__,
                  description="Serve big, immutable, versioned datasets fast.")
    base = settings.index_base
    hot = HotRoutes(engine, settings.default_dataset, base)

    @api.exception_handler(QuarryError)
    async def quarry_error(request: Request, exc: QuarryError) -> Response:
        return _error(exc)

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return _error(BadRequest(f"invalid request: {problems}"))

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        names = {404: "not found", 405: "method not allowed"}
        detail = exc.detail if exc.status_code != 404 else f"no route for {request.url.path}"
        return JSONResponse({"error": names.get(exc.status_code, "error"), "detail": detail},
                            status_code=exc.status_code)

    def line_response(dataset: str | None, n: str, version: str | None) -> Response:
        if dataset is None:
            raise NotFound("no default dataset: serve a file, or name one with --default, "
                           "or use /datasets/<name>/lines/<n>")
        i = parse_line_number(n, base)
        line = engine.lines(dataset, version).line(i)
        if len(line) > (1 << 20):
            return StreamingResponse(_stream_line(line), media_type=TEXT_TYPE)
        return Response(line, media_type=TEXT_TYPE)

    @api.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": quarry.__version__,
                "datasets": len(engine.store.datasets())}

    @api.get("/lines/{n}", tags=["lines"], response_class=Response,
             summary="Line n of the default dataset (text/plain, no line ending)")
    def default_line(n: str, version: str | None = None) -> Response:
        return line_response(settings.default_dataset, n, version)

    @api.get("/datasets", tags=["datasets"])
    def list_datasets() -> list[dict[str, Any]]:
        return engine.datasets()

    @api.get("/datasets/{name:path}/lines/{n}", tags=["lines"], response_class=Response,
             summary="Line n of a dataset (text/plain, no line ending)")
    def dataset_line(name: str, n: str, version: str | None = None) -> Response:
        return line_response(name, n, version)

    @api.get("/datasets/{name:path}/lines", tags=["lines"], response_class=Response,
             summary="A range of lines, streamed as newline-terminated text")
    def dataset_lines(
        name: str,
        start: str = Query(..., description=f"first line ({base}-based)"),
        count: int = Query(100, ge=1, le=settings.max_range_count),
        version: str | None = None,
    ) -> Response:
        i = parse_line_number(start, base)
        view = engine.lines(name, version)
        if i >= view.lines:
            view.line(i)  # raises OutOfRange with the line count
        view.check()
        headers = {"x-quarry-version": view.version,
                   "x-quarry-lines": str(min(count, view.lines - i))}
        return StreamingResponse(view.index.iter_text(i, count), media_type=TEXT_TYPE,
                                 headers=headers)

    @api.get("/datasets/{name:path}", tags=["datasets"])
    def describe_dataset(name: str) -> dict[str, Any]:
        return engine.describe(name)

    return QuarryApp(api, engine, hot)


def app_from_env() -> QuarryApp:
    """Factory used by each server worker process."""
    settings = ServeSettings.from_env()
    engine = Engine(settings.data, refresh_interval=settings.refresh_interval)
    return create_app(engine, settings)

"""The ASGI application: management API (FastAPI, OpenAPI at /docs) and every line route."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

import quarry
from quarry import logs
from quarry.access import AccessPolicy
from quarry.cluster.backends import InProcessBackend
from quarry.engine import Engine
from quarry.errors import BadRequest, NotFound, QuarryError
from quarry.server import openapi
from quarry.server.hotpath import HotRoutes
from quarry.server.metrics import Metrics
from quarry.server.middleware import ObservedApp, write_posts
from quarry.server.responses import error_body
from quarry.server.routes import (
    apidocs,
    datasets,
    events,
    keyed,
    lines,
    operations,
    records,
    shards,
    stats,
    versions,
)
from quarry.server.settings import ServeSettings

# Route groups, in the order they are matched; datasets last: its /datasets/{name} catches all.
ROUTES = (operations, apidocs, lines, shards, records, stats, versions, events, keyed, datasets)


class QuarryApp:
    """The ASGI callable: the FastAPI app plus the hot routes the protocol answers directly."""

    def __init__(self, api: FastAPI, engine: Engine, hot_routes: HotRoutes, metrics: Metrics,
                 policy: AccessPolicy, settings: ServeSettings) -> None:
        self.api = api
        self.app = ObservedApp(api, metrics, policy)
        self.engine = engine
        self.hot_routes = hot_routes
        self.metrics = metrics
        self.settings = settings  # the protocol reads its connection timeouts here

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class QuarryAPI(FastAPI):
    """FastAPI, with an OpenAPI description of what this server really answers and takes
    (the rules in openapi.py)."""

    def __init__(self, is_write: Callable[[str, str], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.is_write = is_write

    def openapi(self) -> dict[str, Any]:
        return openapi.describe(super().openapi(), self.is_write)  # FastAPI caches it


def _error(err: QuarryError) -> Response:
    return Response(error_body(err), status_code=err.status, media_type="application/json")


def create_app(engine: Engine, settings: ServeSettings) -> QuarryApp:
    metrics = Metrics(engine)

    def implicit(path: str) -> str | None:
        if path.startswith("/lines/"):
            return settings.default_dataset
        if path.startswith("/find/"):
            try:
                return hot.compat.name()  # the default, or the only records dataset
            except QuarryError:
                return None
        return None

    # Its write POSTs are learnt from the route table once the routes are installed.
    policy = AccessPolicy(settings.token, settings.host, settings.closed, implicit=implicit)
    api = QuarryAPI(policy.is_write, title="Quarry", version=quarry.__version__,
                    description="Serve big, immutable, versioned datasets fast.",
                    # FastAPI's pages load their scripts from a CDN: routes/apidocs.py serves
                    # vendored ones instead.
                    docs_url=None, redoc_url=None)
    # One dispatcher per server process: the records and shards routes share it.
    dispatcher = shards.make_dispatcher(engine, settings)
    hot = HotRoutes(engine, settings.default_dataset, settings.index_base, policy, metrics,
                    hot_records=isinstance(dispatcher.backend, InProcessBackend))
    api.state.metrics = metrics
    api.state.compat = hot.compat  # /find/...'s dataset, for the records routes
    api.state.policy = policy  # for routes that list datasets (closed ones hidden)
    api.state.dispatcher = dispatcher

    @api.exception_handler(QuarryError)
    async def quarry_error(request: Request, exc: QuarryError) -> Response:
        return _error(exc)

    @api.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client went away, or a read timeout cut it off (and answered it 408), before
        # its body was in. Not a server error: no traceback, no 500 in the log and metrics;
        # nobody reads this answer, its status (nginx's "client closed request") is for them.
        return Response(status_code=499)

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
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # HTTP requires the Allow header on a 405
            headers["Allow"] = datasets.allowed(api.routes, request.scope, headers.get("Allow"))
            if not headers["Allow"]:  # only the GET fallback took the path: no route at all
                return _error(NotFound(f"no route for {request.url.path}"))
        return JSONResponse({"error": names.get(exc.status_code, "error"), "detail": detail},
                            status_code=exc.status_code, headers=headers)

    for module in ROUTES:
        module.install(api, engine, settings)
    policy.write_posts = tuple(write_posts(api.routes))

    return QuarryApp(api, engine, hot, metrics, policy, settings)


def app_from_env() -> QuarryApp:
    """Factory used by each server worker process."""
    settings = ServeSettings.from_env()
    logs.configure(settings.log_format, settings.log_level)
    engine = Engine(settings.data, refresh_interval=settings.refresh_interval,
                    key_budget=settings.key_budget)
    _open_line_datasets(engine)
    app = create_app(engine, settings)
    # Everything allocated so far (modules, the app, open datasets) lives as long as the
    # worker: moved out of the collector's sight, a full collection no longer walks it, so
    # its pauses stop showing up in the latency tail.
    gc.collect()
    gc.freeze()
    return app


def _open_line_datasets(engine: Engine, limit: int = 16) -> None:
    """Open (and so pre-fault) the lines datasets before the worker takes requests, so the
    first requests do not wait while a mapping is populated."""
    lines = [n for n, snap in engine.store.heads()[0].items() if snap.kind == "lines"]
    for name in lines[:limit]:
        with contextlib.suppress(QuarryError):
            engine.lines(name)

"""The ASGI application: management API (FastAPI, OpenAPI at /docs) and every line route."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

import quarry
from quarry import logs
from quarry.access import AccessPolicy
from quarry.cluster.backends import InProcessBackend
from quarry.engine import Engine
from quarry.errors import BadRequest, QuarryError
from quarry.server.hotpath import HotRoutes
from quarry.server.metrics import Metrics
from quarry.server.middleware import ObservedApp, write_posts
from quarry.server.responses import ErrorBody, error_body
from quarry.server.routes import (
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
ROUTES = (operations, lines, shards, records, stats, versions, events, keyed, datasets)


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
    """FastAPI, with an OpenAPI description of the statuses this server really sends."""

    def openapi(self) -> dict[str, Any]:
        schema = super().openapi()  # cached by FastAPI; the rewrite below is idempotent
        _validation_as_400(schema)
        return schema


_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


def _validation_as_400(schema: dict[str, Any]) -> None:
    """Replace FastAPI's automatic 422 entries by the 400 that invalid parameters get here
    (``validation_error`` in ``create_app``), with the JSON error body."""
    for item in schema.get("paths", {}).values():
        for op in item.values():
            responses = op.get("responses", {})
            auto = responses.get("422", {}).get("content", {}).get("application/json", {})
            if auto.get("schema", {}).get("$ref") != _VALIDATION_REF:
                continue
            del responses["422"]
            responses.setdefault("400", {
                "description": "Invalid request: a malformed or missing parameter or body",
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            })
            op["responses"] = dict(sorted(responses.items()))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorBody" not in components:
        components["ErrorBody"] = ErrorBody.model_json_schema()
    if _VALIDATION_REF.encode() not in orjson.dumps(schema):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)


def _allowed(routes: Iterable[BaseRoute], scope: Scope, given: str | None) -> str:
    """A 405's ``Allow``: every method some route takes at this path. Starlette names only
    the first route that matched the path (GET and POST of one path are separate routes
    here), and the GET routes take HEAD too (see ObservedApp)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    methods = {m.strip() for m in (given or "").split(",") if m.strip()}
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _error(err: QuarryError) -> Response:
    return Response(error_body(err), status_code=err.status, media_type="application/json")


def create_app(engine: Engine, settings: ServeSettings) -> QuarryApp:
    api = QuarryAPI(title="Quarry", version=quarry.__version__,
                    description="Serve big, immutable, versioned datasets fast.")
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
            headers["Allow"] = _allowed(api.routes, request.scope, headers.get("Allow"))
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

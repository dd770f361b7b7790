"""Pure ASGI middleware: request ids, metrics, access logs, HEAD requests and write/read
access control."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quarry.access import AccessPolicy, Caller
from quarry.logs import LOGGER, fields, request_id
from quarry.server.metrics import Metrics
from quarry.server.stamps import request_id_of

log = logging.getLogger(LOGGER + ".http")
# Marks a POST route that changes data or server state (most POSTs are queries, which are
# reads): its OpenAPI operation says so, and the access policy learns its path from the
# route table, so the rule cannot drift from the routes (see write_posts).
WRITES: dict[str, object] = {"x-quarry-writes": True}


def write_posts(routes: Iterable[BaseRoute]) -> list[re.Pattern[str]]:
    """The path patterns of the POST routes marked with ``WRITES``."""
    return [r.path_regex for r in routes
            if isinstance(r, APIRoute) and "POST" in (r.methods or ())
            and (r.openapi_extra or {}).get("x-quarry-writes")]


def caller_of(request: Request) -> Caller:
    """Who sent ``request``, as the app's access policy sees it."""
    policy: AccessPolicy = request.app.state.policy
    return policy.caller(request.headers.get("authorization"))


def _first(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of the first header called ``name`` (lower case, as ASGI gives names)."""
    return next((v for k, v in headers if k == name), None)


class HeadAnswered(BaseException):
    """Raised into a route once a HEAD's headers are sent. A BaseException, so no error
    handler or 500 page in between takes it for a failure of the route."""


def _only_head_answered(e: BaseException) -> bool:
    # Streamed routes run in a task group, which wraps what a task raised in a group.
    if isinstance(e, BaseExceptionGroup):
        return all(_only_head_answered(x) for x in e.exceptions)
    return isinstance(e, HeadAnswered)


class ObservedApp:
    """Wraps the API: assigns a request id, enforces the access policy, records metrics,
    and answers HEAD as GET without the body."""

    def __init__(self, app: ASGIApp, metrics: Metrics, policy: AccessPolicy) -> None:
        self.app = app
        self.metrics = metrics
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        # The first x-request-id, as the hot path reads it.
        rid = request_id_of(_first(headers, b"x-request-id")).decode("latin-1")
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 500
        method = scope["method"]
        head = method == "HEAD"
        if head:
            # FastAPI routes register GET only: a HEAD is routed and answered as that GET,
            # whose body is dropped in send_wrapped (its headers, content-length included,
            # are kept). A copy, so the server still sees the HEAD it received.
            scope = {**scope, "method": "GET"}

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", rid.encode("latin-1"))]
                await send(message)
                if head:
                    # A HEAD is answered once its headers are out: the route is stopped
                    # before it makes a body (a whole file's read, an endless event stream).
                    await send({"type": "http.response.body", "body": b""})
                    raise HeadAnswered
                return
            if not head:
                await send(message)

        try:
            # The first Authorization header, as the routes (Starlette's headers.get) read it:
            # a credential is read one way only.
            denied = self.policy.check(method, scope["path"],
                                       _first(headers, b"authorization"))
            if denied is not None:
                body = orjson.dumps({"error": "unauthorized", "detail": denied[1]})
                await send_wrapped({"type": "http.response.start", "status": denied[0],
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode()),
                                                (b"www-authenticate", b"Bearer")]})
                await send_wrapped({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send_wrapped)
        except BaseException as e:
            if not _only_head_answered(e):
                raise
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", None)
            if path is None:
                # A mounted app (the console's static files) sets no route, only the mount
                # point in root_path; a label per file would make one series per URL.
                mount = scope.get("root_path", "")
                path = f"{mount}/{{path:path}}" if mount else "unmatched"
            self.metrics.request(path, method, status, seconds)
            log.info("%s %s %d %.1fms", method, scope["path"], status, seconds * 1000,
                     extra=fields(route=path, status=status))
            request_id.reset(token)

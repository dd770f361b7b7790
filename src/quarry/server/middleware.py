"""Pure ASGI middleware: request ids, metrics, access logs, HEAD requests and write/read
access control."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quarry.logs import LOGGER, fields, request_id
from quarry.server.metrics import Metrics

log = logging.getLogger(LOGGER + ".http")
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})


def bearer_matches(header: str, token: str | None) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` (constant-time compare)."""
    return (token is not None and header.startswith("Bearer ")
            and hmac.compare_digest(header[7:].strip(), token))


def closing_name(name: str, closed: frozenset[str]) -> str | None:
    """The closed name that closes ``name`` (a dataset, or a dataset path with a route after
    it): itself, or a name it is under (a path /datasets/a/b/... cannot tell dataset "a/b"
    from "a" and a sub-route, so "a" closes both); None when nothing closes it."""
    if name in closed:
        return name
    for c in closed:
        if name.startswith(c + "/"):
            return c
    return None


def under_closed(name: str, closed: frozenset[str]) -> bool:
    return closing_name(name, closed) is not None


def hidden_datasets(request: Request) -> frozenset[str]:
    """Closed datasets this request may not see, for routes that list datasets or events."""
    policy: AccessPolicy = request.app.state.policy
    return policy.hidden(request.headers.get("authorization", ""))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True  # (an empty host listens on every address: not loopback)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AccessPolicy:
    """Who may write and read. Writes need the token when one is set, and always when the
    server listens beyond loopback; closed datasets need it for reads too."""

    def __init__(self, token: str | None, host: str, closed: Iterable[str] = (),
                 write_posts: Iterable[str] = (),
                 implicit: Callable[[str], str | None] | None = None) -> None:
        self.token = token or None
        # The dataset a path outside /datasets/ reads (/lines/<n>: the default one), so a
        # closed dataset is closed under every name it is served by.
        self.implicit = implicit
        self.public = not is_loopback(host)
        self.closed = frozenset(closed)
        # POST routes that change data (most POSTs are queries, which are reads), as regular
        # expressions matched against the whole path.
        self.write_posts = tuple(re.compile(p) for p in write_posts)

    def is_write(self, method: str, path: str) -> bool:
        return method in WRITE_METHODS or (
            method == "POST" and any(p.fullmatch(path) for p in self.write_posts))

    def closed_dataset(self, path: str) -> str | None:
        if not self.closed:
            return None
        if path.startswith("/datasets/"):
            return closing_name(path[len("/datasets/"):], self.closed)
        name = self.implicit(path) if self.implicit is not None else None
        return None if name is None else closing_name(name, self.closed)

    def hidden(self, authorization: str) -> frozenset[str]:
        """Closed datasets a request with this ``Authorization`` header may not see: every
        closed one without the token, none with it (for listings, event streams)."""
        if not self.closed or bearer_matches(authorization, self.token):
            return frozenset()
        return self.closed

    def check(self, method: str, path: str, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """None when allowed, else (status, why)."""
        write = self.is_write(method, path)
        closed = self.closed_dataset(path)
        if not write and closed is None:
            return None
        if self.token is None:
            if write and self.public:
                return 401, ("writes are refused: this server listens beyond loopback and has "
                             "no token; start it with --token or QUARRY_TOKEN")
            if closed is not None and not write:
                return 401, f"dataset {closed} is closed and this server has no token"
            return None
        if bearer_matches(headers.get(b"authorization", b"").decode("latin-1"), self.token):
            return None
        what = "writes need" if write else f"reads of {closed} need"
        return 401, f"{what} a token: send 'Authorization: Bearer <token>'"


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
        headers = dict(scope.get("headers") or ())
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex[:16]
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
            denied = self.policy.check(method, scope["path"], headers)
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

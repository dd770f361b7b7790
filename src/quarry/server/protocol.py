"""uvicorn's httptools protocol with the hot path spliced in before the ASGI dispatch, and
time limits on reading requests."""

from __future__ import annotations

from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from quarry.errors import BadRequest, RequestTimeout
from quarry.server.hotpath import HotRoutes
from quarry.server.responses import JSON, error_body, raw_response
from quarry.server.settings import ServeSettings


def find_quarry_app(app: Any) -> Any:
    """The app that carries the hot routes and the settings (uvicorn may wrap it in
    middleware; look through ``.app`` links for it), or None."""
    for _ in range(8):
        if isinstance(getattr(app, "hot_routes", None), HotRoutes):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


_GET = b"GET /"
_HTTP11 = b" HTTP/1.1\r\n"
_END = b"\r\n\r\n"


_RID = b"\nx-request-id:"
_INM = b"\nif-none-match:"


def _hot_headers(data: bytes, low: bytes, eol: int) -> tuple[bytes | None, bytes | None]:
    """The x-request-id and If-None-Match of a request whose header block is ``data`` (``low``:
    its lower-cased copy from offset ``eol``, the end of the request line). Each is looked
    for only when present, so a request without them costs two substring searches."""
    found: list[bytes | None] = []
    for name in (_RID, _INM):
        at = low.find(name)
        if at < 0:
            found.append(None)
            continue
        if low.find(name, at + 1) >= 0:
            # Several: the parser's route reads them (the first id; every tag, joined).
            raise _SeveralHeaders
        start = eol + at + len(name)
        found.append(data[start : data.index(b"\r\n", start)].strip(b" \t"))
    return found[0], found[1]


class _SeveralHeaders(Exception):
    pass


class QuarryHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """Time limits, besides uvicorn's keep-alive between requests: a connection idle since it
    was made is closed after the keep-alive timeout too; a request's headers must all arrive
    within the header timeout of its first byte, and its body may not pause longer than the
    body timeout. A slow client otherwise holds its connection (a file descriptor, some
    memory) for as long as it likes: thousands of them exhaust the server's descriptors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quarry = find_quarry_app(self.app)
        self._hot_routes: HotRoutes | None = quarry.hot_routes if quarry is not None else None
        settings = getattr(quarry, "settings", None)
        if not isinstance(settings, ServeSettings):
            settings = ServeSettings()
        # uvicorn's attribute, declared int there but only ever given to call_later.
        self.timeout_keep_alive = settings.keep_alive_timeout  # type: ignore[assignment]
        self._header_timeout = settings.header_timeout
        self._body_timeout = settings.body_timeout
        self._hot_response: bytes | None = None
        self._hot_put: list[bytes] | None = None  # the body of a PUT the hot path takes
        # True between messages: the parser holds no part of a request.
        self._idle = True
        self._idle_since = 0.0  # the connection was made, or the hot path last answered
        # When the request being read must be further along (all its headers in, or more of
        # its body), or None when no request is being read. One timer checks it, set only
        # when a packet leaves a request unfinished and moved on lazily, so requests that
        # arrive whole (nearly all) cost no timer at all.
        self._read_deadline: float | None = None
        self._read_timer: TimerHandle | None = None
        self._in_body = False
        self._body_cycle: RequestResponseCycle | None = None  # the ASGI cycle whose body is read

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response: a client that connects
        # and never sends a byte would be held for ever.
        self._idle_since = self.loop.time()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """A lone, plain ``GET`` of a hot route is answered without the parser.

        The common case under load (one keep-alive request per packet, a handful of
        headers) otherwise costs a scope dict and a Python callback per header before the
        hot path even sees the URL. Anything else — several requests in one packet, a
        partial one, HTTP/1.0, a body or framing headers, a route the hot path declines —
        goes to httptools exactly as before.
        """
        hot = self._hot_routes
        # Headers that change how a request is framed or answered (content-length,
        # transfer-encoding, connection, expect, upgrade) send it to the parser.
        if (hot is not None and self._idle and self._read_deadline is None
                and data.startswith(_GET)
                and data.endswith(_END) and data.find(_END) == len(data) - 4
                and not self.pipeline
                and (self.cycle is None or self.cycle.response_complete)):
            eol = data.find(b"\r\n")
            end = eol - len(_HTTP11) + 2  # where " HTTP/1.1" starts, if the line ends so
            if end > 4 and data[end:eol + 2] == _HTTP11 and b" " not in data[4:end]:
                low = data[eol:].lower()
                if not (b"\ncontent-length" in low or b"\ntransfer-encoding" in low
                        or b"\nconnection" in low or b"\nexpect" in low
                        or b"\nupgrade" in low):
                    try:
                        resp = hot.respond(b"GET", data[4:end], *_hot_headers(data, low, eol))
                    except Exception:
                        resp = None  # the ASGI route answers instead, and logs any error
                    if resp is not None:
                        self.transport.write(resp)
                        self.server_state.total_requests += 1
                        # The keep-alive timer is re-armed lazily (see the handler below)
                        # instead of cancelled and re-created for every request.
                        self._idle_since = self.loop.time()
                        if self.timeout_keep_alive_task is None:
                            self.timeout_keep_alive_task = self.loop.call_later(
                                self.timeout_keep_alive, self.timeout_keep_alive_handler)
                        return
        if self._idle and self._read_deadline is None:
            # The first bytes of a request, or of bytes that never make one (blank lines
            # the parser skips): its headers are due from now, however slowly they come.
            self._read_deadline = self.loop.time() + self._header_timeout
        super().data_received(data)
        if (self._read_deadline is not None and self._read_timer is None
                and not self.transport.is_closing()):
            self._read_timer = self.loop.call_later(
                self._read_deadline - self.loop.time(), self._read_timeout_handler)

    def send_400_response(self, msg: str) -> None:
        """A request the parser refuses (e.g. a request line past its limit) gets the API's
        JSON error body, not uvicorn's text/plain; the connection closes, as uvicorn's does
        (the stream may be out of step)."""
        extra = b"".join(b"%s: %s\r\n" % (name, value)
                         for name, value in self.server_state.default_headers)
        body = error_body(BadRequest(f"malformed HTTP request: {msg}"))
        self.transport.write(raw_response(400, JSON, body, extra + b"connection: close\r\n"))
        self.transport.close()

    def timeout_keep_alive_handler(self) -> None:
        idle = self.loop.time() - self._idle_since
        if idle < self.timeout_keep_alive:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive - idle, self.timeout_keep_alive_handler)
            return
        self.timeout_keep_alive_task = None
        super().timeout_keep_alive_handler()

    def _read_timeout_handler(self) -> None:
        self._read_timer = None
        deadline = self._read_deadline
        if deadline is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # Reading is paused for the server's sake (a pipelined request waits for the one
            # before it, or the app is behind with the body): the client is not late.
            deadline = self._read_deadline = now + self._body_timeout
        if now < deadline:
            self._read_timer = self.loop.call_later(deadline - now, self._read_timeout_handler)
            return
        self._timed_out()

    def _timed_out(self) -> None:
        if self._in_body:
            detail = (f"the request body paused for more than {self._body_timeout:g} s "
                      "(--body-timeout)")
        else:
            detail = (f"the request headers did not arrive within {self._header_timeout:g} s "
                      "(--header-timeout)")
        cycle = self.cycle
        if cycle is not None and cycle is self._body_cycle:
            # The app is reading this body: it reads a disconnect, and gets no answer out.
            answer = not cycle.response_started and not self.pipeline
            cycle.disconnected = True
            cycle.message_event.set()
        else:
            # A 408 only where no earlier answer is still owed on this connection.
            answer = not self.pipeline and (cycle is None or cycle.response_complete)
        if answer:
            self.transport.write(raw_response(
                RequestTimeout.status, JSON, error_body(RequestTimeout(detail)),
                b"connection: close\r\n"))
        self.transport.close()

    def on_message_begin(self) -> None:
        self._idle = False
        # A request pipelined after a hot answer in the same packet: the keep-alive timer
        # that answer armed must not cut this one (an /events stream) at the idle limit.
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        if self._read_deadline is None:  # a request after another in the same packet
            self._read_deadline = self.loop.time() + self._header_timeout
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        # Until on_message_complete says there was none, a body may follow.
        self._in_body = True
        self._read_deadline = self.loop.time() + self._body_timeout
        self._body_cycle = None
        hot = self._hot_routes
        # Only when no earlier request on this connection is still being answered, so
        # pipelined responses keep their order.
        if hot is not None and not self.pipeline and (
            self.cycle is None or self.cycle.response_complete
        ):
            method = self.parser.get_method()
            if method == b"PUT" and self.parser.get_http_version() == "1.1":
                try:
                    takes = hot.takes_put(self.url, self.headers)
                except Exception:
                    takes = False
                if takes:
                    self._hot_put = []
                    self._hot_response = None
                    return
            rid = inm = None
            for key, value in self.headers:
                if key == b"x-request-id":
                    rid = rid or value  # the first, as ObservedApp reads it
                elif key == b"if-none-match":
                    inm = value if inm is None else inm + b", " + value
            try:
                resp = hot.respond(method, self.url, rid, inm)
            except Exception:
                # A bug in the shortcut must not read as a malformed request (httptools would
                # turn it into a 400); the ASGI route answers instead, and logs any error.
                resp = None
            if resp is not None:
                self._hot_response = resp
                return
        self._hot_response = None
        super().on_headers_complete()
        self._body_cycle = self.cycle

    def on_body(self, body: bytes) -> None:
        self._read_deadline = self.loop.time() + self._body_timeout
        if self._hot_put is not None:
            self._hot_put.append(body)
        elif self._hot_response is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._idle = True
        self._read_deadline = None
        self._in_body = False
        self._body_cycle = None
        put, self._hot_put = self._hot_put, None
        done = None
        if put is not None and self._hot_routes is not None:
            # Committed here, on the event loop: takes_put only accepts small bodies and a
            # store whose commit sync is quick.
            self._hot_response, done = self._hot_routes.put(self.url, self.headers,
                                                            b"".join(put))
        resp = self._hot_response
        if resp is None:
            super().on_message_complete()
            return
        self._hot_response = None
        self.transport.write(resp)
        self.server_state.total_requests += 1
        if done is not None:
            done()  # the PUT's log line and metrics, with its answer on its way
        if not self.parser.should_keep_alive():
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

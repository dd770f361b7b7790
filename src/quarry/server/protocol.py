"""uvicorn's httptools protocol with the hot path spliced in before the ASGI dispatch."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from quarry.errors import BadRequest
from quarry.server.hotpath import HotRoutes
from quarry.server.responses import JSON, error_body, raw_response


def find_hot_routes(app: Any) -> HotRoutes | None:
    # uvicorn may wrap the app in middleware; look through ``.app`` links for ours.
    for _ in range(8):
        hot = getattr(app, "hot_routes", None)
        if isinstance(hot, HotRoutes):
            return hot
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


_GET = b"GET /"
_HTTP11 = b" HTTP/1.1\r\n"
_END = b"\r\n\r\n"


class QuarryHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hot_routes = find_hot_routes(self.app)
        self._hot_response: bytes | None = None
        self._hot_put: list[bytes] | None = None  # the body of a PUT the hot path takes
        # True between messages: the parser holds no part of a request.
        self._idle = True
        self._last_hot = 0.0

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
        if (hot is not None and self._idle and data.startswith(_GET)
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
                        resp = hot.respond(b"GET", data[4:end])
                    except Exception:
                        resp = None  # the ASGI route answers instead, and logs any error
                    if resp is not None:
                        self.transport.write(resp)
                        self.server_state.total_requests += 1
                        # The keep-alive timer is re-armed lazily (see the handler below)
                        # instead of cancelled and re-created for every request.
                        self._last_hot = self.loop.time()
                        if self.timeout_keep_alive_task is None:
                            self.timeout_keep_alive_task = self.loop.call_later(
                                self.timeout_keep_alive, self.timeout_keep_alive_handler)
                        return
        super().data_received(data)

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
        idle = self.loop.time() - self._last_hot
        if idle < self.timeout_keep_alive:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive - idle, self.timeout_keep_alive_handler)
            return
        self.timeout_keep_alive_task = None
        super().timeout_keep_alive_handler()

    def on_message_begin(self) -> None:
        self._idle = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
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
            try:
                resp = hot.respond(method, self.url)
            except Exception:
                # A bug in the shortcut must not read as a malformed request (httptools would
                # turn it into a 400); the ASGI route answers instead, and logs any error.
                resp = None
            if resp is not None:
                self._hot_response = resp
                return
        self._hot_response = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._hot_put is not None:
            self._hot_put.append(body)
        elif self._hot_response is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._idle = True
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

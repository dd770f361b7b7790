"""uvicorn's httptools protocol with the hot path spliced in before the ASGI dispatch."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from quarry.server.hotpath import HotRoutes


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


class QuarryHttpProtocol(HttpToolsProtocol):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hot_routes = find_hot_routes(self.app)
        self._hot_response: bytes | None = None

    def on_headers_complete(self) -> None:
        hot = self._hot_routes
        # Only when no earlier request on this connection is still being answered, so
        # pipelined responses keep their order.
        if hot is not None and not self.pipeline and (
            self.cycle is None or self.cycle.response_complete
        ):
            try:
                resp = hot.respond(self.parser.get_method(), self.url)
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
        if self._hot_response is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        resp = self._hot_response
        if resp is None:
            super().on_message_complete()
            return
        self._hot_response = None
        self.transport.write(resp)
        self.server_state.total_requests += 1
        if not self.parser.should_keep_alive():
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

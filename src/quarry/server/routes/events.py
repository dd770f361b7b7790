"""Change events as Server-Sent Events: ``GET /events``, tailing the store's event journal.

Each event's SSE id is its journal offset, so a client that reconnects with
``Last-Event-ID`` misses nothing. Commits made in this process wake the stream at once;
those of other processes are seen at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response, StreamingResponse

from quarry.access import AccessPolicy
from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.server.middleware import caller_of
from quarry.server.settings import ServeSettings
from quarry.store.journal import Event

POLL = 0.05
KEEPALIVE = 15.0


class Wakers:
    """Lets a commit in any thread wake the event streams waiting on their event loops."""

    def __init__(self) -> None:
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def add(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        item = (asyncio.get_running_loop(), asyncio.Event())
        self._waiting.add(item)
        return item

    def remove(self, item: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        self._waiting.discard(item)

    def __call__(self, event: Event) -> None:
        for loop, ev in list(self._waiting):
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # that loop is closed
                self._waiting.discard((loop, ev))


def sse(offset: int, event: Event) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (offset, event.event.encode(), event.encode())


def matches(event: Event, dataset: str | None, kind: str | None) -> bool:
    if dataset is not None and not fnmatch.fnmatchcase(event.dataset, dataset):
        return False
    return kind is None or event.event == kind


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    journal = engine.store.journal
    wakers = Wakers()
    engine.store.listeners.append(wakers)

    async def stream(request: Request, start: int, dataset: str | None, kind: str | None,
                     limit: int | None) -> AsyncIterator[bytes]:
        policy: AccessPolicy = request.app.state.policy
        caller = caller_of(request)
        offset = start
        sent = 0
        waker = wakers.add()
        last_write = time.monotonic()
        try:
            yield b": quarry events\n\n"
            while True:
                waker[1].clear()
                batch, offset = journal.read(offset)
                for pos, event in batch:
                    if (matches(event, dataset, kind)
                            and policy.may_see_event(caller, event.dataset, event.extra)):
                        yield sse(pos, event)
                        sent += 1
                        last_write = time.monotonic()
                        if limit is not None and sent >= limit:
                            return
                if batch:
                    continue
                if await request.is_disconnected():
                    return
                if time.monotonic() - last_write > KEEPALIVE:
                    yield b": keepalive\n\n"
                    last_write = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waker[1].wait(), POLL)
        finally:
            wakers.remove(waker)

    @api.get("/events", tags=["events"], response_class=Response,
             summary="Server-Sent Events: every new version, alias move and pipeline failure",
             responses={200: {"description": "The event stream",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    async def events(
        request: Request,
        dataset: str | None = Query(None, description="dataset name or glob, e.g. qplan/*"),
        event: str | None = Query(None, description="only this event: commit, alias, failed"),
        limit: int | None = Query(None, ge=1, description="close after this many events"),
        since: int | None = Query(None, ge=0, description="journal offset to resume from"),
    ) -> Response:
        last = request.headers.get("last-event-id")
        if since is None and last is not None:
            if not (last.strip().isascii() and last.strip().isdigit()):
                raise BadRequest(f"Last-Event-ID must be an event id, got {last[:40]!r}")
            since = int(last)
        start = journal.end() if since is None else since
        return StreamingResponse(stream(request, start, dataset, event, limit),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-cache",
                                          "x-accel-buffering": "no"})

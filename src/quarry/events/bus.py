"""The event bus: tails the store's event journal and publishes each event on ZeroMQ PUB.

Messages are two frames, ``[b"<dataset> <event>", <JSON body>]``, so a subscriber filters by
topic prefix (``qplan/raw `` with the space, or ``qplan/`` for a whole family). For the
original snapshot service's subscribers each new version is also sent as the single frame
``=====<resource>`` (``=====qplan raw``). In-process subscribers (pipelines) get the same
events through ``subscribe``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import zmq

from quarry.errors import Unavailable
from quarry.events.stacked import HEADER, dataset_to_resource
from quarry.store import Store
from quarry.store.journal import COMMIT, Event

DEFAULT_PUB = "tcp://127.0.0.1:5100"
POLL = 0.05  # how soon a commit made by another process is published, at most


class JournalTail:
    """New journal events, from the journal's end at creation on. In-process commits wake the
    reader at once; other processes' commits are seen within ``poll`` seconds."""

    def __init__(self, store: Store, poll: float = POLL, start: int | None = None) -> None:
        self._store = store
        self._poll = poll
        self.offset = store.journal.end() if start is None else start
        self._wake = threading.Event()
        store.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def next(self) -> list[Event]:
        self._wake.clear()
        batch, self.offset = self._store.journal.read(self.offset)
        if not batch:
            self._wake.wait(self._poll)
        return [e for _, e in batch]

    def close(self) -> None:
        if self._on_event in self._store.listeners:
            self._store.listeners.remove(self._on_event)


def bind(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, endpoint: str) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 500)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        sock.close(0)
        raise Unavailable(f"cannot listen on {endpoint}: {e}") from None
    return sock


class Bus(threading.Thread):
    def __init__(self, store: Store, ctx: zmq.Context[zmq.Socket[bytes]],
                 endpoint: str = DEFAULT_PUB, *, legacy: bool = True,
                 poll: float = POLL) -> None:
        super().__init__(name="quarry-bus", daemon=True)
        self.endpoint = endpoint
        self.legacy = legacy
        # Bound here, in the caller's thread, so "address in use" is reported at start-up;
        # from then on only the bus thread touches the socket.
        self._sock = bind(ctx, zmq.PUB, endpoint)
        self._tail = JournalTail(store, poll)
        self._halt = threading.Event()
        self._subscribers: list[Callable[[Event], None]] = []
        self.published = 0

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """``callback`` runs in the bus thread for every event: it must only hand work off."""
        self._subscribers.append(callback)

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for event in self._tail.next():
                    self._publish(event)
            for event in self._tail.next():  # what was committed before the stop
                self._publish(event)
        finally:
            self._tail.close()
            self._sock.close()

    def _publish(self, event: Event) -> None:
        self._sock.send_multipart([event.topic.encode(), event.encode()])
        if self.legacy and event.event == COMMIT:
            self._sock.send((HEADER + dataset_to_resource(event.dataset)).encode())
        self.published += 1
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception as e:  # one subscriber's bug must not stop publication
                print(f"quarry bus: subscriber failed: {e!r}", file=sys.stderr)

    def stop(self) -> None:
        self._halt.set()
        self._tail.wake()

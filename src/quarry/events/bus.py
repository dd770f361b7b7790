"""The event bus: tails the store's event journal and publishes each event on ZeroMQ PUB.

Messages are two frames, ``[b"<dataset> <event>", <JSON body>]``, so a subscriber filters by
topic prefix (``qplan/raw `` with the space, or ``qplan/`` for a whole family). The original
snapshot service's subscribers get each new version as the single frame ``=====<resource>``
(``=====qplan raw``) on a PUB endpoint of their own: they subscribe to everything and read one
frame, so a JSON event on their socket would break them, as a single frame would break a
reader of two. In-process subscribers (pipelines) get the same events through ``subscribe``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import zmq

from quarry.access import ANONYMOUS, AccessPolicy
from quarry.config import is_local_endpoint
from quarry.errors import BadConfig, Unavailable
from quarry.events.curve import Gatekeeper
from quarry.events.stacked import HEADER, dataset_to_resource
from quarry.store import Store
from quarry.store.journal import COMMIT, Event

DEFAULT_PUB = "tcp://127.0.0.1:5100"
DEFAULT_LEGACY_PUB = "tcp://127.0.0.1:5101"
POLL = 0.05  # how soon a commit made by another process is published, at most


def bind(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, endpoint: str,
         gate: Gatekeeper | None = None) -> zmq.Socket[bytes]:
    """A socket bound to ``endpoint``: CURVE through ``gate`` beyond loopback, where one
    without authentication is refused; plain on loopback, for the original clients."""
    local = is_local_endpoint(endpoint)
    if not local and gate is None:
        raise BadConfig(f"{endpoint} listens beyond loopback, where ZeroMQ needs "
                        "authentication: configure 'curve' or bind it to 127.0.0.1")
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 500)
    if not local and gate is not None:
        gate.secure(sock)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        sock.close(0)
        raise Unavailable(f"cannot listen on {endpoint}: {e}") from None
    return sock


class Bus(threading.Thread):
    """Publishes every journaled event once, in journal order.

    An event committed in this process is published by the committing thread itself, as soon
    as the commit is done: handing it to the bus thread cost a thread wake-up and a hand-over
    of the GIL on every commit, a quarter of a 1 KB PUT's time here. The bus thread reads the
    journal for the rest: other processes' commits (within ``poll`` seconds), and an event of
    this process that was not next in the journal (another process's came between; the bus
    thread then publishes both, in order). One lock covers the socket, the offset and the
    order of publication.
    """

    def __init__(self, store: Store, ctx: zmq.Context[zmq.Socket[bytes]],
                 endpoint: str = DEFAULT_PUB, *, legacy_endpoint: str | None = None,
                 gate: Gatekeeper | None = None, poll: float = POLL,
                 policy: AccessPolicy | None = None) -> None:
        super().__init__(name="quarry-bus", daemon=True)
        self.endpoint = endpoint
        self.legacy_endpoint = legacy_endpoint
        # Bound here, in the caller's thread, so "address in use" is reported at start-up.
        self._sock = bind(ctx, zmq.PUB, endpoint, gate)
        self._legacy: zmq.Socket[bytes] | None = None
        if legacy_endpoint is not None:
            try:
                self._legacy = bind(ctx, zmq.PUB, legacy_endpoint, gate)
            except BaseException:
                self._sock.close(0)
                raise
        self._store = store
        self._poll = poll
        # A plain (loopback) PUB's subscribers are anonymous: events of closed datasets are
        # not sent there. A CURVE PUB's subscribers all passed the gate's key list.
        self._policy = policy
        self._open_only = (policy is not None and is_local_endpoint(endpoint),
                           policy is not None and legacy_endpoint is not None
                           and is_local_endpoint(legacy_endpoint))
        # Reentrant: a subscriber may commit, which publishes from within a publication.
        self._lock = threading.RLock()
        self._open = True
        self.offset = store.journal.end()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._subscribers: list[Callable[[Event], None]] = []
        self.published = 0
        store.journal_listeners.append(self._on_local)

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """``callback`` runs, under the bus's lock, in whichever thread publishes the event
        (the committing one, or the bus thread): it must only hand work off."""
        self._subscribers.append(callback)

    def _on_local(self, event: Event, start: int, end: int) -> None:
        with self._lock:
            if self._open and self.offset == start:
                self.offset = end
                self._publish(event)
                return
        self._wake.set()

    def _drain(self) -> bool:
        """Publish what the journal holds past the offset; whether there was anything."""
        with self._lock:
            if not self._open:
                return False
            batch, self.offset = self._store.journal.read(self.offset)
            for _, event in batch:
                self._publish(event)
        return bool(batch)

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                self._wake.clear()
                if not self._drain():
                    self._wake.wait(self._poll)
            while self._drain():  # what was committed before the stop
                pass
        finally:
            with self._lock:
                self._open = False
                if self._on_local in self._store.journal_listeners:
                    self._store.journal_listeners.remove(self._on_local)
                self._sock.close()
                if self._legacy is not None:
                    self._legacy.close()

    def _publish(self, event: Event) -> None:
        seen = (self._policy is None
                or self._policy.may_see_event(ANONYMOUS, event.dataset, event.extra))
        if seen or not self._open_only[0]:
            self._sock.send_multipart([event.topic.encode(), event.encode()])
        if (self._legacy is not None and event.event == COMMIT
                and (seen or not self._open_only[1])):
            self._legacy.send((HEADER + dataset_to_resource(event.dataset)).encode())
        self.published += 1
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception as e:  # one subscriber's bug must not stop publication
                print(f"quarry bus: subscriber failed: {e!r}", file=sys.stderr)

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

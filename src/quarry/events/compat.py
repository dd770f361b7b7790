"""The snapshot service's ZeroMQ REP endpoint, speaking stacked streams (see stacked.py).

``=====PUT <resource>`` + body lines → ``OK``; ``=====GET <resource>`` with an optional
``\\t<version>`` line → ``=====<resource>\\n\\t<version>\\n=====data\\n\\t<line>...``; anything
wrong → ``ERROR: <why>``. Every request gets exactly one reply, whatever it holds: a REP
socket that fails to answer is stuck for good.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import zmq

from quarry.access import ANONYMOUS, TRUSTED, AccessPolicy, Caller
from quarry.config import is_local_endpoint
from quarry.datasets.kinds import WriteOptions, put_bytes, read_data
from quarry.errors import QuarryError
from quarry.events.bus import bind
from quarry.events.curve import Gatekeeper
from quarry.events.stacked import (
    Malformed,
    Section,
    data_of,
    encode,
    lines_of,
    parse,
    resource_to_dataset,
)
from quarry.store import Store

DEFAULT_REP = "tcp://127.0.0.1:5000"
MAX_MESSAGE = 256 << 20
# The original stored resources as text files; new resources PUT here are lines datasets.
DEFAULT_KIND = "lines"


def error(why: str) -> bytes:
    return f"ERROR: {why}".encode()


class ReplyCache:
    """GET replies by (resource, version id): a version never changes, so neither does the
    reply; only resolving the version (HEAD, alias) is redone per request."""

    def __init__(self, entries: int = 256, max_bytes: int = 256 << 10) -> None:
        self._replies: dict[tuple[str, str], bytes] = {}
        self._entries = entries
        self._max_bytes = max_bytes

    def get(self, resource: str, vid: str) -> bytes | None:
        return self._replies.get((resource, vid))

    def put(self, resource: str, vid: str, reply: bytes) -> None:
        if len(reply) > self._max_bytes:
            return
        if len(self._replies) >= self._entries:
            self._replies.pop(next(iter(self._replies)))
        self._replies[(resource, vid)] = reply


def handle(store: Store, message: bytes, cache: ReplyCache | None = None,
           resolve: Callable[[str, str | None], str] | None = None,
           access: tuple[AccessPolicy, Caller] | None = None) -> bytes:
    """The reply to one message. ``resolve`` turns (dataset, version or None) into a version
    id; the store's own by default, an engine's (which caches HEAD and resolved names) when
    the endpoint runs beside the HTTP server. ``access``: the policy and who is asking (a
    CURVE client let in, or an anonymous one on loopback); closed datasets are refused to
    callers the policy does not authorize, for PUTs as for GETs."""
    try:
        sections = parse(message)
    except Malformed as e:
        return error(str(e))
    head = sections[0]
    verb, _, resource = head.label.partition(" ")
    resource = resource.strip()
    if verb not in ("PUT", "GET"):
        return error(f"unknown command {head.label[:40]!r}: use '=====PUT <resource>' or "
                     "'=====GET <resource>'")
    if not resource:
        return error(f"{verb} needs a resource name, e.g. '=====GET qplan raw'")
    if len(sections) > 1:
        return error(f"one command per message; got {len(sections)} sections")
    try:
        dataset = resource_to_dataset(resource)
        if access is not None and not access[0].may_read(access[1], dataset):
            return error(f"dataset {access[0].closing(dataset)} is closed: connect with a "
                         "CURVE key the server lets in")
        if verb == "PUT":
            put_bytes(store, dataset, data_of(head.lines), default_kind=DEFAULT_KIND,
                      opts=WriteOptions(message="PUT over ZeroMQ"))
            return b"OK"
        if len(head.lines) > 1:
            return error("GET takes at most one body line: the version")
        version = head.lines[0].strip() if head.lines else None
        vid = (resolve or store.resolve)(dataset, version or None)
        cached = cache.get(resource, vid) if cache is not None else None
        if cached is not None:
            return cached
        snap = store.snapshot(vid)
        data = read_data(store, snap)
        if snap.size > MAX_MESSAGE:
            return error(f"{resource} is {snap.size} bytes at {vid[:12]}: too large for one "
                         "message; use GET /datasets/<name>/data over HTTP")
        body = lines_of(data.read_all())
        reply = encode([Section(resource, (vid,)), Section("data", tuple(body))])
        if cache is not None:
            cache.put(resource, vid, reply)
        return reply
    except QuarryError as e:
        return error(e.detail)
    except Exception as e:  # never leave the REP socket without its reply
        print(f"quarry compat: {verb} {resource[:80]!r} failed: {e!r}", file=sys.stderr)
        return error(f"internal error: {type(e).__name__}")


class CompatEndpoint(threading.Thread):
    def __init__(self, store: Store, ctx: zmq.Context[zmq.Socket[bytes]],
                 endpoint: str = DEFAULT_REP, *,
                 resolve: Callable[[str, str | None], str] | None = None,
                 gate: Gatekeeper | None = None, policy: AccessPolicy | None = None) -> None:
        super().__init__(name="quarry-compat", daemon=True)
        self.endpoint = endpoint
        self._store = store
        self._resolve = resolve
        # Its PUTs run the pipelines (shell commands among them): beyond loopback only the
        # clients ``gate`` lets in may send, and ``bind`` refuses to listen without one.
        self._sock = bind(ctx, zmq.REP, endpoint, gate)
        # Every client of a CURVE socket passed the gate's key list; a plain (loopback)
        # socket's clients are anonymous: no closed dataset for them.
        caller = ANONYMOUS if is_local_endpoint(endpoint) else TRUSTED
        self._access = None if policy is None else (policy, caller)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self._halt = threading.Event()
        self.served = 0

    def run(self) -> None:
        cache = ReplyCache()
        try:
            # A receive timeout instead of poll() then recv(): one call per request.
            self._sock.setsockopt(zmq.RCVTIMEO, 100)
            while not self._halt.is_set():
                try:
                    frames = self._sock.recv_multipart()
                except zmq.Again:
                    continue
                if len(frames) != 1:
                    reply = error(f"expected one frame, got {len(frames)}")
                else:
                    reply = handle(self._store, frames[0], cache, self._resolve, self._access)
                self._sock.send(reply)
                self.served += 1
        finally:
            self._sock.close()

    def stop(self) -> None:
        self._halt.set()

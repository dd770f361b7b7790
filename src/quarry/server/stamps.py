"""What every answer carries, whichever side makes it: a ``Date`` and an ``x-request-id``
(the client's, or a new one), and the hot path's header lines for both."""

from __future__ import annotations

import itertools
import os
import time
from email.utils import formatdate

MAX_REQUEST_ID = 64


class RequestIds:
    """New request ids: 16 hex digits, a random prefix and a counter. Unique at a fraction of
    uuid4's cost (an os.urandom call per request), which the hot path would pay on every
    answer."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(4).hex().encode()
        self.counter = itertools.count()

    def new(self) -> bytes:
        return b"%s%08x" % (self.prefix, next(self.counter) & 0xFFFFFFFF)


# One per process, for the hot path and ObservedApp alike; a forked worker must not repeat
# its parent's ids.
IDS = RequestIds()
os.register_at_fork(after_in_child=IDS.reseed)


def new_request_id() -> bytes:
    """A new request id: 16 hex digits."""
    return IDS.new()


def request_id_of(given: bytes | None) -> bytes:
    """The id an answer carries: the client's ``x-request-id`` (its first 64 bytes), or a new
    one."""
    return given[:MAX_REQUEST_ID] if given else IDS.new()


class HttpDate:
    """The ``Date`` header line, made once per second (as uvicorn does for ASGI answers)."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._line = b"date: %s\r\n" % formatdate(now, usegmt=True).encode()
            self._second = now
        return self._line

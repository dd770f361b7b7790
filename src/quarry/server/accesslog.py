"""Access-log lines for answers the protocol gives itself (the hot path), written in batches.

Each line is the one ObservedApp logs for an ASGI answer (same message, route, status and
request id). Logging a record costs about as much as the hot answer itself (a record, a
format and a write to stderr per line), so lines are queued and handed to the handlers a
batch at a time: once ``batch`` are waiting or ``delay`` seconds after the first, whichever
comes first, each stream handler writing a batch with one write.
"""

from __future__ import annotations

import asyncio
import logging

from quarry.logs import LOGGER, emit_many, fields

log = logging.getLogger(LOGGER + ".http")

# (method, path, status, seconds, route, request id)
Entry = tuple[str, bytes, int, float, str, bytes]


class AccessLog:
    def __init__(self, logger: logging.Logger = log, batch: int = 256,
                 delay: float = 0.2) -> None:
        self.logger = logger
        self.batch = batch
        self.delay = delay
        self.pending: list[Entry] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, method: str, url: bytes, status: int, seconds: float, route: str,
            request_id: bytes) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        self.pending.append((method, url, status, seconds, route, request_id))
        if len(self.pending) >= self.batch:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside a server (a test): written at once
                self.flush()
                return
            self._timer = loop.call_later(self.delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self.pending = self.pending, []
        if not pending:
            return
        logger = self.logger
        records = []
        for method, url, status, seconds, route, rid in pending:
            path = url.partition(b"?")[0].decode("latin-1")  # as ASGI's scope["path"]
            records.append(logger.makeRecord(
                logger.name, logging.INFO, __file__, 0, "%s %s %d %.1fms",
                (method, path, status, seconds * 1000), None,
                extra=fields(route=route, status=status,
                             request_id=rid.decode("latin-1"))))
        emit_many(logger, records)

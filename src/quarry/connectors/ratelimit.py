"""A global request rate shared by every worker of a fetch (asyncio)."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Grants at most ``rate`` requests per second, evenly spaced, to all callers together.

    Each caller reserves the next free slot under a lock and sleeps outside it, so slots are
    handed out in order and a burst of callers cannot exceed the rate. A slot not used in time
    is not saved up beyond ``burst`` slots: after an idle spell the rate resumes, it does not
    spike. ``rate`` 0 means no limit.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        self.rate = rate
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.burst = max(1, burst)
        self._next = time.monotonic()
        self._lock = asyncio.Lock()
        self.granted = 0

    async def acquire(self) -> None:
        if self.interval == 0.0:
            self.granted += 1
            return
        async with self._lock:
            now = time.monotonic()
            slot = max(self._next, now - (self.burst - 1) * self.interval)
            self._next = slot + self.interval
            self.granted += 1
        delay = slot - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

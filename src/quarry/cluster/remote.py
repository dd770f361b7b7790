"""Remote Quarry servers as shards: dispatchers nest, as in the original dispatcher configs.

Each shard is served by one or more servers (replicas) holding the same snapshots. A task is
POSTed to ``<url>/shards/map``; that server runs it through its own dispatcher (its own
shards and backend) and answers with the combined partial. A server that refuses connections,
fails or is slower than the timeout is named in the error; the dispatcher then tries a replica.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import orjson

from quarry.cluster import wire
from quarry.cluster.backends import Backend, Outcome
from quarry.cluster.ops import Task
from quarry.cluster.shards import ShardSpec
from quarry.errors import BadRequest, BadUpstream, ShardTimeout, ShardUnavailable

# A replica that failed is not tried first again for this long.
QUARANTINE_S = 5.0


class RemoteBackend(Backend):
    name = "remote"
    retryable = (ShardUnavailable, ShardTimeout)

    def __init__(self, groups: tuple[tuple[str, ...], ...], *, timeout_s: float = 30.0,
                 token: str | None = None) -> None:
        if not groups or not all(groups):
            raise BadRequest("remote shards need at least one URL each")
        self.groups = groups
        self.timeout_s = timeout_s
        headers = {"content-type": wire.MEDIA_TYPE}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
                                    limits=httpx.Limits(max_connections=64), headers=headers)
        self._pool = ThreadPoolExecutor(max(4, 2 * len(groups)), thread_name_prefix="quarry-remote")
        self._failed: dict[str, float] = {}
        self._rr: dict[int, int] = {}
        self._lock = threading.Lock()

    def shard_count(self, default: int) -> int:
        return len(self.groups)

    def _pick(self, spec: ShardSpec, attempt: int) -> str:
        urls = self.groups[spec.index % len(self.groups)]
        now = time.monotonic()
        with self._lock:
            healthy = [u for u in urls if now - self._failed.get(u, -1e9) > QUARANTINE_S]
            order = healthy + [u for u in urls if u not in healthy]
            # A counter per shard, so each shard's load alternates over its replicas.
            start = self._rr[spec.index] = self._rr.get(spec.index, -1) + 1
        # Spread load over healthy replicas; on a retry move to the next one.
        pool = healthy or order
        return pool[start % len(pool)] if attempt == 0 else order[attempt % len(order)]

    def submit(self, spec: ShardSpec, task: Task, attempt: int) -> Future[Outcome]:
        url = self._pick(spec, attempt)
        fut = self._pool.submit(self._call, url, task)
        fut.quarry_target = url  # type: ignore[attr-defined]  # named if the deadline passes
        return fut

    def _call(self, url: str, task: Task) -> Outcome:
        try:
            r = self._client.post(f"{url}/shards/map", content=wire.pack(task))
        except httpx.TimeoutException:
            self._mark(url)
            raise ShardTimeout(f"{url} did not answer within {self.timeout_s:g}s") from None
        except httpx.HTTPError as e:
            self._mark(url)
            raise ShardUnavailable(f"{url} is unreachable: {type(e).__name__}") from None
        if r.status_code != 200:
            try:
                detail = orjson.loads(r.content).get("detail", "")
            except (orjson.JSONDecodeError, AttributeError):
                detail = r.text[:200]
            if r.status_code >= 500:
                self._mark(url)
                raise ShardUnavailable(f"{url} answered {r.status_code}: {detail}")
            raise BadRequest(f"{url} refused the shard task ({r.status_code}): {detail}")
        try:
            body = wire.unpack(r.content)
        except wire.Malformed as e:  # the peer's fault, not our caller's: no 400 for it
            raise BadUpstream(f"{url} answered a malformed partial: {e.detail}") from None
        missing = body.get("missing", []) if isinstance(body, dict) else None
        if not isinstance(missing, list) or "partial" not in body or not all(
                isinstance(m, str) for m in missing):
            raise BadUpstream(f"{url} answered something other than a partial")
        return body["partial"], tuple(missing)

    def _mark(self, url: str) -> None:
        with self._lock:
            self._failed[url] = time.monotonic()

    def replicas(self, spec: ShardSpec) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{"url": u, "healthy": now - self._failed.get(u, -1e9) > QUARANTINE_S}
                for u in self.groups[spec.index % len(self.groups)]]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "servers": [list(g) for g in self.groups],
                "timeout": self.timeout_s}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

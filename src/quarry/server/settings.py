"""What a server process needs to know; passed to worker processes through the environment."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import orjson

ENV_VAR = "QUARRY_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServeSettings:
    data: str = "quarry-data"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    index_base: int = 1
    default_dataset: str | None = None
    refresh_interval: float = 0.5
    max_range_count: int = 100_000
    log_level: str = "info"
    log_format: str = "text"
    token: str | None = None
    closed: tuple[str, ...] = ()
    # Shards (see quarry.cluster): how many a version is split into, and where they run.
    shards: int = 8
    shard_workers: int = 0  # > 0: a local process pool of this many workers
    ray: bool = False  # start a local Ray cluster
    ray_address: str | None = None  # join this Ray cluster
    remote: tuple[str, ...] = ()  # remote Quarry servers, one shard each: "URL[,URL...]"
    replicas: int = 1
    on_shard_error: str = "fail"  # fail | partial
    shard_timeout: float = 30.0
    memory_budget: int | None = None  # bytes of awake shards; None: no limit
    key_budget: int | None = None  # bytes for built keys; None: a fraction of RAM
    key_interval: float = 5.0  # seconds between key builder runs; 0: no background builder
    # Connections (seconds). Shorter than nginx's 60/60/75: requests to a data server are
    # small, and a held connection is a file descriptor a slow or idle client keeps.
    header_timeout: float = 10.0  # from a request's first byte to the end of its headers
    body_timeout: float = 30.0  # between two reads of a request body
    keep_alive_timeout: float = 5.0  # idle: before the first request and between requests

    def to_env(self) -> str:
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = os.environ.get(ENV_VAR)
        if not raw:
            return cls(data=os.environ.get("QUARRY_HOME", "quarry-data"))
        d = orjson.loads(raw)
        d["closed"] = tuple(d.get("closed", ()))
        d["remote"] = tuple(d.get("remote", ()))
        return cls(**d)

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

    def to_env(self) -> str:
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = os.environ.get(ENV_VAR)
        if not raw:
            return cls(data=os.environ.get("QUARRY_HOME", "quarry-data"))
        d = orjson.loads(raw)
        d["closed"] = tuple(d.get("closed", ()))
        return cls(**d)

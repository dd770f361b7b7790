"""What a paged-API fetch needs to know, read from the ``api`` config section and options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from quarry.envconfig import Config, Section
from quarry.errors import BadConfig

MAX_PAGE = 10_000


@dataclass(frozen=True)
class ApiSettings:
    url: str
    rate_limit: float = 100.0  # requests per second, all workers together; 0: unlimited
    pool: int = 4  # concurrent workers, one id range each
    first_id: int = 0  # the first item id to fetch
    last_id: int | None = None  # the last one (inclusive); None: until the API says no more
    results_per_page: int = 100
    timeout: float = 10.0  # seconds for one request
    retries: int = 8  # tries after the first, for errors and timeouts
    backoff: float = 0.5  # seconds before the first retry, doubled each time (with jitter)
    id_field: str = "id"

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadConfig(f"api url must be an http(s) URL, got {self.url!r}")
        if self.rate_limit < 0:
            raise BadConfig(f"rate_limit must be ≥ 0 requests/s, got {self.rate_limit}")
        if not 1 <= self.pool <= 256:
            raise BadConfig(f"pool must be between 1 and 256 workers, got {self.pool}")
        if not 1 <= self.results_per_page <= MAX_PAGE:
            raise BadConfig(f"results_per_page must be between 1 and {MAX_PAGE}, got "
                            f"{self.results_per_page}")
        if self.last_id is not None and self.last_id < self.first_id:
            raise BadConfig(f"last_id {self.last_id} is before first_id {self.first_id}")
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise BadConfig("timeout must be > 0, retries and backoff ≥ 0")

    @property
    def end_id(self) -> int | None:
        """The exclusive end of the id space."""
        return None if self.last_id is None else self.last_id + 1

    def key_fields(self) -> dict[str, Any]:
        """What identifies a fetch job for resumption (not its speed settings)."""
        return {"url": self.url, "first_id": self.first_id, "last_id": self.last_id,
                "pool": self.pool, "results_per_page": self.results_per_page,
                "id_field": self.id_field}

    @classmethod
    def from_section(cls, section: Section, **overrides: Any) -> ApiSettings:
        """Settings from the config's ``api`` section, with non-None ``overrides`` on top."""
        section.check_keys(f.name for f in dataclasses.fields(cls))
        values: dict[str, Any] = {
            "url": section.get_str("url"),
            "rate_limit": section.get_float("rate_limit", minimum=0),
            "pool": section.get_int("pool", minimum=1, maximum=256),
            "first_id": section.get_int("first_id", minimum=0),
            "last_id": section.get_int("last_id", minimum=0),
            "results_per_page": section.get_int("results_per_page", minimum=1,
                                                maximum=MAX_PAGE),
            "timeout": section.get_float("timeout", positive=True),
            "retries": section.get_int("retries", minimum=0),
            "backoff": section.get_float("backoff", minimum=0),
            "id_field": section.get_str("id_field"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        values = {k: v for k, v in values.items() if v is not None}
        if "url" not in values:
            raise BadConfig(f"no API url: pass --url or set url in {section.where}")
        return cls(**values)

    @classmethod
    def from_config(cls, config: Config, overrides: Mapping[str, Any] | None = None
                    ) -> ApiSettings:
        return cls.from_section(config.section("api"), **(overrides or {}))

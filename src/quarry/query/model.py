"""Queries over IP/time records as frozen descriptions, and the parsing of their inputs.

Times are POSIX seconds (with fractions) or ISO 8601 at the edges and whole microseconds
inside; a window is inclusive at both ends, as in the original access-log index.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import orjson
import pyarrow as pa

from quarry.defaults import DEFAULT_FIND_LIMIT
from quarry.errors import BadRequest
from quarry.formats.ipaddr import parse_ip, parse_ips

MAX_IPS = 10_000  # also bounded by iplog's 16-bit owner field
MAX_LIMIT = 1_000_000
DEFAULT_LIMIT = DEFAULT_FIND_LIMIT
# Window bounds beyond year ~5000 are typos; this also keeps µs within int64.
MAX_SECONDS = 1.0e11
MAX_BUCKET = int(MAX_SECONDS)  # seconds: one bucket spans any window
Order = Literal["count", "ip"]
# Times, rows and counts live in int64 columns; a query's numbers must fit beside them.
INT64 = (1 << 63) - 1
# Bounds of a limit or offset however a query was made (the routes' are tighter): FindOp
# asks its shards for one more than the page, so this is not INT64 itself.
MAX_COUNT = 1 << 62


def _check_int(value: int, what: str, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise BadRequest(f"{what} must be between {lo} and {hi}, got {value}")


def _check_ips(ips: tuple[bytes, ...]) -> None:
    # Every executor reshapes the addresses to (n, 16) bytes.
    if ips and set(map(len, ips)) != {16}:
        raise BadRequest("each address of a query must be 16 bytes (IPv6 or IPv4-mapped)")


@dataclass(frozen=True)
class Window:
    start_us: int | None = None  # inclusive
    end_us: int | None = None  # inclusive

    # Checked on construction, whoever built the query: a route, the CLI, or a peer's shard
    # task off the wire (whose types quarry.cluster.wire has checked).
    def __post_init__(self) -> None:
        for what, v in (("start", self.start_us), ("end", self.end_us)):
            if v is not None:
                _check_int(v, f"window {what} (µs)", -INT64, INT64)


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last record's (time, chunk position, row), in one version."""

    version: str
    ts: int
    chunk: int
    row: int

    def __post_init__(self) -> None:
        _check_int(self.ts, "cursor time", -INT64, INT64)
        _check_int(self.chunk, "cursor chunk", 0, INT64)
        _check_int(self.row, "cursor row", 0, INT64)

    def encode(self) -> str:
        raw = orjson.dumps([self.version, self.ts, self.chunk, self.row])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            v, ts, chunk, row = orjson.loads(raw)
            return cls(str(v), int(ts), int(chunk), int(row))
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise BadRequest(f"invalid cursor {text[:40]!r}: pass back next_cursor as "
                             "it was given") from None


@dataclass(frozen=True)
class FindQuery:
    ips: tuple[bytes, ...]
    window: Window = Window()
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None

    def __post_init__(self) -> None:
        _check_ips(self.ips)
        _check_int(self.limit, "limit", 1, MAX_COUNT)


@dataclass(frozen=True)
class MembershipQuery:
    ips: tuple[bytes, ...]
    window: Window = Window()

    def __post_init__(self) -> None:
        _check_ips(self.ips)


@dataclass(frozen=True)
class VisitsQuery:
    ip: bytes
    window: Window = Window()
    limit: int = DEFAULT_LIMIT
    bucket_s: int | None = None  # counts per bucket of this many seconds

    def __post_init__(self) -> None:
        _check_ips((self.ip,))
        _check_int(self.limit, "limit", 1, MAX_COUNT)
        if self.bucket_s is not None:
            _check_int(self.bucket_s, "bucket", 1, MAX_BUCKET)


@dataclass(frozen=True)
class DistinctQuery:
    window: Window = Window()
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    order: Order = "count"

    def __post_init__(self) -> None:
        _check_int(self.limit, "limit", 1, MAX_COUNT)
        _check_int(self.offset, "offset", 0, MAX_COUNT)
        if self.order not in ("count", "ip"):
            raise BadRequest(f"order must be count or ip, got {self.order!r}")


def parse_time(raw: str | float | int | None, what: str) -> float | None:
    """POSIX seconds (number or numeric text) or ISO 8601 (UTC unless zoned) to seconds."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise BadRequest(f"{what} must be a time, got {str(raw)[:40]!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = raw.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest(f"{what} must be POSIX seconds or an ISO 8601 time, got "
                                 f"{text[:40]!r}") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            value = dt.timestamp()
    if not math.isfinite(value) or abs(value) > MAX_SECONDS:
        raise BadRequest(f"{what} is out of range: {raw!r}")
    return value


def _lo_us(s: float) -> int:
    # The first whole microsecond whose float value in seconds is >= s, so that the window
    # in µs selects exactly the records the original's float comparison did.
    c = math.floor(s * 1e6)
    while c / 1e6 < s:
        c += 1
    while (c - 1) / 1e6 >= s:
        c -= 1
    return c


def _hi_us(s: float) -> int:
    c = math.ceil(s * 1e6)
    while c / 1e6 > s:
        c -= 1
    while (c + 1) / 1e6 <= s:
        c += 1
    return c


def window(start: str | float | int | None, end: str | float | int | None) -> Window:
    s = parse_time(start, "start")
    e = parse_time(end, "end")
    if s is not None and e is not None and s > e:
        raise BadRequest(f"the window is inverted: start {start} is after end {end}")
    return Window(None if s is None else _lo_us(s), None if e is None else _hi_us(e))


def ip_bytes(raw: list[str] | tuple[str, ...], max_ips: int = MAX_IPS) -> list[bytes]:
    """Each address's 16-byte form, in order; 400 when one is malformed or there are too many."""
    if len(raw) > max_ips:
        raise BadRequest(f"too many IP addresses: {len(raw)}, at most {max_ips} a query",
                         limit=max_ips)
    texts = [str(x) for x in raw]
    if len(texts) > 1000:
        # Long lists go through the column-wise parser (ipaddress costs µs an address).
        packed, ok = parse_ips(pa.array(texts, pa.string()))
        if ok.all():
            flat = packed.tobytes()
            return [flat[i * 16:(i + 1) * 16] for i in range(len(texts))]
    # Short lists, and lists with spaces, brackets or a bad address (which parse_ip reports).
    return [parse_ip(x) for x in texts]


def ip_list(raw: list[str] | tuple[str, ...], max_ips: int = MAX_IPS) -> tuple[bytes, ...]:
    """Addresses to their 16-byte forms, duplicates dropped; 400 when malformed or too many."""
    return tuple(dict.fromkeys(ip_bytes(raw, max_ips)))


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def parse_compat_ips(text: str) -> list[str]:
    """The original route's list syntax: ``[ip1,ip2]`` (quotes and spaces tolerated)."""
    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise BadRequest(f"IP list must look like [ip1,ip2], got {text[:60]!r}")
    items = [x.strip().strip("'\"").strip() for x in inner[1:-1].split(",")]
    return [x for x in items if x]

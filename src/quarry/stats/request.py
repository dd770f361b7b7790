"""Statistics requests as frozen descriptions, and their parsing at the edges (JSON, CLI).

A request's rows are chosen by a predicate tree (:mod:`quarry.query.predicate`), unbound: it
is bound to each table's logical types where it runs (a shard, or the fetcher's pages). The
first filter language, ``filters: [{field, op, value}]``, is still accepted and translated
into the tree, ANDed with any ``where``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quarry.errors import BadRequest
from quarry.query.predicate import AlwaysTrue, In, Predicate, Prefix, Range, and_, fields, parse

# op -> whether it needs a field
OPS: dict[str, bool] = {
    "count": False, "top_k": True, "group_count": True, "histogram": True,
    "distinct_count": True, "min": True, "max": True, "mean": True,
}
FILTER_OPS = ("eq", "in", "range", "prefix")
MAX_K = 100_000
MAX_AGGREGATES = 32
MAX_IN = 100_000


@dataclass(frozen=True)
class Filter:
    field: str
    op: str  # eq, in, range (inclusive bounds, either may be None), prefix
    value: Any

    # Checked on construction, whoever built the filter: parse, or a peer's task off the wire.
    def __post_init__(self) -> None:
        field, op, value = self.field, self.op, self.value
        if not isinstance(field, str) or not field:
            raise BadRequest(f"filter needs a field name, got {field!r}")
        if op not in FILTER_OPS:
            raise BadRequest(f"filter op must be one of {', '.join(FILTER_OPS)}, got {op!r}")
        if op == "in":
            if not isinstance(value, tuple) or not 0 < len(value) <= MAX_IN:
                raise BadRequest(f"'in' filter on {field} needs a list of 1 to {MAX_IN} values")
        elif op == "range":
            if not isinstance(value, tuple) or len(value) != 2:
                raise BadRequest(f"'range' filter on {field} needs [low, high] (inclusive; "
                                 "null for open)")
        elif op == "prefix":
            if not isinstance(value, str):
                raise BadRequest(f"'prefix' filter on {field} needs text")
        elif value is None or isinstance(value, list | tuple | dict):
            raise BadRequest(f"'eq' filter on {field} needs one value")

    @classmethod
    def parse(cls, d: Any) -> Filter:
        if not isinstance(d, Mapping):
            raise BadRequest(f"a filter must be an object {{field, op, value}}, got {d!r}")
        # Any: checked by __post_init__, which names what is wrong.
        field: Any = d.get("field")
        op: Any = d.get("op")
        value = d.get("value")
        if op in ("in", "range") and isinstance(value, list):
            value = tuple(value)  # frozen, and what the wire carries
        return cls(field, op, value)

    def to_predicate(self) -> Predicate:
        if self.op == "eq":
            return In(self.field, (self.value,))
        if self.op == "in":
            return In(self.field, tuple(self.value))
        if self.op == "range":
            return Range(self.field, self.value[0], self.value[1])
        return Prefix(self.field, str(self.value))


@dataclass(frozen=True)
class Aggregate:
    op: str
    field: str | None = None
    k: int = 10  # top_k
    bucket: float = 3600.0  # histogram: bucket width in seconds (or units of a number field)
    approx: bool = False  # distinct_count: HyperLogLog instead of exact

    @property
    def name(self) -> str:
        if self.op == "count":
            return "count"
        extra = {"top_k": f",{self.k}", "histogram": f",{self.bucket:g}",
                 "distinct_count": ",approx" if self.approx else ""}.get(self.op, "")
        return f"{self.op}({self.field}{extra})"

    def __post_init__(self) -> None:
        op, field, k, bucket = self.op, self.field, self.k, self.bucket
        if op not in OPS:
            raise BadRequest(f"unknown aggregate {op!r}: use one of {', '.join(OPS)}")
        if OPS[op] and (not isinstance(field, str) or not field):
            raise BadRequest(f"{op} needs a field")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise BadRequest(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        if isinstance(bucket, bool) or not isinstance(bucket, int | float) \
                or not 0 < bucket < math.inf:
            raise BadRequest(f"bucket must be a positive number of seconds, got {bucket!r}")
        if not isinstance(self.approx, bool):
            raise BadRequest(f"approx must be true or false, got {self.approx!r}")

    @classmethod
    def parse(cls, d: Any) -> Aggregate:
        if isinstance(d, str):
            return cls.parse_text(d)
        if not isinstance(d, Mapping):
            raise BadRequest(f"an aggregate must be an object or text like 'top_k:field:10', "
                             f"got {d!r}")
        op: Any = d.get("op")
        bucket = d.get("bucket", 3600.0)
        return cls(op, d.get("field") if OPS.get(op) else None, d.get("k", 10),
                   float(bucket) if isinstance(bucket, int) and not isinstance(bucket, bool)
                   else bucket, d.get("approx", False))

    @classmethod
    def parse_text(cls, text: str) -> Aggregate:
        """``count``, ``top_k:FIELD[:K]``, ``histogram:FIELD[:SECONDS]``,
        ``distinct_count:FIELD[:approx]``, ``group_count:FIELD``, ``min:FIELD``…"""
        op, *rest = text.strip().split(":")
        d: dict[str, Any] = {"op": op}
        if rest:
            d["field"] = rest[0]
        if len(rest) > 2:
            raise BadRequest(f"aggregate {text!r} has too many parts")
        if len(rest) == 2:
            arg = rest[1]
            try:
                if op == "top_k":
                    d["k"] = int(arg)
                elif op == "histogram":
                    d["bucket"] = float(arg)
                elif op == "distinct_count" and arg in ("approx", "exact"):
                    d["approx"] = arg == "approx"
                else:
                    raise ValueError(arg)
            except ValueError:
                raise BadRequest(f"aggregate {text!r}: unexpected {arg!r}") from None
        return cls.parse(d)


@dataclass(frozen=True)
class StatsRequest:
    aggregates: tuple[Aggregate, ...]
    where: Predicate = field(default_factory=AlwaysTrue)  # unbound

    def __post_init__(self) -> None:
        if not 0 < len(self.aggregates) <= MAX_AGGREGATES:
            raise BadRequest(f"ask for 1 to {MAX_AGGREGATES} aggregates")

    def columns(self) -> tuple[str, ...]:
        """Every column the request reads, in a stable order."""
        names = [a.field for a in self.aggregates if a.field] + list(fields(self.where))
        return tuple(dict.fromkeys(n for n in names if n))

    @classmethod
    def parse(cls, doc: Any) -> StatsRequest:
        if not isinstance(doc, Mapping):
            raise BadRequest("the stats request must be a JSON object with 'aggregates'")
        unknown = [k for k in doc if k not in KEYS]
        if unknown:
            # A misspelt key would be a filter silently ignored: refuse it.
            raise BadRequest(f"unknown key {unknown[0]!r} in the stats request: use "
                             f"{', '.join(KEYS)}")
        aggs = doc.get("aggregates")
        if not isinstance(aggs, Sequence) or isinstance(aggs, str):
            raise BadRequest("'aggregates' must be a list, e.g. [\"count\", "
                             "{\"op\": \"top_k\", \"field\": \"food_id\", \"k\": 10}]")
        filters = doc.get("filters") or []
        if not isinstance(filters, Sequence) or isinstance(filters, str):
            raise BadRequest("'filters' must be a list of {field, op, value}")
        where = and_(parse(doc.get("where")),
                     *(Filter.parse(f).to_predicate() for f in filters))
        return cls(tuple(Aggregate.parse(a) for a in aggs), where)


KEYS = ("aggregates", "where", "filters", "version")

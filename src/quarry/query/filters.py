"""Filtered queries over any records table: the JSON shape, checked and typed once.

``{"where": {"city": "Paris", "age": {"gte": 18, "lt": 65}, "tag": ["a", "b"],
"name": {"prefix": "Jo", "not": {"eq": "Joe"}}, "note": {"contains": "x"}}, "fields": [...],
"limit": 100, "cursor": "...", "version": "..."}``

Conditions on different fields are ANDed, as are several operators on one field. A scalar is
``=``, a list is ``IN``. ``eq``/``in``/ranges/``prefix`` can be served by a key (*keyable*);
``not``, ``contains`` and ``regex`` are post-filters. Values are checked against the column
types here, so a bad filter is a 400 naming the field, never an error deep in a scan.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from quarry.errors import BadRequest
from quarry.formats.ipaddr import parse_ip
from quarry.query.model import check_limit, parse_time

MAX_IN = 100_000
DEFAULT_LIMIT = 1000
RANGE_OPS = {"gt": (False, False), "gte": (False, True), "lt": (True, False),
             "lte": (True, True)}  # op -> (is upper bound, inclusive)
OPS = ("eq", "in", "ne", "gt", "gte", "lt", "lte", "range", "prefix", "contains", "regex",
       "not")


@dataclass(frozen=True)
class Cond:
    field: str
    op: str  # in, range, prefix, contains, regex
    values: tuple[Any, ...] = ()  # in: typed values; prefix/contains/regex: (text,)
    lo: Any = None
    hi: Any = None
    lo_incl: bool = True
    hi_incl: bool = True
    negate: bool = False

    @property
    def keyable(self) -> bool:
        return not self.negate and self.op in ("in", "range", "prefix")

    @property
    def is_eq(self) -> bool:
        return self.op == "in" and not self.negate


@dataclass(frozen=True)
class RowCursor:
    """Where a page ended: (chunk position, row) in one version; rows come in that order."""

    version: str
    chunk: int
    row: int

    def encode(self) -> str:
        raw = orjson.dumps(["q", self.version, self.chunk, self.row])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> RowCursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            tag, v, chunk, row = orjson.loads(raw)
            if tag != "q":
                raise ValueError
            return cls(str(v), int(chunk), int(row))
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise BadRequest(f"invalid cursor {text[:40]!r}: pass back next_cursor as "
                             "it was given") from None


@dataclass(frozen=True)
class Query:
    conds: tuple[Cond, ...] = ()
    fields: tuple[str, ...] | None = None  # projection; None: every column
    limit: int = DEFAULT_LIMIT
    cursor: RowCursor | None = None

    @property
    def keyable_fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self.conds if c.keyable)


def coerce(value: Any, logical: str, field: str, *, bound: bool = False) -> Any:
    """A JSON value as the column's comparable type; 400 on a type mismatch."""
    if logical == "int" and type(value) is int:  # the commonest case, before any allocation
        return value
    bad = BadRequest(f"field {field!r} is {logical}; {value!r} is not a valid {logical} value",
                     field=field)
    if value is None or isinstance(value, bool | list | dict):
        raise bad
    if logical == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, float) and (bound or value.is_integer()):
            return value if bound else int(value)
        raise bad
    if logical == "float":
        if isinstance(value, int | float):
            return float(value)
        raise bad
    if logical == "timestamp":
        if not isinstance(value, int | float | str):
            raise bad
        s = parse_time(value, field)
        assert s is not None
        return round(s * 1e6)
    if logical == "ip":
        if not isinstance(value, str):
            raise bad
        return parse_ip(value)
    if not isinstance(value, str):
        raise bad
    return value


def _ops(field: str, spec: Any, logical: str, negate: bool) -> list[Cond]:
    if not isinstance(spec, dict):
        if isinstance(spec, list):
            spec = {"in": spec}
        else:
            spec = {"eq": spec}
    out: list[Cond] = []
    lo = hi = None
    lo_incl = hi_incl = True
    for op, v in spec.items():
        if op not in OPS:
            raise BadRequest(f"unknown operator {op!r} on {field!r}: use one of "
                             f"{', '.join(OPS)}", field=field)
        if op in ("eq", "ne"):
            neg = negate != (op == "ne")
            out.append(Cond(field, "in", (coerce(v, logical, field),), negate=neg))
        elif op == "in":
            if not isinstance(v, list):
                raise BadRequest(f"in on {field!r} takes a list", field=field)
            if len(v) > MAX_IN:
                raise BadRequest(f"IN set on {field!r} has {len(v)} values; at most {MAX_IN}",
                                 field=field, limit=MAX_IN)
            vals = tuple(dict.fromkeys(coerce(x, logical, field) for x in v))
            out.append(Cond(field, "in", vals, negate=negate))
        elif op in RANGE_OPS:
            upper, incl = RANGE_OPS[op]
            if logical == "string":
                raise BadRequest(f"{op} needs a number, time or address field; {field!r} is a "
                                 "string (use prefix)", field=field)
            if upper:
                hi, hi_incl = coerce(v, logical, field, bound=True), incl
            else:
                lo, lo_incl = coerce(v, logical, field, bound=True), incl
        elif op == "range":
            if not (isinstance(v, list) and len(v) == 2) or logical == "string":
                raise BadRequest(f"range on {field!r} takes [low, high] (inclusive) on a "
                                 "number, time or address field", field=field)
            lo = None if v[0] is None else coerce(v[0], logical, field, bound=True)
            hi = None if v[1] is None else coerce(v[1], logical, field, bound=True)
        elif op in ("prefix", "contains", "regex"):
            if logical != "string" or not isinstance(v, str):
                raise BadRequest(f"{op} needs a string field and a string; {field!r} is "
                                 f"{logical}", field=field)
            if op == "regex":
                try:
                    pc.match_substring_regex(pa.array([""]), v)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise BadRequest(f"invalid regex on {field!r}: {e}", field=field) from None
            out.append(Cond(field, op, (v,), negate=negate))
        else:  # not
            out.extend(_ops(field, v, logical, not negate))
    if lo is not None or hi is not None:
        out.append(Cond(field, "range", (), lo, hi, lo_incl, hi_incl, negate))
    return out


def parse_where(where: Any, types: Mapping[str, str]) -> tuple[Cond, ...]:
    if where is None:
        return ()
    if not isinstance(where, dict):
        raise BadRequest("where must be an object of field: condition")
    conds: list[Cond] = []
    for field, spec in where.items():
        if field not in types:
            raise BadRequest(f"unknown field {field!r}: the fields are "
                             f"{', '.join(types)}", field=field)
        conds.extend(_ops(field, spec, types[field], False))
    return tuple(conds)


def parse_fields(raw: Any, types: Mapping[str, str]) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [x.strip() for x in raw.split(",") if x.strip()]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise BadRequest("fields must be a list of field names")
    unknown = [x for x in raw if x not in types]
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}", field=unknown[0])
    return tuple(dict.fromkeys(raw))


def parse_query(body: Mapping[str, Any], types: Mapping[str, str]) -> Query:
    limit = body.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise BadRequest(f"limit must be an integer, got {limit!r}")
    cursor = body.get("cursor")
    return Query(parse_where(body.get("where"), types), parse_fields(body.get("fields"), types),
                 check_limit(limit), RowCursor.decode(cursor) if cursor else None)

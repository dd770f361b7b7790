"""Filtered queries over any records table: the request body, checked and typed once.

``{"where": {...}, "fields": [...], "limit": 100, "cursor": "...", "version": "..."}``; the
``where`` language and its binding are :mod:`quarry.query.predicate`'s. The top-level
conjuncts that are ``=``/``IN``, a range or a prefix can be served by a key (*keyable*); the
rest of the tree is evaluated on the candidate rows.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from quarry.errors import BadRequest
from quarry.query.model import check_limit
from quarry.query.predicate import MAX_IN, AlwaysTrue, Leaf, Predicate, coerce, parse_bound
from quarry.query.visitors import conjuncts, keyable

DEFAULT_LIMIT = 1000


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
    where: Predicate = field(default_factory=AlwaysTrue)  # bound to the version's logical types
    fields: tuple[str, ...] | None = None  # projection; None: every column
    limit: int = DEFAULT_LIMIT
    cursor: RowCursor | None = None

    @property
    def conds(self) -> tuple[Predicate, ...]:
        """The top-level conjuncts: the planner's segment monitors come from these."""
        return conjuncts(self.where)

    @property
    def keyable_fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self.conds if isinstance(c, Leaf) and keyable(c))


def parse_where(where: Any, types: Mapping[str, str]) -> Predicate:
    return parse_bound(where, types)


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


__all__ = ["DEFAULT_LIMIT", "MAX_IN", "Query", "RowCursor", "coerce", "parse_fields",
           "parse_query", "parse_where"]

"""One predicate tree for every records surface: frozen nodes, the ``where`` JSON parser, and
binding to a dataset's logical types.

Modelled on apache/iceberg-python's ``pyiceberg.expressions``: a tree is parsed once, with the
values as the user wrote them (*unbound*, what a shard task carries on the wire), then
*bound* to a schema, which checks every field and coerces every value through the field's
logical type (so a bad filter is a 400 naming the field, never an error deep in a scan).
Visitors (:mod:`quarry.query.visitors`) turn a bound tree into a row mask, chunk pruning by
zone maps and the conjuncts a key can serve.

Semantics are SQL's three-valued logic: a comparison with a null is unknown, ``not`` of
unknown is unknown, and a row is kept only when the whole tree is true. NaN is unordered
(IEEE 754, as in Arrow): no range or equality matches it, so ``not`` of one does.

The ``where`` JSON (backward compatible with the first filter language):

* ``{field: condition, ...}`` — conditions ANDed; ``{"and": [w, ...]}``, ``{"or": [w, ...]}``,
  ``{"not": w}`` combine whole ``where`` objects (those three keys are always combinators);
* a condition is a scalar (``=``), a list (``IN``) or an object of operators, ANDed: ``eq``,
  ``ne``, ``in``, ``gt``, ``gte``, ``lt``, ``lte``, ``range: [lo, hi]`` (inclusive, ``null`` for
  open), ``prefix``, ``contains``, ``regex`` (RE2), ``is_null: true|false``, and ``not: {...}``
  which negates the conjunction of the operators inside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from quarry.errors import BadRequest
from quarry.formats.ipaddr import parse_ip
from quarry.query.model import parse_time

MAX_IN = 100_000
COMBINATORS = ("and", "or", "not")
RANGE_OPS = {"gt": (False, False), "gte": (False, True), "lt": (True, False),
             "lte": (True, True)}  # op -> (is upper bound, inclusive)
OPS = ("eq", "ne", "in", "gt", "gte", "lt", "lte", "range", "prefix", "contains", "regex",
       "is_null", "not")
ORDERED = ("int", "float", "timestamp", "ip")  # logical types ranges apply to


class Predicate:
    """A node of the tree. Subclasses are frozen dataclasses, so trees hash, compare and
    travel on the wire (``quarry.cluster.wire``) as values."""

    __slots__ = ()


@dataclass(frozen=True)
class AlwaysTrue(Predicate):
    pass


@dataclass(frozen=True)
class AlwaysFalse(Predicate):
    pass


@dataclass(frozen=True)
class And(Predicate):
    children: tuple[Predicate, ...]


@dataclass(frozen=True)
class Or(Predicate):
    children: tuple[Predicate, ...]


@dataclass(frozen=True)
class Not(Predicate):
    child: Predicate


class Leaf(Predicate):
    """A condition on one field."""

    __slots__ = ()
    op: ClassVar[str]
    field: str


@dataclass(frozen=True)
class In(Leaf):
    """``field = v`` (one value) or ``field IN (values)``."""

    op: ClassVar[str] = "in"
    field: str
    values: tuple[Any, ...]

    @property
    def is_eq(self) -> bool:
        return len(self.values) == 1


@dataclass(frozen=True)
class Range(Leaf):
    """``lo <(=) field <(=) hi``; a None bound is open. With both open it still needs a value:
    nulls and NaN are outside every range."""

    op: ClassVar[str] = "range"
    field: str
    lo: Any = None
    hi: Any = None
    lo_incl: bool = True
    hi_incl: bool = True


@dataclass(frozen=True)
class Prefix(Leaf):
    op: ClassVar[str] = "prefix"
    field: str
    text: str


@dataclass(frozen=True)
class Contains(Leaf):
    op: ClassVar[str] = "contains"
    field: str
    text: str


@dataclass(frozen=True)
class Regex(Leaf):
    op: ClassVar[str] = "regex"
    field: str
    pattern: str


@dataclass(frozen=True)
class IsNull(Leaf):
    op: ClassVar[str] = "is_null"
    field: str


NODE_TYPES: tuple[type[Predicate], ...] = (AlwaysTrue, AlwaysFalse, And, Or, Not, In, Range,
                                           Prefix, Contains, Regex, IsNull)


def and_(*ps: Predicate) -> Predicate:
    """The conjunction, flattened, without constants where they decide nothing."""
    out: list[Predicate] = []
    for p in ps:
        if isinstance(p, AlwaysFalse):
            return p
        if isinstance(p, And):
            out.extend(p.children)
        elif not isinstance(p, AlwaysTrue):
            out.append(p)
    if not out:
        return AlwaysTrue()
    return out[0] if len(out) == 1 else And(tuple(out))


def or_(*ps: Predicate) -> Predicate:
    out: list[Predicate] = []
    for p in ps:
        if isinstance(p, AlwaysTrue):
            return p
        if isinstance(p, Or):
            out.extend(p.children)
        elif not isinstance(p, AlwaysFalse):
            out.append(p)
    if not out:
        return AlwaysFalse()
    return out[0] if len(out) == 1 else Or(tuple(out))


def not_(p: Predicate) -> Predicate:
    # not not p is p in three-valued logic too; constants are never unknown.
    if isinstance(p, Not):
        return p.child
    if isinstance(p, AlwaysTrue):
        return AlwaysFalse()
    if isinstance(p, AlwaysFalse):
        return AlwaysTrue()
    return Not(p)


# -- parsing ---------------------------------------------------------------------------------

def parse(where: Any) -> Predicate:
    """The unbound tree of a ``where`` JSON value (None: every row)."""
    if where is None:
        return AlwaysTrue()
    if not isinstance(where, Mapping):
        raise BadRequest("where must be an object of field: condition (or and/or/not)")
    parts: list[Predicate] = []
    for key, spec in where.items():
        if not isinstance(key, str):
            raise BadRequest("where keys must be field names")
        if key in ("and", "or"):
            if not isinstance(spec, list):
                raise BadRequest(f"{key} takes a list of where objects")
            kids = [parse(w) for w in spec]
            parts.append(and_(*kids) if key == "and" else or_(*kids))
        elif key == "not":
            parts.append(not_(parse(spec)))
        else:
            parts.append(_field(key, spec))
    return and_(*parts)


def _field(field: str, spec: Any) -> Predicate:
    if isinstance(spec, list):
        spec = {"in": spec}
    elif not isinstance(spec, Mapping):
        spec = {"eq": spec}
    parts: list[Predicate] = []
    for op, v in spec.items():
        if op not in OPS:
            raise BadRequest(f"unknown operator {op!r} on {field!r}: use one of "
                             f"{', '.join(OPS)}", field=field)
        if op in ("eq", "ne"):
            if v is None or isinstance(v, list | dict):
                raise BadRequest(f"{op} on {field!r} takes one value (is_null tests nulls)",
                                 field=field)
            p: Predicate = In(field, (v,))
            parts.append(not_(p) if op == "ne" else p)
        elif op == "in":
            if not isinstance(v, list):
                raise BadRequest(f"in on {field!r} takes a list", field=field)
            if len(v) > MAX_IN:
                raise BadRequest(f"IN set on {field!r} has {len(v)} values; at most {MAX_IN}",
                                 field=field, limit=MAX_IN)
            parts.append(In(field, tuple(v)))
        elif op in RANGE_OPS:
            upper, incl = RANGE_OPS[op]
            if v is None:
                raise BadRequest(f"{op} on {field!r} takes a value", field=field)
            parts.append(Range(field, hi=v, hi_incl=incl) if upper
                         else Range(field, lo=v, lo_incl=incl))
        elif op == "range":
            if not (isinstance(v, list) and len(v) == 2):
                raise BadRequest(f"range on {field!r} takes [low, high] (inclusive; null for "
                                 "open)", field=field)
            parts.append(Range(field, v[0], v[1]))
        elif op in ("prefix", "contains", "regex"):
            if not isinstance(v, str):
                raise BadRequest(f"{op} on {field!r} takes a string", field=field)
            parts.append(Prefix(field, v) if op == "prefix" else
                         Contains(field, v) if op == "contains" else Regex(field, v))
        elif op == "is_null":
            if not isinstance(v, bool):
                raise BadRequest(f"is_null on {field!r} takes true or false", field=field)
            parts.append(IsNull(field) if v else Not(IsNull(field)))
        else:  # not: the conjunction of the operators inside, negated as a whole
            parts.append(not_(_field(field, v)))
    return and_(*parts)


# -- binding ---------------------------------------------------------------------------------

def coerce(value: Any, logical: str, field: str, *, bound: bool = False) -> Any:
    """A JSON value as the comparable form of the field's logical type: int, float, str,
    bool, µs since the epoch (timestamp), 16 bytes (ip); 400 naming the field otherwise.
    ``bound``: a range end, where an int field takes a float too."""
    if logical == "int" and type(value) is int and -(1 << 63) <= value < (1 << 63):
        return value  # the commonest case, before any allocation
    bad = BadRequest(f"field {field!r} is {logical}; {value!r} is not a valid {logical} value",
                     field=field)
    if logical == "bool":
        if isinstance(value, bool):
            return value
        raise bad
    if value is None or isinstance(value, bool | list | dict):
        raise bad
    if logical == "int":
        if isinstance(value, int):
            if not -(1 << 63) <= value < (1 << 63):
                raise BadRequest(f"field {field!r} is int; {value} is out of its range",
                                 field=field)
            return value
        if isinstance(value, float) and math.isfinite(value) and (bound or value.is_integer()):
            return value if bound else int(value)
        raise bad
    if logical == "float":
        if isinstance(value, int | float) and not (isinstance(value, float)
                                                   and math.isnan(value)):
            return float(value)
        raise bad
    if logical == "timestamp":
        if not isinstance(value, int | float | str) or (isinstance(value, str)
                                                        and not value.strip()):
            raise bad
        try:
            s = parse_time(value, f"field {field!r}")
        except BadRequest as e:
            raise BadRequest(e.detail, field=field) from None
        if s is None:
            raise bad
        return round(s * 1e6)
    if logical == "ip":
        if not isinstance(value, str):
            raise bad
        try:
            return parse_ip(value)
        except BadRequest as e:
            raise BadRequest(f"field {field!r}: {e.detail}", field=field) from None
    if not isinstance(value, str):
        raise bad
    return value


def _logical(field: str, types: Mapping[str, str]) -> str:
    t = types.get(field)
    if t is None:
        raise BadRequest(f"unknown field {field!r}: the fields are {', '.join(types)}",
                         field=field)
    return t


def _tighter_lo(a: tuple[Any, bool], b: tuple[Any, bool]) -> tuple[Any, bool]:
    if a[0] is None:
        return b
    if b[0] is None or a[0] > b[0]:
        return a
    if b[0] > a[0]:
        return b
    return a[0], a[1] and b[1]


def _tighter_hi(a: tuple[Any, bool], b: tuple[Any, bool]) -> tuple[Any, bool]:
    if a[0] is None:
        return b
    if b[0] is None or a[0] < b[0]:
        return a
    if b[0] < a[0]:
        return b
    return a[0], a[1] and b[1]


def _merge_ranges(parts: Sequence[Predicate]) -> list[Predicate]:
    """Ranges on one field in one conjunction become their intersection: one interval a key
    can serve, and ``{"gt": 5, "gte": 0}`` is plainly ``> 5``."""
    out: list[Predicate] = []
    seen: dict[str, int] = {}
    for p in parts:
        if isinstance(p, Range) and p.field in seen:
            i = seen[p.field]
            q = out[i]
            assert isinstance(q, Range)
            lo, lo_incl = _tighter_lo((q.lo, q.lo_incl), (p.lo, p.lo_incl))
            hi, hi_incl = _tighter_hi((q.hi, q.hi_incl), (p.hi, p.hi_incl))
            out[i] = Range(p.field, lo, hi, lo_incl, hi_incl)
        else:
            if isinstance(p, Range):
                seen[p.field] = len(out)
            out.append(p)
    return out


def bind(p: Predicate, types: Mapping[str, str]) -> Predicate:
    """``p`` checked against ``types`` (field -> logical type), values coerced."""
    if isinstance(p, AlwaysTrue | AlwaysFalse):
        return p
    if isinstance(p, And):
        return and_(*_merge_ranges([bind(c, types) for c in p.children]))
    if isinstance(p, Or):
        return or_(*[bind(c, types) for c in p.children])
    if isinstance(p, Not):
        return not_(bind(p.child, types))
    assert isinstance(p, Leaf)
    f = p.field
    logical = _logical(f, types)
    if isinstance(p, In):
        if len(p.values) > MAX_IN:
            raise BadRequest(f"IN set on {f!r} has {len(p.values)} values; at most {MAX_IN}",
                             field=f, limit=MAX_IN)
        return In(f, tuple(dict.fromkeys(coerce(v, logical, f) for v in p.values)))
    if isinstance(p, Range):
        if logical not in ORDERED:
            raise BadRequest(f"ranges need a number, time or address field; {f!r} is "
                             f"{logical}" + (" (use prefix)" if logical == "string" else ""),
                             field=f)
        lo = None if p.lo is None else coerce(p.lo, logical, f, bound=True)
        hi = None if p.hi is None else coerce(p.hi, logical, f, bound=True)
        return replace(p, lo=lo, hi=hi)
    if isinstance(p, Prefix | Contains | Regex):
        if logical != "string":
            raise BadRequest(f"{p.op} needs a string field; {f!r} is {logical}", field=f)
        if isinstance(p, Regex):
            import pyarrow as pa  # here: the CLI parses trees without loading Arrow
            import pyarrow.compute as pc

            try:
                pc.match_substring_regex(pa.array([""]), p.pattern)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise BadRequest(f"invalid regex on {f!r}: {e}", field=f) from None
        return p
    if isinstance(p, IsNull):
        return p
    raise TypeError(f"not a predicate: {p!r}")


def parse_bound(where: Any, types: Mapping[str, str]) -> Predicate:
    return bind(parse(where), types)


def fields(p: Predicate) -> tuple[str, ...]:
    """Every field the tree reads, in order of first mention."""
    out: dict[str, None] = {}

    def walk(q: Predicate) -> None:
        if isinstance(q, Leaf):
            out[q.field] = None
        elif isinstance(q, And | Or):
            for c in q.children:
                walk(c)
        elif isinstance(q, Not):
            walk(q.child)

    walk(p)
    return tuple(out)

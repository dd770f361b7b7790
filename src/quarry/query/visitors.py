"""What a bound predicate tree turns into: a row mask, a chunk's verdict from its zone maps,
the conjuncts a key can serve, and a short text for ``explain``.

As in pyiceberg's ``expressions/visitors.py``, each is a small walk over the same frozen tree,
so pruning, key matching and row evaluation cannot disagree about what a filter means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.query.predicate import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    Contains,
    In,
    IsNull,
    Leaf,
    Not,
    Or,
    Predicate,
    Prefix,
    Range,
    Regex,
)

Column = Callable[[str], "pa.Array | pa.ChunkedArray"]
KEYABLE = (In, Range, Prefix)
_NULL = pa.scalar(None, pa.bool_())


# -- row mask --------------------------------------------------------------------------------

def _single(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.Array):
        return col
    if col.num_chunks == 1:
        return col.chunk(0)
    if pa.types.is_dictionary(col.type):
        # Chunks may carry different dictionaries: decode rather than unify.
        return pa.concat_arrays([c.dictionary_decode() for c in col.chunks])
    return col.combine_chunks()


def _comparable(arr: pa.Array, logical: str) -> pa.Array:
    """The column in the form bound values compare with: µs int64 for times, int64 for ints
    stored narrower or as booleans, float64 for floats."""
    t = arr.type
    if logical == "timestamp" and pa.types.is_timestamp(t):
        if t.unit != "us":
            arr = arr.cast(pa.timestamp("us", t.tz), safe=False)
        return arr.cast(pa.int64())
    if logical == "int" and t != pa.int64() and (pa.types.is_integer(t) or pa.types.is_boolean(t)):
        return arr.cast(pa.int64())
    if logical == "float" and t != pa.float64() and not pa.types.is_dictionary(t):
        return arr.cast(pa.float64())
    return arr


def _scalar(v: Any, arr: pa.Array) -> pa.Scalar:
    t = arr.type
    if pa.types.is_fixed_size_binary(t):
        return pa.scalar(v, t)
    if pa.types.is_floating(t):
        return pa.scalar(float(v), pa.float64())
    return pa.scalar(v)


def _leaf(p: Leaf, arr: pa.Array, logical: str) -> pa.Array:
    if isinstance(p, IsNull):
        return pc.is_null(arr)
    if pa.types.is_dictionary(arr.type):
        # Once per distinct value, then mapped to rows (a null index stays unknown).
        dm = _leaf(p, _comparable(arr.dictionary, logical), logical)
        return pc.take(dm, arr.indices)
    arr = _comparable(arr, logical)
    if isinstance(p, In):
        t = arr.type if not pa.types.is_string(arr.type) else pa.string()
        m = pc.is_in(arr, value_set=pa.array(list(p.values), t))
        # is_in calls a null "not in the set"; SQL calls it unknown.
        return pc.if_else(pc.is_valid(arr), m, _NULL) if arr.null_count else m
    if isinstance(p, Range):
        parts = []
        if p.lo is not None:
            lo = _scalar(p.lo, arr)
            parts.append(pc.greater_equal(arr, lo) if p.lo_incl else pc.greater(arr, lo))
        if p.hi is not None:
            hi = _scalar(p.hi, arr)
            parts.append(pc.less_equal(arr, hi) if p.hi_incl else pc.less(arr, hi))
        if not parts:  # both ends open: any value but NaN; null stays unknown
            return pc.equal(arr, arr)
        return parts[0] if len(parts) == 1 else pc.and_kleene(parts[0], parts[1])
    if isinstance(p, Prefix):
        return pc.starts_with(arr, p.text)
    if isinstance(p, Contains):
        return pc.match_substring(arr, p.text)
    if isinstance(p, Regex):
        return pc.match_substring_regex(arr, p.pattern)
    raise TypeError(f"not a leaf: {p!r}")


def row_mask(p: Predicate, column: Column, n: int, types: Mapping[str, str]) -> pa.Array:
    """The tree's value per row, in SQL's three-valued logic (null: unknown)."""
    if isinstance(p, AlwaysTrue):
        return pa.array(np.ones(n, dtype=bool))
    if isinstance(p, AlwaysFalse):
        return pa.array(np.zeros(n, dtype=bool))
    if isinstance(p, And | Or):
        op = pc.and_kleene if isinstance(p, And) else pc.or_kleene
        out = row_mask(p.children[0], column, n, types)
        for c in p.children[1:]:
            out = op(out, row_mask(c, column, n, types))
        return out
    if isinstance(p, Not):
        return pc.invert(row_mask(p.child, column, n, types))
    assert isinstance(p, Leaf)
    return _leaf(p, _single(column(p.field)), types[p.field])


def mask(p: Predicate, column: Column, n: int, types: Mapping[str, str]) -> np.ndarray:
    """Rows where the tree is true (unknown counts as false), as a numpy bool array."""
    if isinstance(p, AlwaysTrue):
        return np.ones(n, dtype=bool)
    m = pc.fill_null(row_mask(p, column, n, types), False)
    return np.asarray(m.to_numpy(zero_copy_only=False), dtype=bool)


# -- zone maps -------------------------------------------------------------------------------

def _bound(v: Any, logical: str) -> Any:
    return v.hex() if logical == "ip" and isinstance(v, bytes) else v


def _zone(zone: Sequence[Any] | None) -> tuple[Any, Any] | None:
    """A zone as (min, max), None for an open end: a manifest writes an infinite float as
    null (JSON has no inf), so null means "unbounded", never "empty"."""
    if zone is None or len(zone) != 2:
        return None
    lo, hi = zone
    if any(isinstance(v, float) and math.isnan(v) for v in (lo, hi)):
        return None
    return lo, hi


def _leaf_may(p: Leaf, zones: Mapping[str, Sequence[Any]], logical: str) -> bool:
    z = _zone(zones.get(p.field))
    if z is None:
        return True
    lo, hi = z
    if isinstance(p, In):
        return any((lo is None or lo <= b) and (hi is None or b <= hi)
                   for b in (_bound(v, logical) for v in p.values))
    if isinstance(p, Range):
        a, b = _bound(p.lo, logical), _bound(p.hi, logical)
        if a is not None and hi is not None and (hi < a or (hi == a and not p.lo_incl)):
            return False
        return not (b is not None and lo is not None and (lo > b or (lo == b and not p.hi_incl)))
    return True


def may_match(p: Predicate, zones: Mapping[str, Sequence[Any]],
              types: Mapping[str, str]) -> bool:
    """False only when the chunk's zone maps prove no row makes the tree true. A zone covers
    the values that are not null and not NaN, so ``not`` proves nothing here (its operand
    may be false, or unknown, on rows the zone does not describe)."""
    if isinstance(p, AlwaysFalse):
        return False
    if isinstance(p, And):
        return all(may_match(c, zones, types) for c in p.children)
    if isinstance(p, Or):
        return any(may_match(c, zones, types) for c in p.children)
    if isinstance(p, Leaf):
        try:
            return _leaf_may(p, zones, types.get(p.field, ""))
        except TypeError:  # a zone of another type than the bound (an old manifest)
            return True
    return True


# -- keys ------------------------------------------------------------------------------------

def conjuncts(p: Predicate) -> tuple[Predicate, ...]:
    """The top-level AND's parts (a key can serve only these)."""
    if isinstance(p, AlwaysTrue):
        return ()
    return p.children if isinstance(p, And) else (p,)


def keyable(p: Predicate) -> bool:
    """Whether a key's segment monitor can serve ``p``: ``=``/``IN``, a range, a prefix."""
    return isinstance(p, KEYABLE)


# -- text ------------------------------------------------------------------------------------

def describe(p: Predicate) -> str:
    """A short text of a (residual) predicate for ``explain``: ``age range``, ``not a in``."""
    if isinstance(p, AlwaysTrue):
        return "true"
    if isinstance(p, AlwaysFalse):
        return "false"
    if isinstance(p, Not):
        return f"not {describe(p.child)}"
    if isinstance(p, And | Or):
        word = " and " if isinstance(p, And) else " or "
        return "(" + word.join(describe(c) for c in p.children) + ")"
    assert isinstance(p, Leaf)
    return f"{p.field} {p.op}"

"""Key choice in the style of HPCC Roxie's segment monitors.

Each keyable conjunct of the predicate tree (``=``/``IN``, a range, a prefix) is a segment
monitor on its field; a field without one is *wild*. A key scores the bytes of the leading
fields the query fixes: an ``=``/``IN`` field adds its width and lets the next field count; a
range or prefix adds its width and ends the run. The best score wins; ties go to the key with
the fewest trailing (unused) fields, and a key that serves every keyable conjunct with no
trailing field is perfect: the search stops there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from quarry.index.keys import KeySpec
from quarry.query.predicate import Leaf, Predicate
from quarry.query.visitors import keyable

WIDTH = {"int": 8, "float": 8, "timestamp": 8, "ip": 16, "string": 8}


@dataclass(frozen=True)
class KeyScore:
    spec: KeySpec
    score: int  # keyed bytes
    matched: tuple[str, ...]
    trailing: int
    perfect: bool

    def better_than(self, other: KeyScore | None) -> bool:
        return other is None or (self.score, -self.trailing) > (other.score, -other.trailing)


def primary(conds: Iterable[Predicate]) -> dict[str, Leaf]:
    """One keyable conjunct per field, ``=``/``IN`` before a range before a prefix (the
    others on that field are post-filtered)."""
    rank = {"in": 0, "range": 1, "prefix": 2}
    out: dict[str, Leaf] = {}
    for c in conds:
        if keyable(c):
            assert isinstance(c, Leaf)
            if c.field not in out or rank[c.op] < rank[out[c.field].op]:
                out[c.field] = c
    return out


def score_key(spec: KeySpec, by_field: Mapping[str, Leaf], types: Mapping[str, str]) -> KeyScore:
    matched: list[str] = []
    score = 0
    for f in spec.fields:
        c = by_field.get(f)
        if c is None:
            break
        matched.append(f)
        score += WIDTH.get(types.get(f, ""), 8)
        if c.op != "in":
            break
    trailing = len(spec.fields) - len(matched)
    perfect = bool(matched) and set(matched) == set(by_field) and trailing == 0
    return KeyScore(spec, score, tuple(matched), trailing, perfect)


def choose(specs: Sequence[KeySpec], conds: Iterable[Predicate],
           types: Mapping[str, str]) -> tuple[KeyScore | None, int]:
    """The best key for the conditions (None: scan) and how many keys were scored."""
    by_field = primary(conds)
    best: KeyScore | None = None
    scored = 0
    if not by_field:
        return None, 0
    for spec in specs:
        s = score_key(spec, by_field, types)
        scored += 1
        if s.score and s.better_than(best):
            best = s
            if s.perfect:
                break
    return best, scored

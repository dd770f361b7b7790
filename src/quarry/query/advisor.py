"""The workload (which fields queries fix, aged over time) and the keys it asks for.

Roxie's greedy choice: score each field by how often it is queried, weighted by its size;
take the query shape whose fields score highest, build a key on its fields ordered by score
(range fields last: a range ends the keyed part), zero those fields' scores and repeat, until
the memory budget or the shapes run out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from quarry.index.keys import KeySpec
from quarry.query.planner import WIDTH, primary, score_key
from quarry.query.predicate import In, Leaf, Predicate, Range

KEY_BYTES_PER_ROW = 12  # uint64 composite + uint32 row


@dataclass(frozen=True)
class Shape:
    """The keyable fields of a query: fixed by ``=``/``IN``, and bounded by a range/prefix."""

    eq: frozenset[str]
    ranged: frozenset[str]

    @property
    def fields(self) -> frozenset[str]:
        return self.eq | self.ranged

    @classmethod
    def of(cls, conds: Iterable[Predicate]) -> Shape:
        by = primary(conds)
        return cls(frozenset(f for f, c in by.items() if c.op == "in"),
                   frozenset(f for f, c in by.items() if c.op != "in"))

    def to_json(self) -> dict[str, list[str]]:
        return {"eq": sorted(self.eq), "range": sorted(self.ranged)}


@dataclass(frozen=True)
class Suggestion:
    spec: KeySpec
    weight: float  # aged count of the queries it serves
    bytes: int  # estimated size


class Workload:
    """Aged counts of query shapes per dataset: each count halves every ``half_life`` s."""

    def __init__(self, half_life: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.half_life = half_life
        self.clock = clock
        self._shapes: dict[str, dict[Shape, tuple[float, float]]] = {}
        self._versions: dict[str, str] = {}  # dataset -> last version queried
        self._lock = threading.Lock()

    def _aged(self, w: float, t: float, now: float) -> float:
        return float(w * 0.5 ** ((now - t) / self.half_life))

    def record(self, dataset: str, version: str, shape: Shape, n: float = 1.0) -> None:
        if not shape.fields:
            return
        now = self.clock()
        with self._lock:
            d = self._shapes.setdefault(dataset, {})
            w, t = d.get(shape, (0.0, now))
            d[shape] = (self._aged(w, t, now) + n, now)
            self._versions[dataset] = version

    def shapes(self, dataset: str) -> dict[Shape, float]:
        now = self.clock()
        with self._lock:
            return {s: self._aged(w, t, now) for s, (w, t) in self._shapes.get(dataset, {}).items()}

    def fields(self, dataset: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s, w in self.shapes(dataset).items():
            for f in s.fields:
                out[f] = out.get(f, 0.0) + w
        return out

    def datasets(self) -> dict[str, str]:
        with self._lock:
            return dict(self._versions)


def suggest(shapes: Mapping[Shape, float], types: Mapping[str, str], rows: int, budget: int,
            existing: Sequence[KeySpec] = (), min_weight: float = 2.0) -> list[Suggestion]:
    """Keys to build for the workload, best first, within ``budget`` bytes.

    Shapes some existing key already serves perfectly are skipped (their fields still zeroed).
    Shapes whose aged weight is under ``min_weight`` no longer pay for a key.
    """
    live = {s: w for s, w in shapes.items() if w >= min_weight and s.fields}
    score: dict[str, float] = {}
    for s, w in live.items():
        for f in s.fields:
            score[f] = score.get(f, 0.0) + w * WIDTH.get(types.get(f, ""), 8)
    out: list[Suggestion] = []
    left = budget
    size = rows * KEY_BYTES_PER_ROW
    while live:
        best = max(live, key=lambda s: (sum(score.get(f, 0.0) for f in s.fields), live[s],
                                        sorted(s.fields)))
        if sum(score.get(f, 0.0) for f in best.fields) <= 0:
            break
        weight = live.pop(best)
        eq = sorted(best.eq, key=lambda f: (-score.get(f, 0.0), f))
        ranged = sorted(best.ranged, key=lambda f: (-score.get(f, 0.0), f))[:1]
        spec = KeySpec(tuple(eq + ranged))
        for f in best.fields:
            score[f] = 0.0
        if any(serves(k, best, types) for k in [*existing, *(s.spec for s in out)]):
            continue
        if size > left:
            continue
        left -= size
        # Shapes this key also serves count towards its weight.
        weight += sum(w for s, w in live.items() if serves(spec, s, types))
        out.append(Suggestion(spec, weight, size))
    return out


def serves(spec: KeySpec, shape: Shape, types: Mapping[str, str]) -> bool:
    """Whether ``spec``'s leading fields cover every keyable field of ``shape``."""
    conds: dict[str, Leaf] = {f: In(f, ()) for f in shape.eq}
    conds |= {f: Range(f) for f in shape.ranged}
    return set(score_key(spec, conds, types).matched) == shape.fields

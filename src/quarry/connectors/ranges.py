"""Splitting the item-id space into ranges, one per worker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IdRange:
    """Ids ``begin <= id < end``; ``end`` None is open (until the API has no more)."""

    index: int
    begin: int
    end: int | None

    def __contains__(self, item_id: int) -> bool:
        return self.begin <= item_id and (self.end is None or item_id < self.end)

    @property
    def size(self) -> int | None:
        return None if self.end is None else self.end - self.begin


def split(begin: int, end: int | None, n: int) -> tuple[IdRange, ...]:
    """``n`` contiguous, disjoint ranges covering ``[begin, end)`` with sizes differing by at
    most one id, so each id belongs to exactly one range. An open space cannot be split."""
    if end is None:
        return (IdRange(0, begin, None),)
    total = end - begin
    n = max(1, min(n, total)) if total > 0 else 1
    out = []
    start = begin
    for i in range(n):
        stop = start + total // n + (1 if i < total % n else 0)
        out.append(IdRange(i, start, stop))
        start = stop
    return tuple(out)

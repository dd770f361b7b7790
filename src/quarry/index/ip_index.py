"""Per-chunk IP index: the sorted composite ``key << 32 | row`` (8 bytes a record).

``key`` is the 32-bit IP key (the IPv4 address, or a hash of an IPv6 one). Sorting the
composite groups each address's rows and keeps them in row order, which in a time-sorted
chunk is time order, so "rows of IP k between rows r0 and r1" is two binary searches, for any
number of IPs at once. A chunk is *exact* when all its keys are IPv4 addresses; otherwise a
hit may be a hash collision and callers check the stored address.
"""

from __future__ import annotations

import sys

import numpy as np

from quarry.formats.ipaddr import keys32

ROW_BITS = np.uint64(32)
ROW_MASK = np.uint64(0xFFFFFFFF)
MAX_ROWS = 1 << 32
# Where the row (low 32 bits) of a uint64 composite sits in its uint32 view.
_LOW_HALF = 0 if sys.byteorder == "little" else 1
# Up to this many ranges, rows are gathered slice by slice (a Python step per range, not per
# row), which copies memory at full speed; beyond, one vectorised gather.
_SLICE_RANGES = 256


def build(ips: np.ndarray) -> tuple[np.ndarray, bool]:
    """The sorted composite array of a chunk's ``(n, 16)`` addresses, and whether it is exact."""
    n = len(ips)
    if n >= MAX_ROWS:
        raise ValueError("a chunk holds fewer than 2^32 rows")
    key, is_v4 = keys32(ips)
    comp = (key.astype(np.uint64) << ROW_BITS) | np.arange(n, dtype=np.uint64)
    comp.sort()
    return comp, bool(is_v4.all())


class IpIndex:
    def __init__(self, comp: np.ndarray, exact: bool) -> None:
        self.comp = comp
        self.exact = exact

    def ranges(self, keys: np.ndarray, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[lo, hi)`` in the index of each key's rows within rows ``[r0, r1)``."""
        k = keys.astype(np.uint64) << ROW_BITS
        targets = np.concatenate((k | np.uint64(r0), k | np.uint64(r1)))
        # Sorted targets let numpy start each binary search where the last one ended:
        # about half the cache misses on a large index.
        order = np.argsort(targets, kind="stable")
        found = np.empty(len(targets), dtype=np.int64)
        found[order] = np.searchsorted(self.comp, targets[order], "left")
        return found[: len(k)], found[len(k):]

    def rows(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The rows (uint32) of all ranges, concatenated (each range in row order)."""
        # The row is the low half of each composite: read it through a strided uint32 view
        # instead of masking and casting every entry (half the bytes written, one pass).
        low = self.comp.view(np.uint32)[_LOW_HALF::2]
        lens = hi - lo
        nonempty = np.flatnonzero(lens)
        if len(nonempty) <= _SLICE_RANGES:
            # Few ranges (a query's addresses): one contiguous copy each, no index arrays.
            if len(nonempty) == 0:
                return np.zeros(0, dtype=np.uint32)
            los, his = lo[nonempty].tolist(), hi[nonempty].tolist()
            if len(los) == 1:
                return np.array(low[los[0]:his[0]])
            return np.concatenate([low[a:b] for a, b in zip(los, his, strict=True)])
        total = int(lens.sum())
        starts = np.cumsum(lens) - lens
        pos = np.arange(total, dtype=np.int64) + np.repeat(lo - starts, lens)
        out: np.ndarray = low[pos]
        return out

    def key_counts(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Distinct keys among rows ``[r0, r1)`` with their row counts, in O(n) (no sort)."""
        rows = self.comp & ROW_MASK
        sel = self.comp if (r0 == 0 and r1 >= len(rows)) else self.comp[
            (rows >= np.uint64(r0)) & (rows < np.uint64(r1))]
        if len(sel) == 0:
            return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
        keys = (sel >> ROW_BITS).astype(np.uint32)
        change = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate(([0], change))
        counts = np.diff(np.append(starts, len(keys)))
        return keys[starts], counts.astype(np.int64)

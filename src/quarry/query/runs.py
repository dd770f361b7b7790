"""Merging a query's per-address row runs into one ascending list of rows.

The IP index gives, for each query address, the rows of a window that hold it, ascending (one
*run* per address); an answer lists rows in row order, which is time order within a chunk.
Each record carries its *owner*, the index of its address among the query's addresses, in the
smallest unsigned type that holds the number of addresses (``owner_dtype``): an answer can have
millions of records, and a byte each is a quarter of the memory traffic of an int32.
"""

from __future__ import annotations

import numpy as np

# Above one hit per this many rows of the window, scattering owners over the window and
# reading them back (about 0.5 ns a row of the window plus a few ns a hit) beats sorting the
# hits (a merge of the runs, ~13 ns a hit at 100 runs), measured on the bench/iplog.py data.
DENSE = 16


def owner_dtype(n: int) -> np.dtype[np.unsignedinteger]:
    """The smallest unsigned type holding ``0..n``: owners of ``n`` addresses, plus one (the
    dense merge stores ``owner + 1`` so that 0 means "no hit")."""
    if n <= 0xFF:
        return np.dtype(np.uint8)
    if n <= 0xFFFF:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def merge_runs(rows: np.ndarray, owner: np.ndarray, r0: int, r1: int,
               runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (int64, ascending) and their owners, from ``runs`` ascending runs of rows.

    ``rows`` lie in ``[r0, r1)`` and are distinct (a row holds one address); ``owner`` has an
    unsigned type from ``owner_dtype`` (or any type able to hold one more than its maximum).
    """
    if runs <= 1 or len(rows) <= 1:
        return rows.astype(np.int64), owner
    span = r1 - r0
    if len(rows) * DENSE > span:
        # Dense: instead of a sort, each hit writes its owner + 1 into a slot per row of the
        # window, read back in row order. Slots are a byte (or two), not an int32 or int64:
        # zeroing and reading back the window's slots is the cost that remains.
        slot = np.zeros(span, dtype=owner.dtype)
        # Offsets made as intp in the subtraction itself: indexing with uint32 would first
        # copy the index to intp, which costs more than the scatter.
        slot[np.subtract(rows, r0, dtype=np.intp)] = owner + 1
        where = np.flatnonzero(slot != 0)
        owners = slot.take(where)
        owners -= 1
        where += r0
        return where, owners
    # Sparse: one sort of (row, owner) packed into 64 bits; the stable sort (timsort) finds
    # the runs and merges them, several times faster here than numpy's default quicksort.
    shift = np.uint64(8 * owner.dtype.itemsize)
    packed = np.sort((rows.astype(np.uint64) << shift) | owner.astype(np.uint64), kind="stable")
    mask = np.uint64((1 << int(shift)) - 1)
    return (packed >> shift).astype(np.int64), (packed & mask).astype(owner.dtype)

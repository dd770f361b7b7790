"""Payload keys: a copy of every column in a declared key's order (Roxie's payload keys).

A point lookup through a key still fetches each matching row's columns from wherever the row
lies: at 20 M rows, ~20 rows x 6 columns are ~120 cache and TLB misses, and that, not Python,
is most of its cost. A payload key stores the rows sorted by the key (equal keys in row
order), so the rows of one value are one contiguous slice of every column: the answer is a
zero-copy ``Table.slice``. It costs a second copy of the data in memory, so it is made only
within ``QUARRY_PAYLOAD_BUDGET`` (bytes or K/M/G; default an eighth of RAM: Roxie's keys are
in memory), for declared keys, by
``Engine.warm`` or in the background on first use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from quarry.budget import budget_from_env, ram_share
from quarry.datasets.gather import VersionColumns
from quarry.index.keys import ChunkKey

# Payload keys copy the data: by default they may take this share of RAM (per process).
PAYLOAD_FRACTION = 0.125
BATCH = 1 << 20  # rows gathered at a time while copying (bounds the temporary arrays)


def default_payload_budget() -> int:
    return budget_from_env("QUARRY_PAYLOAD_BUDGET", ram_share(PAYLOAD_FRACTION))


@dataclass(frozen=True)
class Payload:
    table: pa.Table  # every column, rows in the key's order (equal keys in row order)
    rows: np.ndarray  # each payload row's version-wide row number

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes + self.rows.nbytes)


def tie_order(comp: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """An order of a sorted key's entries that also sorts equal composites by row."""
    bits = int(comp[-1]).bit_length() if len(comp) else 0
    rbits = int(rows.max()).bit_length() if len(rows) else 0
    if bits + rbits <= 64:
        # One combined number: nearly sorted already, so timsort only fixes the runs.
        both = (comp << np.uint64(rbits)) | rows.astype(np.uint64)
        return np.argsort(both, kind="stable")
    return np.lexsort((rows, comp))


def build_payload(key: ChunkKey, cols: VersionColumns) -> Payload:
    rows = key.rows.astype(np.int64)
    rows = rows[tie_order(key.comp, rows)]
    parts = [cols.take(rows[s:s + BATCH], None, ordered=False)
             for s in range(0, len(rows), BATCH)]
    table = pa.concat_tables(parts) if parts else cols.take(rows, None)
    dt = np.uint32 if cols.rows < 1 << 32 else np.int64
    return Payload(table, rows.astype(dt))


class Budget:
    """Bytes payload keys may hold, shared by every version an engine has open."""

    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.total:
                return False
            self.used += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.used -= n

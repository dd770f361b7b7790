"""Line offsets of a text file: dense (one offset per line) or sparse (one per block of lines).

Built by a vectorised newline scan over fixed-size blocks, so memory stays bounded whatever the
file size. The on-disk form is a raw little-endian array, memory-mapped for reading.

Line semantics: lines end with ``\\n``; a ``\\r`` right before it belongs to the ending; a UTF-8
BOM at the start of the file is not part of line 1; a last line without ``\\n`` is still a line;
an empty file has no lines.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import numpy as np

from quarry.errors import BadRequest

BOM = b"\xef\xbb\xbf"
SCAN_BLOCK = 16 << 20
SPARSE_EVERY = 64
PARALLEL_SCAN_ABOVE = 1 << 20
# Above this size "auto" picks the sparse mode: a dense index would cost ~8% of the file.
AUTO_SPARSE_ABOVE = 32 << 30

Mode = Literal["dense", "sparse"]


@dataclass(frozen=True)
class LineIndexInfo:
    """What a reader needs besides the offsets blob; stored in the snapshot manifest."""

    mode: Mode
    dtype: str  # "<u4" or "<u8"
    lines: int
    data_size: int
    every: int = 1  # sparse: one offset per ``every`` lines

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "dtype": self.dtype, "lines": self.lines,
                "data_size": self.data_size, "every": self.every}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LineIndexInfo:
        return cls(mode=d["mode"], dtype=d["dtype"], lines=int(d["lines"]),
                   data_size=int(d["data_size"]), every=int(d.get("every", 1)))


def choose_mode(mode: str, size_hint: int | None) -> Mode:
    if mode == "auto":
        return "sparse" if size_hint is not None and size_hint > AUTO_SPARSE_ABOVE else "dense"
    if mode not in ("dense", "sparse"):
        raise BadRequest(f"unknown line index mode {mode!r}: use auto, dense or sparse")
    return mode  # type: ignore[return-value]


class LineIndexBuilder:
    """Feed the file's bytes in order; ``finish`` returns the index info.

    Offsets are handed to ``sink`` as raw bytes as they are found, so the caller can stream them
    into a blob. For dense mode the array holds the start of every line plus one end sentinel;
    for sparse mode the start of lines 0, every, 2*every, ... plus the sentinel.
    """

    def __init__(self, sink: Callable[[bytes], None], *, mode: Mode = "dense",
                 size_hint: int | None = None, every: int = SPARSE_EVERY,
                 threads: int | None = None) -> None:
        self._sink = sink
        # numpy releases the GIL in the compare and the nonzero scan, so halves of a block
        # can be scanned on two cores at once.
        self._threads = threads if threads is not None else min(2, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self.mode = mode
        # 4-byte offsets when the file is known to fit; halves the index of files < 4 GiB.
        small = size_hint is not None and size_hint < (1 << 32) - 1
        self.dtype = np.dtype("<u4") if small else np.dtype("<u8")
        self.every = every if mode == "sparse" else 1
        self._pos = 0  # bytes seen so far
        self._newlines = 0
        self._head = b""  # first bytes, held until we know whether they start with a BOM
        self._started = False
        self._first = 0
        self._ends_with_newline = False
        self._last_written = -1

    def _emit(self, starts: np.ndarray) -> None:
        if len(starts):
            # A byte view, so sinks that count len() count bytes; no copy.
            self._sink(memoryview(starts.astype(self.dtype, copy=False)).cast("B"))  # type: ignore[arg-type]
            self._last_written = int(starts[-1])

    def _newlines_of(self, arr: np.ndarray) -> np.ndarray:
        """Positions of the newlines in ``arr``, split across threads for big blocks."""
        if self._threads < 2 or len(arr) < PARALLEL_SCAN_ABOVE:
            return np.flatnonzero(arr == 10)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="line-index")
        step = -(-len(arr) // self._threads)
        parts = [arr[i : i + step] for i in range(0, len(arr), step)]
        found = list(self._pool.map(lambda a: np.flatnonzero(a == 10), parts))
        for k, nl in enumerate(found):
            if k:
                nl += k * step
        return np.concatenate(found)

    def _begin(self, head: bytes) -> None:
        self._started = True
        self._first = len(BOM) if head[: len(BOM)] == BOM else 0
        self._emit(np.array([self._first], dtype=np.uint64))

    def feed(self, block: bytes | bytearray | memoryview) -> None:
        if not self._started:
            self._head += bytes(block)
            if len(self._head) < len(BOM):
                return
            head, self._head = self._head, b""
            self._begin(head)
            self._scan(head)
            return
        self._scan(block)

    def _scan(self, block: bytes | bytearray | memoryview) -> None:
        arr = np.frombuffer(block, dtype=np.uint8)
        if not len(arr):
            return
        nl = self._newlines_of(arr)
        base = self._pos + 1
        if self.mode == "dense":
            if len(nl):
                nl += base
                self._emit(nl)
        else:
            # Line k (0-based) starts after newline k-1; keep k = every, 2*every, ...
            skip = (-(self._newlines + 1)) % self.every
            picked = nl[skip :: self.every]
            if len(picked):
                self._emit(picked + base)
        self._newlines += len(nl)
        self._pos += len(arr)
        self._ends_with_newline = bool(arr[-1] == 10)

    def finish(self) -> LineIndexInfo:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if not self._started:
            head, self._head = self._head, b""
            self._begin(head)
            self._scan(head)
        size = self._pos
        # The end sentinel; already there when the file ends with a newline.
        if self._last_written != size:
            self._emit(np.array([size], dtype=np.uint64))
        if size <= self._first:
            lines = 0
        else:
            lines = self._newlines + (0 if self._ends_with_newline else 1)
        return LineIndexInfo(self.mode, self.dtype.str, lines, size, self.every)


def build_line_index_from_file(
    f: BinaryIO, sink: Callable[[bytes], None], *, mode: Mode = "dense",
    size_hint: int | None = None, block_size: int = SCAN_BLOCK,
    on_block: Callable[[memoryview], object] | None = None,
    progress: Callable[[int], None] | None = None,
) -> LineIndexInfo:
    """Scan ``f`` block by block; ``on_block`` (hashing, copying) sees every block too.

    ``on_block`` runs in a second thread while the block is scanned (hashlib and file writes
    release the GIL), with two buffers so the next read never overwrites a block in use.
    """
    builder = LineIndexBuilder(sink, mode=mode, size_hint=size_hint)
    bufs = [bytearray(block_size), bytearray(block_size)]
    with ThreadPoolExecutor(1, thread_name_prefix="line-index-io") as pool:
        pending = None
        k = 0
        while n := f.readinto(bufs[k]):  # type: ignore[attr-defined]
            chunk = memoryview(bufs[k])[:n]
            if pending is not None:
                pending.result()  # the other buffer is free again
            if on_block is not None:
                pending = pool.submit(on_block, chunk)
            builder.feed(chunk)
            if progress is not None:
                progress(n)
            k ^= 1
        if pending is not None:
            pending.result()
    return builder.finish()


class LineIndex:
    """Reads line boundaries from a memory-mapped offsets blob over a memory-mapped data file."""

    def __init__(self, info: LineIndexInfo, offsets: memoryview, data: mmap.mmap | bytes) -> None:
        self.info = info
        self.lines = info.lines
        self._offsets = offsets.cast("I" if info.dtype == "<u4" else "Q")
        self._data = data
        self._every = info.every
        self._dense = info.mode == "dense"
        self._size = info.data_size

    def span(self, i: int) -> tuple[int, int]:
        """Byte range of 0-based line ``i``, without its line ending. ``i`` must be in range."""
        data = self._data
        if self._dense:
            start = self._offsets[i]
            end = self._offsets[i + 1]
            if end > start and data[end - 1] == 10:
                end -= 1
                if end > start and data[end - 1] == 13:
                    end -= 1
            return start, end
        every = self._every
        b = i // every
        start = self._offsets[b]
        r = i % every
        if r:
            # Walk newline by newline (memchr in C) from the nearer end of the block: at most
            # every/2 steps, a quarter of the block on average. Copying and splitting the
            # block, or a numpy scan of it, cost twice as much per lookup (measured).
            left = min(every, self.lines - b * every) - r  # lines from i to the block's end
            if r <= left:
                find = data.find
                for _ in range(r):
                    start = find(b"\n", start) + 1
            else:
                e = self._offsets[b + 1]
                if data[e - 1] == 10:  # the newline ending the block's last line
                    e -= 1
                rfind = data.rfind
                for _ in range(left):
                    e = rfind(b"\n", start, e)
                start = e + 1
        end = data.find(b"\n", start)
        if end < 0:
            end = self._size
        elif end > start and data[end - 1] == 13:
            end -= 1
        return start, end

    def line(self, i: int) -> bytes:
        s, e = self.span(i)
        return self._data[s:e]

    def region(self, i: int) -> int:
        """Byte offset where 0-based line ``i`` starts (``i == lines`` gives the data end)."""
        if i >= self.lines:
            return self._size
        return self.span(i)[0] if not self._dense else int(self._offsets[i])

    def iter_text(self, start: int, count: int, piece: int = 1 << 20) -> Iterator[bytes]:
        """Lines ``start .. start+count-1`` as ``\\n``-terminated text, in pieces of ~``piece``."""
        stop = min(self.lines, start + count)
        i = start
        data = self._data
        while i < stop:
            s = self.region(i)
            j = i + 1
            # Grow the piece line by line only in sparse mode; dense can jump by bisection.
            if self._dense:
                lo, hi = i + 1, stop
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if self._offsets[mid] - s <= piece:
                        lo = mid
                    else:
                        hi = mid - 1
                j = max(lo, i + 1)
            else:
                while j < stop and self.region(j) - s <= piece:
                    j += 1
            e = self.region(j)
            chunk = data[s:e]
            if b"\r" in chunk:
                chunk = chunk.replace(b"\r\n", b"\n")
            if not chunk.endswith(b"\n"):
                chunk += b"\n"
            yield chunk
            i = j

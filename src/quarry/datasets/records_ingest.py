"""Ingest of records datasets: parse sources in parallel, sort into chunks, commit a version.

Rows are buffered until twice a chunk's worth has arrived, stably sorted by time, and the
earliest chunk's worth written out; the rest waits for later rows. Slightly out-of-order
logs thus still give time-disjoint chunks; badly out-of-order input gives overlapping
chunks, which readers handle (they merge by time), only with less pruning.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.datasets.records import KIND, SORT_KEY, ChunkInfo, make_snapshot, schema_to_json
from quarry.defaults import DEFAULT_CHUNK_ROWS as DEFAULT_CHUNK_ROWS  # re-exported
from quarry.defaults import RECORD_FORMATS
from quarry.errors import BadRequest
from quarry.formats.accesslog import AccessLogParser
from quarry.formats.ipts import IpTsParser
from quarry.formats.records import Parsed, RecordParser
from quarry.formats.textblocks import LineBatch, RawBlock, Source, read_blocks
from quarry.index import ip_index
from quarry.index.zonemap import zone_map
from quarry.store import CommitResult, Store
from quarry.store.refs import check_dataset_name

MAX_CHUNK_BYTES = 512 << 20
REPORTED_REJECTS = 10
FORMATS: dict[str, Callable[[], RecordParser]] = {
    "ipts": IpTsParser, "access-log": AccessLogParser,
}
assert tuple(FORMATS) == RECORD_FORMATS, "quarry.defaults.RECORD_FORMATS names these parsers"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Reject:
    source: str
    line: int
    text: str


@dataclass
class IngestReport:
    format: str
    rows: int = 0
    rejected: int = 0
    first_rejects: list[Reject] = field(default_factory=list)
    sources: int = 0
    result: CommitResult | None = None


class ChunkWriter:
    """Turns time-sorted tables into chunk and index blobs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.chunks: list[ChunkInfo] = []

    def write(self, table: pa.Table) -> ChunkInfo:
        table = table.combine_chunks()
        if "ip" not in table.column_names:
            # Records of another shape (e.g. API items): zone maps, no IP index.
            data_id, data_size = self._put(table)
            info = ChunkInfo(data_id, data_size, None, 0, table.num_rows,
                             zone_map(table, None), False)
            self.chunks.append(info)
            return info
        ip_arr = table.column("ip").chunk(0)
        ips = np.frombuffer(ip_arr.buffers()[1], dtype=np.uint8)[
            ip_arr.offset * 16:(ip_arr.offset + len(ip_arr)) * 16].reshape(-1, 16)
        comp, exact = ip_index.build(ips)
        data_id, data_size = self._put(table)
        index_table = pa.table({"key_row": pa.array(comp, pa.uint64())})
        index_id, index_size = self._put(index_table)
        info = ChunkInfo(data_id, data_size, index_id, index_size, table.num_rows,
                         zone_map(table, ips), exact)
        self.chunks.append(info)
        return info

    def _put(self, table: pa.Table) -> tuple[str, int]:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as w:
            # One batch per file: readers get each column as one contiguous array.
            w.write_table(table, max_chunksize=max(1, table.num_rows))
        buf = sink.getvalue()
        self.store.ensure_space(buf.size)
        with self.store.blobs.writer() as blob:
            blob.write(memoryview(buf))
            return blob.commit(), buf.size


class Sorter:
    """Buffers parsed rows and emits time-sorted chunks (see the module docstring)."""

    def __init__(self, writer: ChunkWriter, chunk_rows: int) -> None:
        self.writer = writer
        self.chunk_rows = chunk_rows
        self._parts: list[pa.Table] = []
        self._rows = 0
        self._bytes = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._parts.append(table)
        self._rows += table.num_rows
        self._bytes += table.nbytes
        if self._rows >= 2 * self.chunk_rows or self._bytes >= 2 * MAX_CHUNK_BYTES:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._parts:
            return
        table = pa.concat_tables(self._parts).combine_chunks()
        order = np.argsort(_ts(table), kind="stable")
        table = table.take(pa.array(order))
        per_chunk = self.chunk_rows
        if self._bytes > MAX_CHUNK_BYTES:
            per_chunk = max(1, min(per_chunk, int(table.num_rows * MAX_CHUNK_BYTES / self._bytes)))
        start = 0
        while table.num_rows - start >= (per_chunk if final else 2 * per_chunk) or (
                final and start < table.num_rows):
            self.writer.write(table.slice(start, per_chunk))
            start += per_chunk
            if not final:
                break
        rest = table.slice(start)
        self._parts = [rest] if rest.num_rows else []
        self._rows = rest.num_rows
        self._bytes = rest.nbytes

    def finish(self) -> None:
        self._flush(final=True)


def _ts(table: pa.Table) -> np.ndarray:
    col = table.column(SORT_KEY)
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    out: np.ndarray = arr.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return out


def detect_format(batch: LineBatch) -> str:
    """``ipts`` if the first non-blank lines look like ``ip,ts``, else access-log."""
    sample = batch.lines[:50]
    hits = pc.sum(pc.match_substring_regex(sample, r"^[^ ,]+,[ \t]*[0-9.]+[ \t]*\r?\n?$"))
    blank = pc.sum(pc.match_substring_regex(sample, r"^[ \t\r\n]*$"))
    useful = len(sample) - (blank.as_py() or 0)
    return "ipts" if useful and (hits.as_py() or 0) * 2 >= useful else "access-log"


def _parse_block(parser: RecordParser, block: RawBlock) -> tuple[RawBlock, Parsed]:
    fast = parser.parse_clean(block.data)
    if fast is not None:
        return block, fast
    batch = block.split()
    return block, parser.parse(batch.lines, batch.first_line)


def _parsed(blocks: Iterable[RawBlock], parser: RecordParser,
            threads: int) -> Iterator[tuple[RawBlock, Parsed]]:
    """Split and parse blocks on ``threads`` threads (numpy and Arrow kernels release the
    GIL), in order, with a bounded number in flight."""
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[tuple[RawBlock, Parsed]]] = deque()
        for b in blocks:
            pending.append(pool.submit(_parse_block, parser, b))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _all_blocks(sources: list[Source], progress: Progress | None) -> Iterator[RawBlock]:
    for s in sources:
        yield from read_blocks(s, progress=progress)


def ingest(store: Store, name: str, sources: list[Source], *, fmt: str = "auto",
           strict: bool = False, rejects: BinaryIO | None = None, append: bool = False,
           chunk_rows: int = DEFAULT_CHUNK_ROWS, message: str = "",
           progress: Progress | None = None, threads: int = 2,
           extra_meta: dict[str, object] | None = None) -> IngestReport:
    """Parse ``sources`` into a new version of records dataset ``name``.

    Malformed lines are skipped and counted (the first few kept in the report, all of them
    written raw to ``rejects``), or with ``strict`` abort the ingest before anything is
    committed; so does input whose every line is malformed. With ``append`` the new version
    keeps the current version's chunks.
    """
    check_dataset_name(name)
    if not 1 <= chunk_rows < ip_index.MAX_ROWS:
        raise BadRequest(f"chunk rows must be between 1 and 2^32-1, got {chunk_rows}")
    base_version = store.head(name) if append else None
    base_chunks: list[ChunkInfo] = []
    if base_version is not None:
        base = store.snapshot(base_version)
        if base.kind != KIND:
            raise BadRequest(f"cannot append to {name}: it is a {base.kind} dataset")
        base_chunks = [ChunkInfo.from_json(c) for c in base.meta.get("chunks", [])]
        if fmt == "auto":
            fmt = str(base.meta.get("format", "auto"))
    blocks = _all_blocks(sources, progress)
    first = next(blocks, None)
    if fmt == "auto":
        fmt = detect_format(first.split()) if first is not None else "ipts"
    if fmt not in FORMATS:
        raise BadRequest(f"unknown records format {fmt!r}: use one of {', '.join(FORMATS)}")
    parser = FORMATS[fmt]()
    if base_version is not None:
        have = store.snapshot(base_version).meta.get("schema")
        if have != schema_to_json(parser.schema):
            raise BadRequest(f"cannot append {fmt} records to {name}: its schema differs")
    report = IngestReport(format=fmt, sources=len(sources))
    writer = ChunkWriter(store)
    sorter = Sorter(writer, chunk_rows)

    def chained() -> Iterator[RawBlock]:
        if first is not None:
            yield first
        yield from blocks

    for block, parsed in _parsed(chained(), parser, threads):
        if len(parsed.rejected):
            _rejected(report, block.split(), parsed.rejected, strict, rejects)
        report.rows += parsed.table.num_rows
        sorter.add(parsed.table)
    if report.rows == 0 and report.rejected:
        # Input that is all malformed is a mistake (a wrong file or format), not an empty
        # dataset: a version of nothing would replace good data and hide it.
        r = report.first_rejects[0]
        raise BadRequest(f"all {report.rejected:,} non-blank line(s) were malformed "
                         f"{report.format} lines (the first, {r.source}:{r.line}: "
                         f"{r.text[:200]!r}); nothing was committed",
                         rejected=report.rejected, source=r.source, line=r.line)
    sorter.finish()
    chunks = base_chunks + writer.chunks
    meta = {"ingest": {"rejected": report.rejected}, **(extra_meta or {})}
    snap = make_snapshot(name, fmt, parser.schema, chunks, message=message, extra=meta)
    if append:
        report.result = store.commit(snap, expected_parent=base_version)
    else:
        report.result = store.commit(snap)
    return report


def _rejected(report: IngestReport, batch: LineBatch, positions: np.ndarray, strict: bool,
              rejects: BinaryIO | None) -> None:
    report.rejected += len(positions)
    for p in positions[: max(0, REPORTED_REJECTS - len(report.first_rejects))]:
        raw = batch.lines[int(p)].as_py()
        report.first_rejects.append(Reject(batch.source, batch.first_line + int(p),
                                           raw.decode("utf-8", "replace").rstrip("\r\n")))
    if strict:
        r = report.first_rejects[0]
        raise BadRequest(f"{r.source}:{r.line}: malformed {report.format} line: "
                         f"{r.text[:200]!r} (--strict: nothing was committed)",
                         source=r.source, line=r.line)
    if rejects is not None:
        for p in positions:
            raw = batch.lines[int(p)].as_py()
            rejects.write(raw if raw.endswith(b"\n") else raw + b"\n")

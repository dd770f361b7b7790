"""Paged-API fetches turned into results: a records dataset version, or streaming statistics.

``ingest_api`` keeps the items: each flush of a range becomes a *part* (an Arrow IPC blob),
named by the range's checkpoint; when every range is done the parts are read back in range
order (ranges are disjoint and ids ascend within each, so the result is sorted by id),
re-cut into chunks of ``chunk_rows`` with zone maps, and committed as one version. Nothing
is committed unless every range finished, so a failed or stopped fetch leaves no version,
only checkpoints that the next run resumes from.

``stats_api`` keeps only statistics: each flush is reduced to partials and merged into the
running totals at once, so memory holds the totals (and each range's own), never the items.
With a store for its checkpoints it resumes too: each range's checkpoint names a blob of that
range's partials so far (``stats.codec``), replaced at every flush.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from quarry.connectors.checkpoint import Checkpoints, RangeState
from quarry.connectors.fetch import FetchReport, ProgressFn, fetch
from quarry.connectors.ranges import split
from quarry.connectors.settings import ApiSettings
from quarry.datasets.records import make_snapshot
from quarry.datasets.records_ingest import DEFAULT_CHUNK_ROWS, ChunkWriter
from quarry.errors import BadUpstream
from quarry.stats import codec
from quarry.stats.execute import Accumulator
from quarry.stats.kernels import Partial, merge
from quarry.stats.request import StatsRequest
from quarry.store import CommitResult, Store
from quarry.store.refs import check_dataset_name

FORMAT = "api"
# Checkpoints of streaming statistics live beside the datasets' under a name no dataset can
# take ('@' is reserved).
STATS_CHECKPOINTS = "@stats"


def items_table(items: list[dict[str, Any]], where: str) -> pa.Table:
    try:
        return pa.Table.from_pylist(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise BadUpstream(f"items from {where} do not fit one table: {e}") from None


class PartSink:
    """Writes each flush of items as an Arrow IPC blob (a part) and returns its id."""

    cumulative = False

    def __init__(self, store: Store, where: str) -> None:
        self.store = store
        self.where = where

    def flush(self, state: RangeState, items: list[dict[str, Any]]) -> str | None:
        table = items_table(items, self.where)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        buf = sink.getvalue()
        self.store.ensure_space(buf.size)
        with self.store.blobs.writer() as blob:
            blob.write(memoryview(buf))
            return blob.commit()


class StatsSink:
    """Merges each flush into the totals; with checkpoints, also keeps each range's partials
    so far in the checkpoint folder, so a stopped run can resume."""

    cumulative = True

    def __init__(self, acc: Accumulator, where: str,
                 checkpoints: Checkpoints | None = None) -> None:
        self.acc = acc
        self.where = where
        self.checkpoints = checkpoints
        # Each range's partials so far; a range is flushed by one worker at a time.
        self.ranges: dict[int, list[Partial]] = {}

    def restore(self, state: RangeState) -> None:
        """Take up a range's partials from an earlier run."""
        if self.checkpoints is None or not state.parts:
            return
        parts = codec.decode(self.checkpoints.read_file(state.parts[-1]))
        self.ranges[state.range.index] = parts
        self.acc.merge(parts)

    def flush(self, state: RangeState, items: list[dict[str, Any]]) -> str | None:
        parts = self.acc.partials(items_table(items, self.where))
        self.acc.merge(parts)
        if self.checkpoints is None:
            return None
        i = state.range.index
        before = self.ranges.get(i)
        mine = parts if before is None else [merge(a, b) for a, b in
                                             zip(before, parts, strict=True)]
        self.ranges[i] = mine
        return self.checkpoints.write_file(i, codec.encode(mine))


def _read_part(store: Store, blob: str) -> pa.Table:
    with pa.memory_map(str(store.blobs.path(blob)), "r") as src:
        return pa.ipc.open_file(src).read_all()


def _unified(store: Store, parts: Sequence[str]) -> pa.Schema:
    schemas = []
    for p in parts:
        with pa.memory_map(str(store.blobs.path(p)), "r") as src:
            schemas.append(pa.ipc.open_file(src).schema)
    if not schemas:
        return pa.schema([])
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise BadUpstream(f"the API's items change shape between pages: {e}") from None


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = [table.column(f.name) if f.name in table.column_names
            else pa.nulls(table.num_rows, f.type) for f in schema]
    try:
        return pa.Table.from_arrays(cols, names=schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise BadUpstream(f"the API's items change shape between pages: {e}") from None


def commit_parts(store: Store, name: str, settings: ApiSettings, states: Sequence[RangeState],
                 *, chunk_rows: int = DEFAULT_CHUNK_ROWS, message: str = "") -> CommitResult:
    parts = [p for s in sorted(states, key=lambda s: s.range.index) for p in s.parts]
    schema = _unified(store, parts)
    writer = ChunkWriter(store)
    pending: list[pa.Table] = []
    rows = 0
    for p in parts:
        t = _conform(_read_part(store, p), schema)
        pending.append(t)
        rows += t.num_rows
        while rows >= chunk_rows:
            whole = pa.concat_tables(pending)
            writer.write(whole.slice(0, chunk_rows))
            rest = whole.slice(chunk_rows)
            pending, rows = ([rest] if rest.num_rows else []), rest.num_rows
    if rows:
        writer.write(pa.concat_tables(pending))
    extra = {"source": {"url": settings.url, "first_id": settings.first_id,
                        "last_id": settings.last_id, "id_field": settings.id_field}}
    snap = make_snapshot(name, FORMAT, schema, writer.chunks, message=message, extra=extra,
                         sort_key=settings.id_field)
    return store.commit(snap)


@dataclass
class IngestResult:
    fetch: FetchReport
    commit: CommitResult
    items: int  # in the committed version, including those fetched before a resume


def ingest_api(store: Store, name: str, settings: ApiSettings, *,
               progress: ProgressFn | None = None, restart: bool = False,
               chunk_rows: int = DEFAULT_CHUNK_ROWS, message: str = "",
               on_start: Callable[[list[RangeState], bool], None] | None = None,
               **fetch_kw: Any) -> IngestResult:
    """Fetch every item of the id space into a new version of records dataset ``name``."""
    check_dataset_name(name)
    ranges = split(settings.first_id, settings.end_id, settings.pool)
    cps = Checkpoints(store, name, "api", settings.key_fields())
    if restart:
        cps.clear()
    states, resumed = cps.load(ranges)
    cps.start()
    if on_start is not None:
        on_start(states, resumed)
    try:
        report = fetch(settings, states, PartSink(store, settings.url), checkpoints=cps,
                       progress=progress, **fetch_kw)
        report.resumed = resumed
        result = commit_parts(store, name, settings, report.states, chunk_rows=chunk_rows,
                              message=message or f"fetched from {settings.url}")
    finally:
        cps.release()
    cps.clear()
    items = sum(s.items for s in report.states)
    return IngestResult(report, result, items)


def stats_api(settings: ApiSettings, request: StatsRequest, *, store: Store | None = None,
              progress: ProgressFn | None = None, restart: bool = False,
              on_start: Callable[[list[RangeState], bool], None] | None = None,
              **fetch_kw: Any) -> tuple[dict[str, Any], FetchReport]:
    """Statistics of every item of the id space, computed while fetching; resumable when a
    store is given to keep the checkpoints in."""
    acc = Accumulator(request)
    ranges = split(settings.first_id, settings.end_id, settings.pool)
    cps = None
    states = [RangeState(r, r.begin) for r in ranges]
    resumed = False
    if store is not None:
        fields = {**settings.key_fields(),
                  "request": [a.name for a in request.aggregates],
                  "where": repr(request.where)}
        cps = Checkpoints(store, STATS_CHECKPOINTS, "stats", fields)
        if restart:
            cps.clear()
        states, resumed = cps.load(ranges)
        cps.start()
    sink = StatsSink(acc, settings.url, cps)
    for s in states:
        sink.restore(s)
    if on_start is not None:
        on_start(states, resumed)
    try:
        report = fetch(settings, states, sink, checkpoints=cps, progress=progress, **fetch_kw)
    finally:
        if cps is not None:
            cps.release()
    report.resumed = resumed
    out = {"results": acc.result(), "items": sum(s.items for s in report.states)}
    if cps is not None:
        cps.clear()
    return out, report

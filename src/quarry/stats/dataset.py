"""Statistics over a records dataset's chunks (one version), pruned by their zone maps."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from quarry.datasets.records import Chunk
from quarry.engine import Engine
from quarry.stats.execute import ChunkSource, run
from quarry.stats.request import StatsRequest


def _reader(chunk: Chunk) -> Any:
    def read(columns: Any) -> pa.Table:
        # The chunk is memory-mapped; selecting columns copies nothing.
        return chunk.table.select(list(columns))
    return read


def dataset_stats(engine: Engine, name: str, request: StatsRequest,
                  version: str | None = None, *, threads: int = 2) -> dict[str, Any]:
    view = engine.records(name, version)
    schema = view.chunks[0].table.schema if view.chunks else None
    sources = [ChunkSource(_reader(c), c.info.rows, c.info.zones) for c in view.chunks]
    out = run(request, sources, schema, threads=threads)
    return {"dataset": name, "version": view.version, "rows": view.rows, **out}

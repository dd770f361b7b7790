"""Defaults that both the core and the command line name, kept in a module that imports
nothing: the CLI declares its options from them without loading numpy or pyarrow."""

from __future__ import annotations

DEFAULT_SHARDS = 8  # shards a records version is split into
DEFAULT_CHUNK_ROWS = 1 << 22  # rows per chunk of an ingested records dataset
DEFAULT_FIND_LIMIT = 10_000  # results of an IP query (visits, ips) when none is asked for
RECORD_FORMATS = ("ipts", "access-log")  # parsers of quarry.datasets.records_ingest

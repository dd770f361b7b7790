"""Tables from CSV, JSON lines and Parquet, with an inferred schema the caller may override.

Every column ends as one of five *logical types*, recorded in the field's ``quarry.type``
metadata so that readers need not guess from Arrow types:

* ``int`` — int64; ``float`` — float64 (booleans become int 0/1);
* ``string`` — dictionary-encoded UTF-8 (per chunk, see ``normalise_chunk``);
* ``timestamp`` — µs since the epoch, UTC; numbers are read as POSIX seconds;
* ``ip`` — 16 bytes, IPv4 mapped into IPv6 (see :mod:`quarry.formats.ipaddr`).

Arrow's own readers infer ints, floats, timestamps and strings; a string column whose sampled
values all parse as addresses is inferred as ``ip``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quarry.errors import BadRequest
from quarry.formats import logical
from quarry.formats.ipaddr import IP_TYPE, parse_ips

LOGICAL_TYPES = ("int", "float", "string", "timestamp", "ip")
TS_TYPE = pa.timestamp("us", tz="UTC")
FORMATS = ("csv", "jsonl", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
IP_SAMPLE = 100


def field(name: str, logical: str) -> pa.Field:
    arrow = {"int": pa.int64(), "float": pa.float64(),
             "string": pa.dictionary(pa.int32(), pa.string()), "timestamp": TS_TYPE,
             "ip": IP_TYPE}[logical]
    return pa.field(name, arrow, metadata={"quarry.type": logical})


def logical_type(f: pa.Field) -> str:
    """The logical type a stored field is written as (booleans are stored as int 0/1)."""
    t = logical.of_field(f)
    return "int" if t == "bool" else t


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zst")]
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise BadRequest(f"cannot tell the format of {path.name}: give --format "
                         f"({', '.join(FORMATS)})")
    return fmt


def parse_overrides(specs: Sequence[str]) -> dict[str, str]:
    """``["a=int", "b=ip"]`` to ``{"a": "int", "b": "ip"}``."""
    out: dict[str, str] = {}
    for s in specs:
        name, sep, kind = s.partition("=")
        if not sep or not name or kind not in LOGICAL_TYPES:
            raise BadRequest(f"a type override is NAME=TYPE with TYPE one of "
                             f"{', '.join(LOGICAL_TYPES)}; got {s!r}")
        out[name] = kind
    return out


def read_file(path: Path, fmt: str = "auto") -> pa.Table:
    """Read a whole file with Arrow's (multithreaded) readers; compression is detected."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    if fmt == "auto":
        fmt = detect_format(path)
    try:
        if fmt == "csv":
            delim = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
            return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delim))
        if fmt == "jsonl":
            return pajson.read_json(path)
        if fmt == "parquet":
            return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise BadRequest(f"cannot read {path.name} as {fmt}: {e}") from None
    raise BadRequest(f"unknown table format {fmt!r}: use one of {', '.join(FORMATS)}")


def _infer(name: str, col: pa.ChunkedArray) -> str:
    t = col.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
        return "ip"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        sample = pc.drop_null(col.slice(0, 10 * IP_SAMPLE)).slice(0, IP_SAMPLE)
        sample = sample.combine_chunks() if isinstance(sample, pa.ChunkedArray) else sample
        if len(sample) and parse_ips(sample.cast(pa.string()))[1].all():
            return "ip"
        return "string"
    if pa.types.is_null(t):  # a header and no rows, or a column of nothing but nulls
        raise BadRequest(f"column {name!r} has no values to tell its type from (the input "
                         f"has {len(col)} row(s)); give it with --type {name}=TYPE")
    raise BadRequest(f"column {name!r} has a type Quarry cannot store: {t}")


def _convert(name: str, col: pa.ChunkedArray, logical: str) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    try:
        if logical == "int":
            if pa.types.is_boolean(arr.type):
                return arr.cast(pa.int64())
            if pa.types.is_string(arr.type):
                arr = pc.utf8_trim_whitespace(arr)
            return arr.cast(pa.int64())
        if logical == "float":
            return arr.cast(pa.float64())
        if logical == "string":
            return arr.cast(pa.string())
        if logical == "timestamp":
            if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
                # POSIX seconds, fractions kept to the microsecond.
                us = pc.round(pc.multiply(arr.cast(pa.float64()), 1e6))
                return us.cast(pa.int64()).cast(TS_TYPE)
            if pa.types.is_timestamp(arr.type) and arr.type.tz is None:
                return arr.cast(pa.timestamp("us")).cast(pa.int64()).cast(TS_TYPE)
            return arr.cast(TS_TYPE)
        if logical == "ip":
            if pa.types.is_fixed_size_binary(arr.type) and arr.type.byte_width == 16:
                return arr.cast(IP_TYPE)  # already 16-byte addresses (e.g. from Parquet)
            text = arr.cast(pa.string())
            ips, valid = parse_ips(pc.fill_null(text, ""))
            bad = ~valid & text.is_valid().to_numpy(zero_copy_only=False)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise BadRequest(f"column {name!r}: {text[i].as_py()!r} is not an IP address")
            flat = pa.py_buffer(np.ascontiguousarray(ips).tobytes())
            validity = None if text.null_count == 0 else text.is_valid().buffers()[1]
            return pa.Array.from_buffers(IP_TYPE, len(text), [validity, flat],
                                         null_count=text.null_count)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise BadRequest(f"column {name!r} cannot be read as {logical}: {e}") from None
    raise BadRequest(f"unknown type {logical!r} for column {name!r}")


def normalise(table: pa.Table, overrides: Mapping[str, str] | None = None,
              schema: pa.Schema | None = None) -> pa.Table:
    """Columns converted to their logical types: ``schema`` (an existing dataset's, when
    appending) wins, then ``overrides``, then inference. Strings stay plain here and are
    dictionary-encoded per chunk by ``normalise_chunk``."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(table.column_names)
    if unknown:
        raise BadRequest(f"type overrides name unknown columns: {', '.join(sorted(unknown))}")
    want = {f.name: logical_type(f) for f in schema} if schema is not None else {}
    if schema is not None and set(want) != set(table.column_names):
        raise BadRequest("the input's columns differ from the dataset's: "
                         f"{sorted(table.column_names)} vs {sorted(want)}")
    cols, fields = [], []
    for name in (schema.names if schema is not None else table.column_names):
        col = table.column(name)
        logical = want.get(name) or overrides.get(name) or _infer(name, col)
        arr = _convert(name, col, logical)
        cols.append(arr)
        f = field(name, logical)
        fields.append(pa.field(name, pa.string(), metadata=f.metadata)
                      if logical == "string" else f)
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def normalise_chunk(table: pa.Table) -> pa.Table:
    """String columns dictionary-encoded with one fresh dictionary per chunk: the dictionary
    holds exactly the chunk's distinct values, which keys and filters work on."""
    cols, fields = [], []
    for f in table.schema:
        col = table.column(f.name)
        if logical_type(f) == "string":
            arr = col.combine_chunks()
            if pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            col = pc.dictionary_encode(arr)
            f = pa.field(f.name, col.type, metadata={"quarry.type": "string"})
        cols.append(col)
        fields.append(f)
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def schema_of(table: pa.Table) -> pa.Schema:
    return pa.schema([field(f.name, logical_type(f)) for f in table.schema])

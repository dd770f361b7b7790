"""``quarry ingest table``, ``quarry query``, ``quarry explain``, ``quarry keys``,
``quarry join``: tables from CSV/JSON lines/Parquet and keyed queries over them, run in this
process on the data folder (no server needed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from quarry.cli.common import DEFAULT_DATA, DataOpt, errors, out, read_store
from quarry.cli.ingest import ingest_app
from quarry.datasets.records_ingest import DEFAULT_CHUNK_ROWS
from quarry.datasets.table_ingest import ingest_table
from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.formats import tabular
from quarry.index.keys import KeySpec
from quarry.keybuilder import KeyBuilder
from quarry.query import service
from quarry.query.executor import to_records
from quarry.store import Store

WhereOpt = Annotated[str | None, typer.Option(
    "--where", help='Filter as JSON: \'{"city": "Paris", "age": {"gte": 18}}\'.')]
EqOpt = Annotated[list[str] | None, typer.Option(
    "-w", help="FIELD=VALUE equality (repeatable; VALUE is JSON if it parses, else text).")]
FieldsOpt = Annotated[str | None, typer.Option("--fields", help="Columns to return: a,b,c.")]
VersionOpt = Annotated[str | None, typer.Option("--version", "-v",
                                                help="Version id, prefix, alias or HEAD.")]


def _where(where: str | None, eq: list[str] | None) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    if where:
        try:
            parsed = orjson.loads(where)
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"--where is not valid JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise BadRequest("--where must be a JSON object")
    out_: dict[str, Any] = {}
    for item in eq or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise BadRequest(f"-w takes FIELD=VALUE, got {item!r}")
        try:
            out_[name] = orjson.loads(value)
        except orjson.JSONDecodeError:
            out_[name] = value
    if not out_:
        return parsed
    # ANDed with --where as a whole, so that -w never replaces a condition of the JSON.
    return {"and": [parsed, out_]} if parsed else out_


def _emit(obj: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def register(app: typer.Typer) -> None:
    @ingest_app.command("table")
    def table(
        name: Annotated[str, typer.Argument(help="Dataset name.")],
        files: Annotated[list[Path], typer.Argument(help="CSV, TSV, JSON lines or Parquet "
                                                         "files (gzip by suffix).")],
        fmt: Annotated[str, typer.Option("--format", "-f",
                                         help="auto (by suffix), csv, jsonl, parquet.")] = "auto",
        types: Annotated[list[str] | None, typer.Option(
            "--type", "-t", help="Override an inferred type: NAME=int|float|string|"
                                 "timestamp|ip (repeatable).")] = None,
        sort_key: Annotated[str | None, typer.Option(
            "--sort-key", help="Sort rows by this column (zone maps then prune well).")] = None,
        key: Annotated[list[str] | None, typer.Option(
            "--key", "-k", help="Declare a composite key: a,b,c (repeatable).")] = None,
        chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1)] = DEFAULT_CHUNK_ROWS,
        append: Annotated[bool, typer.Option("--append")] = False,
        message: Annotated[str, typer.Option("--message", "-m")] = "",
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Ingest tables (CSV, JSON lines, Parquet) as records dataset NAME, with keys."""
        with errors():
            res = ingest_table(Store(data), name, files, fmt=fmt,
                               types=tabular.parse_overrides(types or []), sort_key=sort_key,
                               keys=[KeySpec.parse(k) for k in key or []],
                               chunk_rows=chunk_rows, append=append, message=message)
            what = "new version" if res.created else "unchanged, no new version"
            out.print(f"{name}: {what} {res.version[:12]} ({res.snapshot.meta['rows']:,} rows, "
                      f"{len(res.snapshot.meta['chunks'])} chunk(s), keys: "
                      f"{', '.join(res.snapshot.meta.get('keys', {})) or 'none'})",
                      highlight=False, soft_wrap=True)

    @app.command("query")
    def query(
        name: str, where: WhereOpt = None, w: EqOpt = None, fields: FieldsOpt = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 1000,
        cursor: Annotated[str | None, typer.Option("--cursor")] = None,
        version: VersionOpt = None,
        explain: Annotated[bool, typer.Option("--explain", help="Print the plan on stderr.")]
        = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Rows of NAME matching a filter, one JSON object a line; the next page's cursor
        goes to stderr."""
        with errors():
            body: dict[str, Any] = {"where": _where(where, w), "limit": limit,
                                    "fields": fields, "version": version, "cursor": cursor}
            page = service.query(Engine(read_store(data)), name, body)
            for r in to_records(page.table):
                _emit(r)
            sys.stdout.flush()
            if explain:
                sys.stderr.write(orjson.dumps(page.stats.to_json()).decode() + "\n")
            if page.next_cursor:
                sys.stderr.write(f"next cursor: {page.next_cursor}\n")

    @app.command("explain")
    def explain(name: str, where: WhereOpt = None, w: EqOpt = None, version: VersionOpt = None,
                data: DataOpt = DEFAULT_DATA) -> None:
        """How a filter runs: the key chosen and its score, chunks pruned, rows examined."""
        with errors():
            _emit(service.explain(Engine(read_store(data)), name,
                                  {"where": _where(where, w), "version": version}))

    @app.command("keys")
    def keys(
        name: str,
        accept: Annotated[str | None, typer.Option(
            "--accept", help="Keep a key on these fields (a,b): servers build it.")] = None,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Keys of NAME: declared and accepted (a server also shows built and suggested)."""
        with errors():
            engine = Engine(read_store(data))
            builder = KeyBuilder(engine)
            if accept:
                builder.accept(name, KeySpec.parse(accept))
            _emit(service.keys_report(engine, name, [], builder.accepted.get(name)))

    @app.command("join")
    def join(
        name: str,
        probes: Annotated[Path, typer.Argument(help="Probe rows: CSV, JSON lines or Parquet.")],
        on: Annotated[str, typer.Option("--on", help="Join fields: a,b (probe columns of the "
                                                     "same names).")],
        how: Annotated[str, typer.Option("--how", help="inner, left or anti.")] = "inner",
        where: WhereOpt = None, fields: FieldsOpt = None, version: VersionOpt = None,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Look up every probe row in NAME by the join fields; one JSON object a line."""
        with errors():
            table = tabular.read_file(probes)
            _, res, _ = service.join(Engine(read_store(data)), name, table,
                                     {"on": on, "how": how, "where": _where(where, None),
                                      "fields": fields, "version": version})
            for r in to_records(res):
                _emit(r)
            sys.stdout.flush()

"""``quarry ingest table``, ``quarry query``, ``quarry explain``, ``quarry keys``,
``quarry join``: tables from CSV/JSON lines/Parquet and keyed queries over them, run in this
process on the data folder (no server needed)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from quarry.cli.common import (
    DEFAULT_DATA,
    DataOpt,
    JsonOpt,
    MessageOpt,
    VersionOpt,
    echo,
    emit,
    emit_json,
    emit_json_lines,
    errors,
    note,
    print_table,
    read_store,
    where_json,
)
from quarry.cli.ingest import ingest_app
from quarry.defaults import DEFAULT_CHUNK_ROWS
from quarry.errors import BadRequest

# One option for both spellings of a filter, as `quarry stats -w` takes: a JSON object
# ('{"age": {"gte": 18}}') or FIELD=VALUE (VALUE is JSON if it parses, else text).
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", "-w", help='Filter: a JSON object (\'{"city": "Paris", "age": {"gte": 18}}\') '
                          "or FIELD=VALUE equality (VALUE is JSON if it parses, else text); "
                          "repeatable, all must hold.")]
FieldsOpt = Annotated[str | None, typer.Option("--fields", help="Columns to return: a,b,c.")]


def _where(items: list[str] | None) -> dict[str, Any]:
    """The where JSON of every ``-w``: each a JSON object or FIELD=VALUE, all ANDed (one never
    replaces a condition of another)."""
    parts: list[dict[str, Any]] = []
    eq: dict[str, Any] = {}
    for item in items or []:
        parsed = where_json(item)
        if parsed is not None:
            parts.append(parsed)
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise BadRequest(f"--where takes a JSON object or FIELD=VALUE, got {item!r}")
        typed: Any = value
        with contextlib.suppress(orjson.JSONDecodeError):
            typed = orjson.loads(value)
        if name in eq:  # the same field twice: both must hold, not the last one
            parts.append({name: typed})
        else:
            eq[name] = typed
    if eq:
        parts.append(eq)
    if len(parts) <= 1:
        return parts[0] if parts else {}
    return {"and": parts}


def _rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json_lines(rows)
    elif rows:
        headers = list(rows[0])
        print_table(headers, [[r.get(h) for h in headers] for r in rows])


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
        message: MessageOpt = "",
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Ingest tables (CSV, JSON lines, Parquet) as records dataset NAME, with keys."""
        from quarry.datasets.table_ingest import ingest_table
        from quarry.formats import tabular
        from quarry.index.keys import KeySpec
        from quarry.store import Store

        with errors():
            res = ingest_table(Store(data), name, files, fmt=fmt,
                               types=tabular.parse_overrides(types or []), sort_key=sort_key,
                               keys=[KeySpec.parse(k) for k in key or []],
                               chunk_rows=chunk_rows, append=append, message=message)
            if as_json:
                from quarry.cli.lines import commit_json

                emit_json({**commit_json(res), "keys": list(res.snapshot.meta.get("keys", {}))})
                return
            what = "new version" if res.created else "unchanged, no new version"
            echo(f"{name}: {what} {res.version[:12]} ({res.snapshot.meta['rows']:,} rows, "
                 f"{len(res.snapshot.meta['chunks'])} chunk(s), keys: "
                 f"{', '.join(res.snapshot.meta.get('keys', {})) or 'none'})")

    @app.command("query")
    def query(
        name: str, where: WhereOpt = None, fields: FieldsOpt = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 1000,
        cursor: Annotated[str | None, typer.Option("--cursor")] = None,
        version: VersionOpt = None,
        explain: Annotated[bool, typer.Option("--explain", help="Print the plan on stderr.")]
        = False,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Rows of NAME matching a filter, as a table (--json: one JSON object a line); the
        next page's cursor goes to stderr."""
        from quarry.engine import Engine
        from quarry.query import service
        from quarry.query.executor import to_records

        with errors():
            body: dict[str, Any] = {"where": _where(where), "limit": limit,
                                    "fields": fields, "version": version, "cursor": cursor}
            page = service.query(Engine(read_store(data)), name, body)
            _rows(to_records(page.table), as_json)
            if explain:
                note(orjson.dumps(page.stats.to_json()).decode())
            if page.next_cursor:
                note(f"next cursor: {page.next_cursor}")

    @app.command("explain")
    def explain(name: str, where: WhereOpt = None, version: VersionOpt = None,
                as_json: JsonOpt = False, data: DataOpt = DEFAULT_DATA) -> None:
        """How a filter runs: the key chosen and its score, chunks pruned, rows examined."""
        from quarry.engine import Engine
        from quarry.query import service

        with errors():
            emit(service.explain(Engine(read_store(data)), name,
                                 {"where": _where(where), "version": version}), as_json)

    @app.command("keys")
    def keys(
        name: str,
        accept: Annotated[str | None, typer.Option(
            "--accept", help="Keep a key on these fields (a,b): servers build it.")] = None,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Keys of NAME: declared and accepted (a server also shows built and suggested)."""
        from quarry.engine import Engine
        from quarry.index.keys import KeySpec
        from quarry.keybuilder import KeyBuilder
        from quarry.query import service

        with errors():
            engine = Engine(read_store(data))
            builder = KeyBuilder(engine)
            if accept:
                builder.accept(name, KeySpec.parse(accept))
            emit(service.keys_report(engine, name, [], builder.accepted.get(name)), as_json)

    @app.command("join")
    def join(
        name: str,
        probes: Annotated[Path, typer.Argument(help="Probe rows: CSV, JSON lines or Parquet.")],
        on: Annotated[str, typer.Option("--on", help="Join fields: a,b (probe columns of the "
                                                     "same names).")],
        how: Annotated[str, typer.Option("--how", help="inner, left or anti.")] = "inner",
        where: WhereOpt = None, fields: FieldsOpt = None, version: VersionOpt = None,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Look up every probe row in NAME by the join fields, as a table (--json: one JSON
        object a line)."""
        from quarry.engine import Engine
        from quarry.formats import tabular
        from quarry.query import service
        from quarry.query.executor import to_records

        with errors():
            table = tabular.read_file(probes)
            _, res, _ = service.join(Engine(read_store(data)), name, table,
                                     {"on": on, "how": how, "where": _where(where),
                                      "fields": fields, "version": version})
            _rows(to_records(res), as_json)

"""``quarry ingest``: records datasets from logs (files, folders, globs, stdin, gzip) and from
the access-log index's dispatcher configs. Other sources register more subcommands on
``ingest_app``."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from quarry.cli.common import (
    DEFAULT_DATA,
    DataOpt,
    JsonOpt,
    MessageOpt,
    echo,
    emit_json,
    errors,
    note,
    progress_bar,
    warn,
)
from quarry.defaults import DEFAULT_CHUNK_ROWS, RECORD_FORMATS
from quarry.errors import BadRequest

if TYPE_CHECKING:
    from quarry.datasets.records_ingest import IngestReport
    from quarry.formats.textblocks import Source

ingest_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Ingest records datasets (access logs, ip,ts CSV, dispatchers).")

FormatOpt = Annotated[str, typer.Option(
    "--format", "-f", help=f"Input format: auto, {', '.join(RECORD_FORMATS)}.")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="Abort on the first malformed line (nothing is committed).")]
RejectsOpt = Annotated[Path | None, typer.Option(
    "--rejects", help="Write malformed lines, as they were, to this file.")]
AppendOpt = Annotated[bool, typer.Option(
    "--append", help="Add to the current version (its chunks are reused) instead of "
                     "replacing it.")]
ChunkOpt = Annotated[int, typer.Option("--chunk-rows", min=1, help="Rows per chunk.")]


def _run(data: Path, name: str, sources: list[Source], fmt: str, strict: bool,
         rejects: Path | None, append: bool, chunk_rows: int, message: str,
         extra: dict[str, object] | None = None, as_json: bool = False) -> IngestReport:
    from quarry.datasets.records_ingest import ingest
    from quarry.store import Store

    store = Store(data)
    total = sum(s.size for s in sources)
    sink = open(rejects, "wb") if rejects is not None else nullcontext()  # noqa: SIM115
    with sink as f, progress_bar(total, f"ingesting {name}") as progress:
        rej: BinaryIO | None = f if rejects is not None else None  # type: ignore[assignment]
        report = ingest(store, name, sources, fmt=fmt, strict=strict, rejects=rej,
                        append=append, chunk_rows=chunk_rows, message=message,
                        progress=progress, extra_meta=extra)
    _report(report, rejects, as_json)
    return report


def _report(rep: IngestReport, rejects: Path | None, as_json: bool) -> None:
    from quarry.cli.lines import commit_json

    res = rep.result
    assert res is not None
    if as_json:
        emit_json({**commit_json(res), "format": rep.format, "ingested": rep.rows,
                   "sources": rep.sources, "rejected": rep.rejected})
    else:
        what = "new version" if res.created else "unchanged, no new version"
        echo(f"{res.snapshot.dataset}: {what} {res.version[:12]} ({rep.format}: "
             f"{rep.rows:,} records from {rep.sources} source(s), "
             f"{res.snapshot.meta.get('rows', 0):,} in the dataset, "
             f"{len(res.snapshot.meta.get('chunks', []))} chunk(s))")
    if rep.rejected:
        warn(f"skipped {rep.rejected:,} malformed line(s)"
             + (f", kept in {rejects}" if rejects else " (keep them with --rejects FILE)"))
        for r in rep.first_rejects:
            note(f"  {r.source}:{r.line}: {r.text[:160]}")


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")

    @ingest_app.command("logs")
    def logs(
        name: Annotated[str, typer.Argument(help="Dataset name.")],
        sources: Annotated[list[str], typer.Argument(
            help="Files, folders, globs (quoted), or - for standard input; gzip is detected.")],
        fmt: FormatOpt = "auto",
        strict: StrictOpt = False,
        rejects: RejectsOpt = None,
        append: AppendOpt = False,
        chunk_rows: ChunkOpt = DEFAULT_CHUNK_ROWS,
        message: MessageOpt = "",
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Ingest access logs (common/combined) or ip,ts CSV as records dataset NAME."""
        from quarry.formats.textblocks import expand_sources

        with errors():
            _run(data, name, expand_sources(sources), fmt, strict, rejects, append, chunk_rows,
                 message, as_json=as_json)

    @ingest_app.command("dispatcher")
    def dispatcher(
        name: Annotated[str, typer.Argument(help="Dataset name.")],
        config: Annotated[Path, typer.Argument(help="The dispatcher's JSON config.")],
        url: Annotated[list[str] | None, typer.Option(
            "--url", help="URL=CONFIG: the config a remote dispatcher URL served.")] = None,
        strict: StrictOpt = False,
        rejects: RejectsOpt = None,
        chunk_rows: ChunkOpt = DEFAULT_CHUNK_ROWS,
        message: MessageOpt = "",
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Load an access-log index deployment (dispatcher config, nested configs, chunk
        CSVs) as records dataset NAME, in one command."""
        from quarry.formats.dispatcher import chunk_files
        from quarry.formats.textblocks import expand_sources

        with errors():
            url_map: dict[str, str] = {}
            for item in url or []:
                key, sep, value = item.rpartition("=")
                if not sep or not key:
                    raise BadRequest(f"--url takes URL=CONFIG, got {item!r}")
                url_map[key] = value
            files = chunk_files(config, url_map)
            _run(data, name, expand_sources([str(f) for f in files]), "ipts", strict, rejects,
                 False, chunk_rows, message or f"imported from {config.name}",
                 {"imported_from": str(config.resolve()), "chunk_files": len(files)},
                 as_json=as_json)

"""Commands for paged APIs: ``quarry ingest api`` and the development mock ``quarry mock-api``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
)
from quarry.cli.ingest import ingest_app

if TYPE_CHECKING:
    from quarry.connectors.checkpoint import RangeState
    from quarry.connectors.fetch import FetchReport
    from quarry.connectors.settings import ApiSettings

UrlOpt = Annotated[str | None, typer.Option("--url", help="The API's URL (else from config).")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="YAML config (default $QUARRY_CONFIG, ./quarry.yml or ./config.yml).")]
EnvOpt = Annotated[str | None, typer.Option(
    "--env", help="Config environment (default $QUARRY_ENV or development).")]
RateOpt = Annotated[float | None, typer.Option(
    "--rate-limit", help="Requests per second, all workers together (0: no limit).")]
PoolOpt = Annotated[int | None, typer.Option("--pool", help="Concurrent workers / id ranges.")]
FirstOpt = Annotated[int | None, typer.Option("--first-id", help="First item id to fetch.")]
LastOpt = Annotated[int | None, typer.Option("--last-id", help="Last item id (inclusive).")]
PageOpt = Annotated[int | None, typer.Option("--page-size", help="Items per request.")]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", help="Seconds per request.")]
RetriesOpt = Annotated[int | None, typer.Option("--retries", help="Tries after the first.")]
FlushOpt = Annotated[int, typer.Option(
    "--flush-rows", min=1, help="Checkpoint each range every this many items.")]
RestartOpt = Annotated[bool, typer.Option(
    "--restart", help="Drop the checkpoints of an earlier run of this fetch.")]


def api_settings(config: Path | None, env: str | None, **overrides: Any) -> ApiSettings:
    from quarry.connectors.settings import ApiSettings
    from quarry.envconfig import load_config

    settings = ApiSettings.from_config(load_config(config, env), overrides)
    if settings.last_id is None and settings.pool > 1:
        note("note: without last_id the id space cannot be split: one worker walks it")
    return settings


@contextmanager
def fetch_progress(settings: ApiSettings) -> Iterator[tuple[Callable[[int, int], None],
                                                             Callable[[list[RangeState], bool],
                                                                      None]]]:
    """A progress bar over the id space (ids covered), with the items kept so far."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    total = settings.end_id - settings.first_id if settings.end_id is not None else None
    items = [0]
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), "ids", "{task.fields[items]} items",
                  TimeRemainingColumn(), console=Console(stderr=True),
                  transient=False) as bar:
        task = bar.add_task("fetching", total=total, items=0)

        def advance(ids: int, kept: int) -> None:
            items[0] += kept
            bar.update(task, advance=ids, items=items[0])

        def started(states: list[RangeState], resumed: bool) -> None:
            done = sum((s.next if s.next is not None else (s.range.end or s.range.begin))
                       - s.range.begin for s in states)
            items[0] = sum(s.items for s in states)
            bar.update(task, completed=done, items=items[0],
                       description="resuming" if resumed else "fetching")

        yield advance, started


def summary(report: FetchReport) -> str:
    return (f"{report.pages} pages, {report.requests} requests ({report.retries} retried), "
            f"{report.rate:.1f} requests/s over {report.seconds:.1f} s"
            + (", resumed from checkpoints" if report.resumed else ""))


def register(app: typer.Typer) -> None:
    @ingest_app.command("api")
    def ingest_api_cmd(
        name: Annotated[str, typer.Argument(help="Dataset to write (records).")],
        url: UrlOpt = None, config: ConfigOpt = None, env: EnvOpt = None,
        rate_limit: RateOpt = None, pool: PoolOpt = None, first_id: FirstOpt = None,
        last_id: LastOpt = None, page_size: PageOpt = None, timeout: TimeoutOpt = None,
        retries: RetriesOpt = None,
        flush_rows: FlushOpt = 50_000, restart: RestartOpt = False,
        message: MessageOpt = "",
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Fetch every item of a paged API into a new version of records dataset NAME.

        Resumes from checkpoints when the same fetch was stopped before."""
        from quarry.connectors.api_ingest import ingest_api
        from quarry.store import Store

        with errors():
            settings = api_settings(config, env, url=url, rate_limit=rate_limit, pool=pool,
                                    first_id=first_id, last_id=last_id,
                                    results_per_page=page_size, timeout=timeout,
                                    retries=retries)
            with fetch_progress(settings) as (advance, started):
                res = ingest_api(Store(data), name, settings, progress=advance,
                                 restart=restart, message=message, on_start=started,
                                 flush_rows=flush_rows)
            if as_json:
                from quarry.cli.lines import commit_json

                emit_json({**commit_json(res.commit), "items": res.items,
                           "requests": res.fetch.requests, "retries": res.fetch.retries})
                return
            what = "new version" if res.commit.created else "unchanged, no new version"
            echo(f"{name}: {what} {res.commit.version[:12]} ({res.items} items; "
                 f"{summary(res.fetch)})")

    @app.command("mock-api")
    def mock_api(
        pages: Annotated[Path | None, typer.Option(
            "--pages", help="Folder of canned pages (*.json) to serve.")] = None,
        synthetic: Annotated[int | None, typer.Option(
            "--synthetic", min=1, help="Serve this many generated items instead.")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        first_id: Annotated[int, typer.Option("--first-id", help="Synthetic: first id.")] = 1,
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 9000,
        faults: Annotated[str, typer.Option(
            "--faults", help="Injected faults: 500@N, timeout@N, garbage@N (N: request "
                             "number), comma-separated.")] = "",
        stall: Annotated[float, typer.Option(
            "--stall", help="Seconds a timeout fault holds its request.")] = 30.0,
    ) -> None:
        """Serve canned pages (or synthetic items) like the paged stats API, for development."""
        import uvicorn

        from quarry.connectors.mockpages import PageSource
        from quarry.errors import BadRequest
        from quarry.server.mockapi import create_mock_app, parse_faults

        with errors():
            if (pages is None) == (synthetic is None):
                raise BadRequest("give one of --pages DIR or --synthetic N")
            source = (PageSource.from_dir(pages) if pages is not None
                      else PageSource.synthetic(synthetic or 0, seed, first_id))
            app_ = create_mock_app(source, parse_faults(faults), stall)
            echo(f"mock API on http://{host}:{port}/ serving {source.description}")
        uvicorn.run(app_, host=host, port=port, log_level="warning", lifespan="off",
                    access_log=False)

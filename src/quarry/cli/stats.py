"""``quarry stats NAME`` (a records dataset) and ``quarry stats api`` (while fetching)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from quarry.cli.api import (
    ConfigOpt,
    EnvOpt,
    FirstOpt,
    FlushOpt,
    LastOpt,
    PageOpt,
    PoolOpt,
    RateOpt,
    RestartOpt,
    RetriesOpt,
    TimeoutOpt,
    UrlOpt,
    api_settings,
    fetch_progress,
    summary,
)
from quarry.cli.common import (
    DEFAULT_DATA,
    DataOpt,
    JsonOpt,
    VersionOpt,
    emit,
    errors,
    note,
    read_store,
    where_json,
)
from quarry.errors import BadRequest

if TYPE_CHECKING:  # imported where used: a where tree's values load numpy and pyarrow
    from quarry.query.predicate import Predicate
    from quarry.stats.request import Filter, StatsRequest

# The original script's statistics, asked for when none are named.
DEFAULT_API_STATS = ("count", "top_k:food_id:100", "top_k:food__category_id:10")
WHERE = re.compile(r"(?P<field>[^=^<>!]+?)\s*(?P<op>\^=|=)\s*(?P<value>.*)")

AggOpt = Annotated[list[str] | None, typer.Option(
    "--agg", "-a", help="count, top_k:FIELD[:K], group_count:FIELD, histogram:FIELD[:SECONDS]"
                        ", distinct_count:FIELD[:approx], min:FIELD, max:FIELD, mean:FIELD")]
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", "-w", help="A where JSON object ('{\"status\": {\"gte\": 400}}'), or "
                          "FIELD=V (equal), FIELD=V1,V2 (one of), FIELD=LO..HI (range, "
                          "inclusive, either end may be left out), FIELD^=TEXT (prefix); "
                          "several are ANDed")]


class DefaultToDataset(TyperGroup):
    """``quarry stats NAME ...`` means ``quarry stats dataset NAME ...``."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["dataset", *args]
        return super().resolve_command(ctx, args)


def _value(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]  # quoted: text even when it looks like a number
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_where(text: str) -> Predicate:
    """One ``--where``: a JSON ``where`` object, or one of the short forms."""
    from quarry.query.predicate import parse

    parsed = where_json(text)
    return parse(parsed) if parsed is not None else _short(text).to_predicate()


def _short(text: str) -> Filter:
    from quarry.stats.request import Filter

    m = WHERE.fullmatch(text.strip())
    if not m:
        raise BadRequest(f"bad --where {text!r}: use FIELD=V, FIELD=V1,V2, FIELD=LO..HI or "
                         "FIELD^=TEXT")
    field, op, raw = m.group("field").strip(), m.group("op"), m.group("value")
    if op == "^=":
        return Filter.parse({"field": field, "op": "prefix", "value": raw})
    if ".." in raw:
        lo, hi = raw.split("..", 1)
        return Filter.parse({"field": field, "op": "range",
                             "value": [_value(lo) if lo else None, _value(hi) if hi else None]})
    if "," in raw:
        return Filter.parse({"field": field, "op": "in",
                             "value": [_value(v) for v in raw.split(",")]})
    return Filter.parse({"field": field, "op": "eq", "value": _value(raw)})


def build_request(aggs: list[str] | None, where: list[str] | None,
                  default: tuple[str, ...] = ("count",)) -> StatsRequest:
    from quarry.query.predicate import and_
    from quarry.stats.request import Aggregate, StatsRequest

    return StatsRequest(tuple(Aggregate.parse_text(a) for a in (aggs or default)),
                        and_(*(parse_where(w) for w in where or ())))


def _print(doc: dict[str, Any], as_json: bool) -> None:
    emit(doc, as_json)


def register(app: typer.Typer) -> None:
    stats = typer.Typer(cls=DefaultToDataset, no_args_is_help=True, rich_markup_mode=None,
                        help="Statistics over a records dataset (quarry stats NAME -a ...) "
                             "or a paged API while fetching (quarry stats api ...).")
    app.add_typer(stats, name="stats")

    @stats.command("dataset")
    def stats_dataset(
        name: Annotated[str, typer.Argument(help="Records dataset.")],
        agg: AggOpt = None, where: WhereOpt = None,
        version: VersionOpt = None,
        threads: Annotated[int, typer.Option("--threads", min=1, max=64)] = 2,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Statistics over records dataset NAME (also: quarry stats NAME)."""
        from quarry.engine import Engine
        from quarry.stats.dataset import dataset_stats

        with errors():
            req = build_request(agg, where)
            _print(dataset_stats(Engine(read_store(data)), name, req, version, threads=threads),
                   as_json)

    @stats.command("api")
    def stats_api_cmd(
        agg: AggOpt = None, where: WhereOpt = None,
        url: UrlOpt = None, config: ConfigOpt = None, env: EnvOpt = None,
        rate_limit: RateOpt = None, pool: PoolOpt = None, first_id: FirstOpt = None,
        last_id: LastOpt = None, page_size: PageOpt = None, timeout: TimeoutOpt = None,
        retries: RetriesOpt = None,
        flush_rows: FlushOpt = 50_000, restart: RestartOpt = False,
        checkpoints: Annotated[bool, typer.Option(
            "--checkpoints/--no-checkpoints",
            help="Keep checkpoints in the data folder, so a stopped run resumes.")] = True,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Statistics of a paged API's items, computed while fetching (the items are not
        kept). Without --agg: count, top 100 food_id, top 10 food__category_id."""
        from quarry.connectors.api_ingest import stats_api
        from quarry.store import Store

        with errors():
            req = build_request(agg, where, DEFAULT_API_STATS)
            settings = api_settings(config, env, url=url, rate_limit=rate_limit, pool=pool,
                                    first_id=first_id, last_id=last_id,
                                    results_per_page=page_size, timeout=timeout,
                                    retries=retries)
            store = Store(data) if checkpoints else None
            with fetch_progress(settings) as (advance, started):
                result, report = stats_api(settings, req, store=store, progress=advance,
                                           restart=restart, on_start=started,
                                           flush_rows=flush_rows)
            note(summary(report))
            _print(result, as_json)




"""``quarry find``: records of IPs in a window, membership, visits of one IP, distinct IPs."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from quarry.cli.common import (
    DEFAULT_DATA,
    DataOpt,
    JsonOpt,
    VersionOpt,
    echo,
    emit_json,
    errors,
    print_fields,
    print_table,
    read_store,
)
from quarry.cli.shards import (
    RayAddressOpt,
    RayOpt,
    RemoteOpt,
    ShardsOpt,
    WorkersOpt,
    dispatcher,
)
from quarry.defaults import DEFAULT_FIND_LIMIT, DEFAULT_SHARDS
from quarry.errors import BadRequest

find_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="Query records datasets by IP and time window.")

IpsOpt = Annotated[list[str], typer.Option("--ip", "-i", help="IP address (repeatable, or "
                                                                "comma-separated).")]
StartOpt = Annotated[str | None, typer.Option("--start", "-s",
                                              help="POSIX seconds or ISO 8601 (inclusive).")]
EndOpt = Annotated[str | None, typer.Option("--end", "-e",
                                            help="POSIX seconds or ISO 8601 (inclusive).")]


PIECE = 65536  # records a page, fetched through the dispatcher


def _split(ips: list[str]) -> list[str]:
    return [x for item in ips for x in item.split(",") if x.strip()]


def _time(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def register(app: typer.Typer) -> None:
    app.add_typer(find_app, name="find")

    @find_app.command("records")
    def records(name: str, ip: IpsOpt, start: StartOpt = None, end: EndOpt = None,
                limit: Annotated[int | None, typer.Option("--limit", "-n", min=1)] = None,
                version: VersionOpt = None, data: DataOpt = DEFAULT_DATA,
                shards: ShardsOpt = DEFAULT_SHARDS, workers: WorkersOpt = 0,
                ray: RayOpt = False, ray_address: RayAddressOpt = None,
                remote: RemoteOpt = None, as_json: JsonOpt = False) -> None:
        """Records of the IPs within the window, sorted by time: IP and time a line
        (--json: one JSON object a line)."""
        import orjson

        from quarry.engine import Engine
        from quarry.query.model import FindQuery, ip_list, window

        with errors():
            engine = Engine(read_store(data))
            view = engine.records(name, version)
            q = FindQuery(ip_list(_split(ip)), window(start, end))
            left = limit
            with dispatcher(engine, shards=shards, workers=workers, ray=ray,
                            ray_address=ray_address, remote=remote) as d:
                for hits in d.iter_find(view, q, PIECE):
                    if left is not None:
                        hits = hits.slice(left)
                        left -= len(hits)
                    out = sys.stdout.buffer
                    for i, t in zip(hits.ip_list(), hits.seconds().tolist(),
                                    strict=True):
                        out.write(orjson.dumps({"ip": i, "ts": t}) + b"\n" if as_json
                                  else f"{i}\t{_time(t)}\n".encode())
                    if left is not None and left <= 0:
                        break
            sys.stdout.flush()

    @find_app.command("member")
    def member(name: str, ip: IpsOpt, start: StartOpt = None, end: EndOpt = None,
               version: VersionOpt = None, data: DataOpt = DEFAULT_DATA,
               shards: ShardsOpt = DEFAULT_SHARDS, workers: WorkersOpt = 0,
                ray: RayOpt = False, ray_address: RayAddressOpt = None,
                remote: RemoteOpt = None, as_json: JsonOpt = False) -> None:
        """For each IP, whether it visited within the window."""
        from quarry.engine import Engine
        from quarry.formats.ipaddr import parse_ip
        from quarry.query.model import MembershipQuery, ip_list, window

        with errors():
            raw = _split(ip)
            engine = Engine(read_store(data))
            view = engine.records(name, version)
            ips = ip_list(raw)
            with dispatcher(engine, shards=shards, workers=workers, ray=ray,
                            ray_address=ray_address, remote=remote) as d:
                got = d.run(view, MembershipQuery(ips, window(start, end))).result
            found = dict(zip(ips, got.tolist(), strict=True))
            doc = {r: found[parse_ip(r)] for r in raw}
            if as_json:
                emit_json(doc)
            else:
                print_table(["ip", "visited"], list(doc.items()))

    @find_app.command("visits")
    def visits(name: str, ip: Annotated[str, typer.Argument(help="One IP address.")],
               start: StartOpt = None, end: EndOpt = None,
               bucket: Annotated[int | None, typer.Option(
                   "--bucket", min=1, help="Also count visits per bucket of this many "
                                           "seconds (3600: per hour).")] = None,
               limit: Annotated[int, typer.Option(
                   "--limit", "-n", help="Visit times to list at most.")] = DEFAULT_FIND_LIMIT,
               version: VersionOpt = None, data: DataOpt = DEFAULT_DATA,
               shards: ShardsOpt = DEFAULT_SHARDS, workers: WorkersOpt = 0,
                ray: RayOpt = False, ray_address: RayAddressOpt = None,
                remote: RemoteOpt = None, as_json: JsonOpt = False) -> None:
        """All visit times of one IP (reverse lookup), with counts."""
        from quarry.engine import Engine
        from quarry.query import iplog
        from quarry.query.model import VisitsQuery, check_limit, ip_list, window

        with errors():
            engine = Engine(read_store(data))
            view = engine.records(name, version)
            with dispatcher(engine, shards=shards, workers=workers, ray=ray,
                            ray_address=ray_address, remote=remote) as d:
                v: iplog.Visits = d.run(view, VisitsQuery(
                    ip_list([ip])[0], window(start, end), check_limit(limit), bucket)).result
            times: list[float] = (v.times_us / 1e6).tolist()
            buckets = ([[int(s), int(c)] for s, c in zip(*v.buckets, strict=True)]
                       if v.buckets is not None else None)
            if as_json:
                body: dict[str, object] = {"ip": ip, "count": v.count, "times": times}
                if buckets is not None:
                    body["buckets"] = buckets
                emit_json(body)
                return
            print_fields({"ip": ip, "count": v.count})
            for t in times:
                echo(_time(t))
            if buckets is not None:
                print_table(["bucket start", "visits"], [[_time(b), n] for b, n in buckets])

    @find_app.command("ips")
    def ips(name: str, start: StartOpt = None, end: EndOpt = None,
            limit: Annotated[int, typer.Option("--limit", "-n", help="IPs to list at most.")] = 100,
            order: Annotated[str, typer.Option("--order", help="count or ip.")] = "count",
            version: VersionOpt = None, data: DataOpt = DEFAULT_DATA,
            shards: ShardsOpt = DEFAULT_SHARDS, workers: WorkersOpt = 0,
                ray: RayOpt = False, ray_address: RayAddressOpt = None,
                remote: RemoteOpt = None, as_json: JsonOpt = False) -> None:
        """Distinct IPs within the window with their record counts (forward lookup)."""
        from quarry.engine import Engine
        from quarry.formats.ipaddr import format_ips
        from quarry.query import iplog
        from quarry.query.model import DistinctQuery, check_limit, window

        with errors():
            if order not in ("count", "ip"):
                raise BadRequest("--order must be count or ip")
            engine = Engine(read_store(data))
            view = engine.records(name, version)
            with dispatcher(engine, shards=shards, workers=workers, ray=ray,
                            ray_address=ray_address, remote=remote) as disp:
                d: iplog.Distinct = disp.run(view, DistinctQuery(
                    window(start, end), check_limit(limit), 0, order)).result  # type: ignore[arg-type]
            pairs = [[i, c] for i, c in zip(format_ips(d.ips).to_pylist(), d.counts.tolist(),
                                            strict=True)]
            if as_json:
                emit_json({"distinct": d.distinct, "records": d.rows, "ips": pairs})
                return
            print_fields({"distinct": d.distinct, "records": d.rows})
            print_table(["ip", "records"], pairs)
